"""Things only the numba backend has: its streaming-store loops (the C backend's scheme, in
Numba with a non-temporal store of its own)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fusedact
from cases import check_streamed_equals_plain

if "numba" not in fusedact.available_backends():
    pytest.skip(f"the numba backend is unavailable: {fusedact.backend_status()['numba'][1]}",
                allow_module_level=True)

from fusedact.backends import _layout  # noqa: E402

NUMBA = fusedact._dispatch._load("numba")[0]
@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_outputs_equal_plain_ones(threads):
    """With the limit at 0 every call of STREAMED_MODES streams, and writes exactly what the
    plain loops write (cases.check_streamed_equals_plain): sizes around the 2048-byte block
    (511-513 float32, 255-257 float64), tails, misaligned outputs, past the parallel
    threshold (65,536) on two threads, in place. Two threads: relu only (each op and mode is
    its own compilation of the prange loop, about a second)."""
    names = ["relu"] if threads == 2 else list(_layout.STREAMED_MODES)
    sizes = [1, 2, 15, 16, 17, 33, 255, 256, 257, 511, 512, 513, 1537, 70_001]
    before = NUMBA.stream_min_bytes
    fusedact.set_num_threads(threads)
    try:
        check_streamed_equals_plain("numba", lambda limit: setattr(NUMBA, "stream_min_bytes",
                                                                   limit), names, sizes, seed=12)
    finally:
        NUMBA.stream_min_bytes = before
        fusedact.set_num_threads(fusedact._threads._from_env())


def test_streamed_loops_store_non_temporally():
    """The streamed loop's machine code has a non-temporal store (x86-64 only: elsewhere the
    mark is a hint the target may drop), and the plain loop has none."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"non-temporal stores are checked on x86-64 only, not {platform.machine()}")
    from fusedact.backends import numba_backend

    # compiled here without the disk cache: a loop loaded from it has no assembly to show
    loops = numba_backend._loops_for("relu")
    x = np.ones(1000)
    for fn, streams in ((loops.backward_streamed, True), (loops.backward, False)):
        jitted = NUMBA.numba.njit(fastmath={"contract"}, error_model="numpy")(fn)
        jitted(x, x, np.empty_like(x), 0.0, 0.0, 0.0)
        asm = next(iter(jitted.inspect_asm().values()))
        assert ("movnt" in asm) == streams, fn.__name__


def test_stream_limit_env_var():
    code = ("import fusedact; n = fusedact._dispatch._load('numba')[0]; "
            "print(n.stream_min_bytes); print(n.describe()['streaming stores'])")
    for value, want in (("", 40 << 20), ("0", 0), ("48", 48 << 20), ("off", 2**63 - 1)):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "FUSEDACT_STREAM_MIN_MB": value}, timeout=120)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.split("\n")[0]) == want, (value, r.stdout)
    r = subprocess.run([sys.executable, "-c",
                        "import fusedact; fusedact.relu([1.0], backend='numba')"],
                       capture_output=True, text=True,
                       env={**os.environ, "FUSEDACT_STREAM_MIN_MB": "12.5"}, timeout=120)
    assert r.returncode != 0
    assert "FUSEDACT_STREAM_MIN_MB='12.5' is not a whole number of MiB or 'off'" in r.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_two_prod_errs_are_exact(dtype):
    """two_prod_err is one FMA where Numba's target has it and Dekker's product elsewhere: both
    must return a * b - RN(a * b) exactly (checked in exact rationals), or the kernels that use
    it (gelu, swish, softplus) would give other bits on a CPU without FMA."""
    from fractions import Fraction

    import numba

    from fusedact.backends import _numba_math, _numba_math32

    dekker = _numba_math32.two_prod_err_dekker if dtype == np.float32 else \
        _numba_math.two_prod_err_dekker
    variants = [numba.njit(f) for f in (_numba_math.two_prod_err_fma, dekker)]
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(500) * 10.0 ** rng.integers(-6, 7, 500)).astype(dtype)
    b = (rng.standard_normal(500) * 10.0 ** rng.integers(-6, 7, 500)).astype(dtype)
    a[:4] = [1.0 + np.finfo(dtype).eps, 3.0, -0.0, 13.5]
    b[:4] = [1.0 - np.finfo(dtype).epsneg, 1.0 / 3.0, 5.0, 13.5]
    for x, y in zip(a, b):
        p = dtype(x * y)
        exact = Fraction(float(x)) * Fraction(float(y)) - Fraction(float(p))
        for f in variants:
            assert Fraction(float(f(x, y, p))) == exact, (f, x, y)
