"""What the tests are driven by: the backends under test, the op cases from the catalogue,
and the one generator of adversarial arrays."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import fusedact
from fusedact import OPS, ELEMENTWISE_OPS
from fusedact._catalogue import EXTRA_PARAMS

HOST_BACKENDS = [b for b in ("numpy", "c", "numba") if b in fusedact.available_backends()]
# The c backend runs every test at each SIMD level its build has ("c" is the best this CPU
# supports): the same kernels are compiled three times and each must be right.
SIMD_VARIANTS = ["c@avx2", "c@baseline"] if "c" in HOST_BACKENDS else []
# The cuda backend takes NumPy arrays too (copied to the device and back), so every test runs
# on it as well: on a GPU, or on Numba's CUDA simulator, which conftest switches on when this
# machine has no NVIDIA device.
CUDA_BACKENDS = ["cuda"] if "cuda" in fusedact.available_backends() else []
FLOAT_DTYPES = (np.float16, np.float32, np.float64)


@contextlib.contextmanager
def variant_backend(variant):
    """The backend name of a test variant ("c", "numba", "c@avx2", ...): for c@LEVEL the C
    kernels run at LEVEL inside the block (the test skips where this CPU lacks it)."""
    name, _, level = variant.partition("@")
    if not level:
        yield name
        return
    c = fusedact._dispatch._load("c")[0]
    before = c.simd()
    if c.set_simd(level) != level:
        c.set_simd(before)
        pytest.skip(f"this CPU has no {level}")
    try:
        yield name
    finally:
        c.set_simd(before)


def param_sets(name):
    """The defaults, then each extra parameter set of the catalogue."""
    spec = OPS[name]
    sets = [spec.defaults()]
    for extra in EXTRA_PARAMS.get(name, ()):
        sets.append({**spec.defaults(), **extra})
    return sets


def elementwise_cases():
    """(op, params) pairs, with an id per pair."""
    cases = []
    for name in ELEMENTWISE_OPS:
        for i, p in enumerate(param_sets(name)):
            cases.append(pytest.param(name, p, id=f"{name}" + (f"-p{i}" if i else "")))
    return cases


def adversarial(dtype, domain=(-20.0, 20.0), dense=256, seed=0):
    """A 1-D array of the values that break activation kernels, for one dtype.

    NaN, +-inf, +-0, subnormals, the smallest and largest normals, +-1e4 (clipped to the
    dtype), the op's domain ends and a dense sweep across it, the saturation regions just
    past where exp over/underflows in float32 and float64, and standard normal x 3.
    """
    finfo = np.finfo(dtype)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0,
                float(finfo.smallest_subnormal), -float(finfo.smallest_subnormal),
                float(finfo.tiny), -float(finfo.tiny), float(finfo.max), -float(finfo.max),
                1e4, -1e4, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, 20.5, -6.0,
                88.5, -88.5, 89.0, -104.0, 709.0, -709.0, 710.0, -745.0, 1e-8, -1e-8,
                1e-30, -1e-30]
    lo, hi = domain
    sweep = np.linspace(lo, hi, dense)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(dense) * 3.0
    with np.errstate(over="ignore"):
        values = np.concatenate([np.array(specials), sweep, noise]).astype(dtype)
    return values


def finite_sample(dtype, domain, n=2000, seed=1):
    lo, hi = domain
    rng = np.random.default_rng(seed)
    return np.concatenate([np.linspace(lo, hi, n // 2), rng.uniform(lo, hi, n // 2)]).astype(dtype)


def check_streamed_equals_plain(backend, set_stream_limit, names, sizes, seed):
    """For the streaming-store loops of a backend (the C or numba one): with the limit at 0
    every call of _layout.STREAMED_MODES streams, and each op and mode it has must write
    exactly what the plain loops write (limit off), into outputs 0-15 elements past a 64-byte
    line (the plain head; derivative=True's two outputs at the same offset half the time,
    when both can stream), adversarial values first; nothing past the output is written,
    and a forward in place gives the same result. set_stream_limit(bytes) sets the limit."""
    from fusedact.backends import _layout

    modes_by_id = ("forward", "backward", "derivative")
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        special = adversarial(dtype)
        for name in names:
            f, back = getattr(fusedact, name), getattr(fusedact, name + "_backward")
            modes = [modes_by_id[m] for m in _layout.STREAMED_MODES[name]]
            for k, n in enumerate(sizes):
                x = (rng.standard_normal(n) * 4).astype(dtype)
                x[: min(n, special.size)] = special[: min(n, special.size)]
                g = rng.standard_normal(n).astype(dtype)
                saved = f(x, backend=backend) if name in ("sigmoid", "tanh") else x
                shift, shift2 = (int(s) for s in rng.integers(0, 16, 2))
                shift2 = shift if k % 2 else shift2
                results = {}
                for limit in (_layout.STREAM_OFF, 0):
                    set_stream_limit(limit)
                    for mode in modes:
                        buf = np.full(n + 32, 7.0, dtype)
                        buf2 = np.full(n + 32, 7.0, dtype)
                        out, out2 = buf[shift:shift + n], buf2[shift2:shift2 + n]
                        if mode == "forward":
                            f(x, out=out, backend=backend)
                        elif mode == "backward":
                            back(g, saved, out=out, backend=backend)
                        else:
                            f(x, derivative=True, out=(out, out2), backend=backend)
                        results[limit, mode] = (buf, buf2)
                for mode in modes:
                    plain, streamed = results[_layout.STREAM_OFF, mode], results[0, mode]
                    where = f"{name} {mode} {np.dtype(dtype).name} n={n} shift={shift}"
                    np.testing.assert_array_equal(streamed[0], plain[0], err_msg=where)
                    np.testing.assert_array_equal(streamed[1], plain[1], err_msg=where)
                    assert (streamed[0][shift + n:] == 7.0).all(), where
            if "forward" in modes:
                x = (rng.standard_normal(100_000) * 4).astype(dtype)
                set_stream_limit(_layout.STREAM_OFF)
                want = f(x, backend=backend)
                set_stream_limit(0)
                f(x, out=x, backend=backend)
                np.testing.assert_array_equal(x, want, err_msg=f"{name} in place")


def check_streamed_rows_equal_plain(backend, set_stream_limit, shapes, seed):
    """softmax_backward, the row pass with streaming stores: with the limit at 0 it must write
    exactly what plain stores write, for each (rows, cols) of `shapes`, into outputs 0-15
    elements past a 64-byte line (rows then start at every offset from a line), with nothing
    written past the output, and in place (out = grad_out, out = y)."""
    from fusedact.backends import _layout

    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        for rows, cols in shapes:
            x = (rng.standard_normal((rows, cols)) * 4).astype(dtype)
            y = fusedact.softmax(x, backend="numpy")
            g = rng.standard_normal((rows, cols)).astype(dtype)
            g.flat[: min(g.size, 4)] = (np.nan, np.inf, -0.0, 1e-40)[: min(g.size, 4)]
            shift = int(rng.integers(0, 16))
            written = {}
            for limit in (_layout.STREAM_OFF, 0):
                set_stream_limit(limit)
                buf = np.full(rows * cols + 32, 7.0, dtype)
                out = buf[shift:shift + rows * cols].reshape(rows, cols)
                fusedact.softmax_backward(g, y, out=out, backend=backend)
                written[limit] = buf
                for name, target in (("grad_out", g.copy()), ("y", y.copy())):
                    args = (target, y) if name == "grad_out" else (g, target)
                    fusedact.softmax_backward(*args, out=target, backend=backend)
                    np.testing.assert_array_equal(
                        target, out, err_msg=f"in place as {name} {rows}x{cols} limit={limit}")
            where = f"softmax_backward {np.dtype(dtype).name} {rows}x{cols} shift={shift}"
            np.testing.assert_array_equal(written[0], written[_layout.STREAM_OFF], err_msg=where)
            assert (written[0][shift + rows * cols:] == 7.0).all(), where
