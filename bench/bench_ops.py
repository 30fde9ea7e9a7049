"""pytest-benchmark comparisons, generated from fusedact's contenders table.

    pytest bench/ --benchmark-only                      # measure (sizes up to 1M)
    pytest bench/ --benchmark-only -m slow              # the 16M-element sizes
    pytest bench/ --benchmark-only --benchmark-save=base ... --benchmark-compare

Benchmarks are grouped by op, direction, dtype, size and data, so every fusedact backend of one
case sits beside NumPy naive, SciPy, PyTorch and the copy of the same arrays. The ordinary test
run (``pytest --benchmark-disable``) executes each of them once, so this code cannot rot.
"""

from __future__ import annotations

import pytest

from fusedact._bench import BENCH_OPS, Case, contenders, make_inputs

SIZES = [1024, 65536, 1 << 20]
SLOW_SIZES = [1 << 24]


def _labels(op, direction, dtype):
    """The contenders this machine has for an op (probed on a small input)."""
    small = Case(op, direction, dtype, 2048)
    return list(contenders(small, make_inputs(small)))


def _params():
    out = []
    for op in BENCH_OPS:
        for direction in ("forward", "backward"):
            if op == "softmax_cross_entropy" and direction == "backward":
                continue  # one fused call returns loss and grad
            for dtype in ("float32", "float64"):
                cases = [(Case(op, direction, dtype, n), n in SLOW_SIZES)
                         for n in SIZES + SLOW_SIZES]
                # Overflow/underflow paths must not be slow (PyTorch once had a 150x cliff
                # on gelu below -14): the same ops on uniform +-100.
                cases.append((Case(op, direction, dtype, 65536, "wide"), False))
                for label in _labels(op, direction, dtype):
                    for case, slow in cases:
                        out.append(pytest.param(case, label,
                                                marks=[pytest.mark.slow] if slow else [],
                                                id=f"{case.label}-{label}"))
    return out


_INPUT_CACHE = {}


def _inputs(case):
    if case not in _INPUT_CACHE:
        _INPUT_CACHE.clear()  # keep one case's arrays alive at a time (16M x 3 arrays)
        _INPUT_CACHE[case] = make_inputs(case)
    return _INPUT_CACHE[case]


@pytest.mark.parametrize("case,contender", _params())
def bench_op(benchmark, case, contender):
    inp = _inputs(case)
    fn = contenders(case, inp)[contender]
    benchmark.group = case.label
    benchmark.extra_info.update(elements=int(inp["x"].size), dtype=case.dtype)
    benchmark(fn)
