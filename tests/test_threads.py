"""Calls from many Python threads at once give the results a single thread gets."""

from __future__ import annotations

import threading

import numpy as np

import fusedact
from cases import HOST_BACKENDS


def test_eight_threads_all_ops_all_backends():
    rng = np.random.default_rng(0)
    # 300,000 elements: above the C backend's 65,536-element threshold, so its thread pool
    # runs while 8 Python threads call at once (and 1,000 below it, on the caller's thread).
    inputs = [(rng.standard_normal(n) * 4).astype(dt) for dt in (np.float32, np.float64)
              for n in (1_000, 300_000)]
    ops = fusedact.ELEMENTWISE_OPS
    expected = {(b, op, i): getattr(fusedact, op)(x, backend=b)
                for b in HOST_BACKENDS for op in ops for i, x in enumerate(inputs)}
    expected_sm = {b: fusedact.softmax(inputs[1].reshape(300, 1000), backend=b) for b in HOST_BACKENDS}
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
                sm = fusedact.softmax(inputs[1].reshape(300, 1000), backend=b)
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


def test_pool_survives_many_large_calls_in_a_row():
    """The first large call starts the C pool's workers; later ones reuse them (a worker
    created for a job once slept through it: this would hang)."""
    x = np.linspace(-5, 5, 1 << 20).astype(np.float32)
    want = fusedact.silu(x, backend="numpy")
    for threads in (2, 1, 3, 2):
        fusedact.set_num_threads(threads)
        try:
            for _ in range(5):
                np.testing.assert_array_max_ulp(fusedact.silu(x), want, maxulp=3)
        finally:
            fusedact.set_num_threads(fusedact._threads._from_env())


def _tsan_usable():
    """gcc with a ThreadSanitizer runtime, and the source tree (tools/, csrc/) beside us."""
    import pathlib
    import shutil
    import subprocess
    import tempfile

    root = pathlib.Path(__file__).resolve().parent.parent
    if not (root / "tools" / "check_threads.sh").exists() or not (root / "csrc").is_dir():
        return None, "run from a source checkout (tools/check_threads.sh)"
    if shutil.which("gcc") is None:
        return None, "gcc not found"
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "probe.c"
        src.write_text("int main(void) { return 0; }\n")
        probe = subprocess.run(["gcc", "-fsanitize=thread", str(src), "-o", str(src) + ".out"],
                               capture_output=True)
        if probe.returncode != 0:
            return None, "gcc has no ThreadSanitizer runtime (libtsan)"
    return root, ""


def test_thread_pool_hand_off_under_thread_sanitizer(tmp_path):
    """tools/check_threads.sh: the C pool built with -fsanitize=thread, three threads submitting
    jobs of 1-4 threads (some after idle pauses, so workers join late or not at all); TSan
    aborts on a data race, and every result is compared with the single-threaded one."""
    import os
    import subprocess

    import pytest

    root, why = _tsan_usable()
    if root is None:
        pytest.skip(why)
    run = subprocess.run(["bash", str(root / "tools" / "check_threads.sh")],
                         env={**os.environ, "OUT": str(tmp_path)}, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 wrong results" in run.stdout
    assert "ThreadSanitizer" not in run.stderr


def test_numba_uses_the_thread_count_of_each_call():
    """The numba backend hands fusedact's count to numba.set_num_threads only when it differs
    from what the calling thread last handed over (a call costs 1-3 us): a change of
    fusedact.set_num_threads must still reach numba, in every thread. In a subprocess with
    NUMBA_NUM_THREADS=4, so that counts up to 4 are visible on a 2-core machine."""
    import os
    import subprocess
    import sys

    import pytest

    pytest.importorskip("numba", reason="numba is not installed")
    code = """
import threading, numba, numpy as np, fusedact
from fusedact.backends import numba_backend
x = np.linspace(-4, 4, numba_backend._PARALLEL_MIN, dtype=np.float32)
want = fusedact.sigmoid(x, backend="numpy")
seen = {}
def calls(name):
    got = []
    for n in (2, 1, 3, 4, 2):
        fusedact.set_num_threads(n)
        np.testing.assert_allclose(fusedact.sigmoid(x, backend="numba"), want, rtol=1e-6)
        got.append(numba.get_num_threads())
    seen[name] = got
calls("main")
worker = threading.Thread(target=calls, args=("worker",))
worker.start()
worker.join()
print(seen["main"], seen["worker"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "NUMBA_NUM_THREADS": "4"})
    assert done.returncode == 0, done.stderr
    # n = 1 runs the serial loop and leaves numba's count as it was
    assert done.stdout.split("\n")[0] == "[2, 2, 3, 4, 2] [2, 2, 3, 4, 2]", done.stdout


def test_numba_remembers_a_bounded_number_of_past_calls():
    """The numba backend keeps each (op, parameters, dtype) call's kernel for the next one;
    a sweep over a parameter (or NaN parameters, never equal to themselves) must not grow
    that table without end, nor change results."""
    import pytest

    pytest.importorskip("numba", reason="numba is not installed")
    from fusedact import _dispatch
    from fusedact.backends import numba_backend

    backend = _dispatch._load("numba")[0]
    x = np.linspace(-3, 3, 50)
    for i in range(numba_backend._LANES_KEPT + 40):
        slope = float("nan") if i % 2 else 0.001 * i
        got = fusedact.leaky_relu(x, slope, backend="numba")
        want = np.where(x > 0, x, slope * x)
        np.testing.assert_array_equal(got, want)
        assert len(backend._lanes) <= numba_backend._LANES_KEPT
