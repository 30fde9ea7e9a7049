"""Things only the numba backend has: its streaming-store loops (the C backend's scheme, in
Numba with a non-temporal store of its own)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fusedact
from cases import adversarial

if "numba" not in fusedact.available_backends():
    pytest.skip(f"the numba backend is unavailable: {fusedact.backend_status()['numba'][1]}",
                allow_module_level=True)

from fusedact.backends import _layout  # noqa: E402

NUMBA = fusedact._dispatch._load("numba")[0]
MODES = ("forward", "backward", "derivative")


def _calls(name, x, g, out, out2):
    f, back = getattr(fusedact, name), getattr(fusedact, name + "_backward")
    saved = f(x, backend="numba") if name in ("sigmoid", "tanh") else x
    return {
        "forward": lambda: f(x, out=out, backend="numba"),
        "backward": lambda: back(g, saved, out=out, backend="numba"),
        "derivative": lambda: f(x, derivative=True, out=(out, out2), backend="numba"),
    }


@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_outputs_equal_plain_ones(threads):
    """With the limit at 0 every call of STREAMED_MODES streams: each writes exactly what the
    plain loops write, for sizes around the 2048-byte block (511-513 float32, 255-257
    float64), tails, outputs 0-15 elements past a 64-byte line (the plain head), two outputs
    at different offsets from a line (derivative=True then stays plain), sizes past the
    parallel threshold (65,536) on two threads, and adversarial values; nothing past the
    output is written, and in place works. (Two threads: relu only, every mode; each op
    and mode is a separate compilation of the prange loop, about a second each.)"""
    names = ["relu"] if threads == 2 else list(_layout.STREAMED_MODES)
    sizes = [1, 2, 15, 16, 17, 33, 255, 256, 257, 511, 512, 513, 1537, 70_001]
    rng = np.random.default_rng(12)
    before = NUMBA.stream_min_bytes
    fusedact.set_num_threads(threads)
    try:
        for dtype in (np.float32, np.float64):
            special = adversarial(dtype)
            for name in names:
                modes = [MODES[m] for m in _layout.STREAMED_MODES[name]]
                for k, n in enumerate(sizes):
                    x = (rng.standard_normal(n) * 4).astype(dtype)
                    x[: min(n, special.size)] = special[: min(n, special.size)]
                    g = rng.standard_normal(n).astype(dtype)
                    shift, shift2 = (int(s) for s in rng.integers(0, 16, 2))
                    shift2 = shift if k % 2 else shift2  # both outputs stream, or not
                    results = {}
                    for limit in (_layout.STREAM_OFF, 0):
                        NUMBA.stream_min_bytes = limit
                        buf = np.full(n + 32, 7.0, dtype)
                        buf2 = np.full(n + 32, 7.0, dtype)
                        out, out2 = buf[shift:shift + n], buf2[shift2:shift2 + n]
                        calls = _calls(name, x, g, out, out2)
                        for mode in modes:
                            calls[mode]()
                            results[limit, mode] = (buf.copy(), buf2.copy())
                    for mode in modes:
                        plain, streamed = results[_layout.STREAM_OFF, mode], results[0, mode]
                        where = f"{name} {mode} {np.dtype(dtype).name} n={n} shift={shift}"
                        np.testing.assert_array_equal(streamed[0], plain[0], err_msg=where)
                        np.testing.assert_array_equal(streamed[1], plain[1], err_msg=where)
                        assert (streamed[0][shift + n:] == 7.0).all(), where
                if "forward" in modes:
                    x = (rng.standard_normal(100_000) * 4).astype(dtype)
                    NUMBA.stream_min_bytes = _layout.STREAM_OFF
                    want = getattr(fusedact, name)(x, backend="numba")
                    NUMBA.stream_min_bytes = 0
                    getattr(fusedact, name)(x, out=x, backend="numba")
                    np.testing.assert_array_equal(x, want, err_msg=f"{name} in place")
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
