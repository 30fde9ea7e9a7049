"""Calls from many Python threads at once give the results a single thread gets."""

from __future__ import annotations

import threading

import numpy as np

import fusedact
from conftest import HOST_BACKENDS


def test_eight_threads_all_ops_all_backends():
    rng = np.random.default_rng(0)
    inputs = [(rng.standard_normal(50_000) * 4).astype(dt) for dt in (np.float32, np.float64)]
    ops = fusedact.ELEMENTWISE_OPS
    expected = {(b, op, i): getattr(fusedact, op)(x, backend=b)
                for b in HOST_BACKENDS for op in ops for i, x in enumerate(inputs)}
    expected_sm = {b: fusedact.softmax(inputs[0].reshape(50, 1000), backend=b) for b in HOST_BACKENDS}
    errors = []
    barrier = threading.Barrier(8)

    def worker(seed):
        try:
            order = np.random.default_rng(seed).permutation(len(expected))
            keys = list(expected)
            barrier.wait()
            for k in order[:120]:
                b, op, i = keys[k]
                with fusedact.use_backend(b):
                    got = getattr(fusedact, op)(inputs[i])
                if not np.array_equal(got, expected[keys[k]], equal_nan=True):
                    errors.append(f"{keys[k]} differs under threads")
            for b in HOST_BACKENDS:
                sm = fusedact.softmax(inputs[0].reshape(50, 1000), backend=b)
                if not np.array_equal(sm, expected_sm[b]):
                    errors.append(f"softmax [{b}] differs under threads")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
