"""Things only the numba backend has: its streaming-store loops (the C backend's scheme, in
Numba with a non-temporal store of its own), its FMA-or-Dekker two_prod_err, and the AVX-512
instructions of _numba_simd (table permutes, vscalefps) with the kernels that take them
(gelu, float32 silu and gelu_tanh), which must give the C kernels' bits."""

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


def _jitted(fn):
    import numba

    return numba.njit(fastmath={"contract"}, error_model="numpy")(fn)


@pytest.mark.parametrize("permute", [True, False], ids=["permutes", "global-load"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_table_reader_reads_every_entry(dtype, permute):
    """_numba_simd's read(i) is values[i mod 16] in both of its forms (the permutes of
    AVX-512 targets, a constant global elsewhere), in the vectorized body and the scalar tail
    (sizes 1..33 and 1000), from a loop called directly (the permutes then stay calls to the
    vector versions) and through inlining_caller (they are inlined), short tables padded
    with 0."""
    from fusedact.backends import _numba_simd

    if permute and not _numba_simd.available():
        pytest.skip("the permute form needs an AVX-512 target and LLVM >= 22 (_numba_simd.available)")
    values = [1.5 * j - 7.25 for j in range(13)]  # 13 entries: 13, 14, 15 read 0
    tag = f"test_{np.dtype(dtype).name}_{permute}"
    read = _numba_simd.table_reader(tag, values, dtype, permute=permute)
    table = np.array(values + [0.0] * 3, dtype)

    def loop(idx, out):
        for i in range(idx.size):
            out[i] = read(idx[i])

    inner = _jitted(loop)
    call = _numba_simd.inlining_caller(inner)

    def through_caller(idx, out):
        call((idx, out))

    rng = np.random.default_rng(5)
    for fn in (inner, _jitted(through_caller)):
        for n in list(range(1, 34)) + [1000]:
            idx = rng.integers(-40, 40, n)
            out = np.full(n, np.nan, dtype)
            fn(idx, out)
            np.testing.assert_array_equal(out, table[idx % 16], err_msg=f"n={n}")


def test_simd_forms_need_avx512_and_the_measured_llvm(monkeypatch):
    """The AVX-512 forms are taken only on an AVX-512 target with an LLVM at least as new as
    the one they were measured with; elsewhere the portable forms run."""
    from llvmlite import binding

    from fusedact.backends import _numba_simd

    check = _numba_simd.available.__wrapped__  # past the cache
    monkeypatch.setattr(_numba_simd, "target_has_avx512", lambda: True)
    monkeypatch.setattr(binding, "llvm_version_info", (_numba_simd.MIN_LLVM_MAJOR - 1, 0, 0))
    assert not check()
    monkeypatch.setattr(binding, "llvm_version_info", (_numba_simd.MIN_LLVM_MAJOR, 1, 0))
    assert check()
    monkeypatch.setattr(_numba_simd, "target_has_avx512", lambda: False)
    assert not check()


def test_table_reader_rejects_bad_tables():
    from fusedact.backends import _numba_simd

    with pytest.raises(ValueError, match="up to 16 float32/float64 values"):
        _numba_simd.table_reader("test_long", list(range(17)), np.float64)
    with pytest.raises(ValueError, match="up to 16 float32/float64 values"):
        _numba_simd.table_reader("test_int", [1, 2], np.int32)
    _numba_simd.table_reader("test_twice", [1.0], np.float64)
    with pytest.raises(ValueError, match="defined twice"):
        _numba_simd.table_reader("test_twice", [1.0], np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalef_is_one_rounding_of_a_times_2_to_the_k(dtype):
    """_numba_simd.scalef(a, k) = a 2^k rounded once, gradual underflow included, in the
    vectorized body and the scalar tail (sizes 1..33, 1000), against np.ldexp."""
    from fusedact.backends import _numba_simd

    if not _numba_simd.available():
        pytest.skip("scalef needs an AVX-512 target and LLVM >= 22 (_numba_simd.available)")
    scalef = _numba_simd.scalef

    def loop(a, k, out):
        for i in range(a.size):
            out[i] = scalef(a[i], k[i])

    inner = _jitted(loop)
    call = _numba_simd.inlining_caller(inner)

    def through_caller(a, k, out):
        call((a, k, out))

    info = np.finfo(dtype)
    rng = np.random.default_rng(6)
    for fn in (inner, _jitted(through_caller)):
        for n in list(range(1, 34)) + [1000]:
            a = (rng.standard_normal(n) * 4).astype(dtype)
            a[: min(n, 4)] = [0.0, -0.0, 1.5, -3.0][: min(n, 4)]
            k = rng.integers(info.minexp - info.nmant - 4, info.maxexp - 4, n).astype(dtype)
            out = np.empty(n, dtype)
            fn(a, k, out)
            want = np.ldexp(a, k.astype(np.int32))
            np.testing.assert_array_equal(out, want, err_msg=f"n={n}")
            np.testing.assert_array_equal(np.signbit(out), np.signbit(want))


@pytest.mark.parametrize("op,f32", [("gelu", True), ("gelu", False), ("tanh", True)],
                         ids=["gelu-float32", "gelu-float64", "tanh-float32"])
def test_piece_table_loops_read_their_tables_by_permutes(op, f32, monkeypatch):
    """On an AVX-512 target the serial and parallel loops of gelu (R(a)'s pieces) and float32
    tanh pick their coefficients with permutes (vpermd / vpermt2pd) inlined into the loop: no
    gather, and no call to a vector version left in the compiled code (the one mistake that
    still gives right answers, at 1.4x the time of the gathers)."""
    from fusedact.backends import _numba_simd, numba_backend

    if not _numba_simd.available():
        pytest.skip("the permutes need an AVX-512 target and LLVM >= 22 (_numba_simd.available)")
    dtype = np.float32 if f32 else np.float64
    numba_backend._loops_for(op, f32)  # first: the module the backend itself uses
    # compiled here, not loaded from the disk cache: a loaded loop has no assembly to show;
    # built as the backend builds it (an op missing from _SIMD_KERNELS gets no permutes)
    monkeypatch.setattr(numba_backend, "_cache_usable", lambda: False)
    serial, parallel = numba_backend._build_elementwise(NUMBA.numba, op, f32)[0]
    # gelu: below -13.5, c and numba give -0 (SPEC 5)
    x = np.linspace(-13.5 if op == "gelu" else -12.0, 20, 70_001).astype(dtype)
    want = getattr(fusedact, op)(x, backend="numpy")
    for loop in (serial, parallel):
        out = np.empty_like(x)
        loop(x, out, 0.0, 0.0, 0.0)
        # 3 ULP, the limit of SPEC 5, counted in subnormal steps below the normals
        np.testing.assert_allclose(out, want, rtol=3 * np.finfo(dtype).eps,
                                   atol=3 * np.finfo(dtype).smallest_subnormal)
        asm = "".join(loop.inspect_asm().values())
        llvm = "".join(loop.inspect_llvm().values())
        assert "\tvperm" in asm  # vpermd/vpermps, vpermt2pd/vpermi2pd: LLVM picks
        assert "gather" not in asm
        variants = [line for line in llvm.splitlines()
                    if "call" in line and "@fusedact_table_" in line and "_v" in line]
        assert not variants, variants[:3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_has_the_c_backends_bits(dtype):
    """numba's gelu runs the C kernels' algorithm in the C kernels' order of operations (on
    AVX-512 targets the AVX-512 loop's float pieces for float32): forward, backward,
    derivative=True and bias_act give the c backend's bits, specials and tails included."""
    if "c" not in fusedact.available_backends():
        pytest.skip("the c backend is not built")
    from fusedact.backends import _numba_simd

    c_level = fusedact._dispatch._load("c")[0].describe()["simd"].split()[0]
    # float32: numba's form follows the target (pieces with AVX-512, else the portable
    # rational); float64 needs c's FMA levels, as numba contracts a * b + c
    same = (_numba_simd.available() == (c_level == "avx512") if dtype == np.float32
            else c_level in ("avx2", "avx512"))
    if not same:
        pytest.skip(f"numba and c run different {np.dtype(dtype).name} forms here (c: {c_level})")
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.standard_normal(20_000) * 4, np.linspace(-40, 40, 4001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 13.5, -13.5, 38.0, -38.0,
                         1e-40, -1e-40, 5e-324, -5e-324]]).astype(dtype)
    g = rng.standard_normal(x.size).astype(dtype)
    for n in (x.size, 1, 7, 17, 33):
        for name, call in (("gelu", lambda b: fusedact.gelu(x[:n], backend=b)),
                           ("gelu_backward", lambda b: fusedact.gelu_backward(g[:n], x[:n],
                                                                               backend=b)),
                           ("derivative", lambda b: fusedact.gelu(x[:n], derivative=True,
                                                                  backend=b)[1])):
            np.testing.assert_array_equal(call("numba"), call("c"), err_msg=f"{name} n={n}")
    rows = x[:24_000].reshape(-1, 96)
    bias = rng.standard_normal(96).astype(dtype)
    np.testing.assert_array_equal(fusedact.bias_act(rows, bias, "gelu", backend="numba"),
                                  fusedact.bias_act(rows, bias, "gelu", backend="c"))


def test_float32_tanh_has_the_c_avx512_bits():
    """On AVX-512 targets numba's float32 tanh reads C's table of pieces (fa512_tanh) with the
    same Horner steps: the c backend's bits, forward and derivative=True, specials, subnormals
    and tails included."""
    if "c" not in fusedact.available_backends():
        pytest.skip("the c backend is not built")
    from fusedact.backends import _numba_simd

    c_level = fusedact._dispatch._load("c")[0].describe()["simd"].split()[0]
    if not (_numba_simd.available() and c_level == "avx512"):
        pytest.skip(f"checked where both run AVX-512 code (c: {c_level})")
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.standard_normal(30_000) * 4, np.linspace(-12, 12, 30_001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 9.5, -9.5, 9.011, 0.25, 15.0,
                         1e-40, -1e-40, -1e-45, 3e38, -3e38]]).astype(np.float32)
    for n in (x.size, 1, 9, 17, 33):
        np.testing.assert_array_equal(fusedact.tanh(x[:n], backend="numba"),
                                      fusedact.tanh(x[:n], backend="c"), err_msg=f"n={n}")
        for got, want in zip(fusedact.tanh(x[:n], derivative=True, backend="numba"),
                             fusedact.tanh(x[:n], derivative=True, backend="c")):
            np.testing.assert_array_equal(got, want, err_msg=f"derivative n={n}")


@pytest.mark.parametrize("op,params", [("silu", {}), ("swish", {"beta": 1.702}),
                                       ("swish", {"beta": -0.7}), ("swish", {"beta": 1e-38}),
                                       ("gelu", {"approximate": "tanh"}), ("sigmoid", {})],
                         ids=["silu", "swish", "swish_negative_beta", "swish_tiny_beta",
                              "gelu_tanh", "sigmoid"])
def test_float32_quotient_forms_have_the_c_avx512_bits(op, params):
    """float32 silu, swish, gelu's tanh form and sigmoid run C's AVX-512 loops' arithmetic
    (the quotient x / (1 + e^-z) with 2^k applied last; by vscalefps on AVX-512 targets): the
    c backend's bits at its AVX-512 level, tails, specials and the gradual underflow
    included (sigmoid's portable form flushes e^-|x| below 2^-126)."""
    if "c" not in fusedact.available_backends():
        pytest.skip("the c backend is not built")
    from fusedact.backends import _numba_simd

    c_level = fusedact._dispatch._load("c")[0].describe()["simd"].split()[0]
    if not (_numba_simd.available() and c_level == "avx512"):
        pytest.skip(f"checked where both run AVX-512 code (c: {c_level})")
    f = getattr(fusedact, op)
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.standard_normal(30_000) * 8, np.linspace(-160, 100, 30_001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, -150.0, -149.9, 1e-40, -1e-40,
                         -1e-45, 3e38, -3e38]]).astype(np.float32)
    for n in (x.size, 1, 9, 17, 33):
        np.testing.assert_array_equal(f(x[:n], backend="numba", **params),
                                      f(x[:n], backend="c", **params), err_msg=f"n={n}")
    if op == "silu":  # its backward too (C's fa512_silu_der): one division, gradual underflow
        g = rng.standard_normal(x.size).astype(np.float32)
        np.testing.assert_array_equal(fusedact.silu_backward(g, x, backend="numba"),
                                      fusedact.silu_backward(g, x, backend="c"))
        np.testing.assert_array_equal(fusedact.silu(x, derivative=True, backend="numba")[1],
                                      fusedact.silu(x, derivative=True, backend="c")[1])
    if op == "sigmoid":  # logsigmoid's backward is sigmoid(-x), C's fa512_sigmoid too
        g = rng.standard_normal(x.size).astype(np.float32)
        np.testing.assert_array_equal(fusedact.logsigmoid_backward(g, x, backend="numba"),
                                      fusedact.logsigmoid_backward(g, x, backend="c"))


@pytest.mark.parametrize("op,params", [("silu", {}), ("swish", {"beta": 1.702}),
                                       ("swish", {"beta": -0.7}), ("mish", {}),
                                       ("gelu", {"approximate": "tanh"})],
                         ids=["silu", "swish", "swish_negative_beta", "mish", "gelu_tanh"])
def test_float64_forwards_have_the_c_backends_bits(op, params):
    """float64 silu (2^k by vscalefpd on AVX-512 targets, C's fa512d_silu; the integer-built
    halves elsewhere, the same rounding), mish's compensated quotient and the x sigmoid(u + err)
    of swish and gelu's tanh form (fa_x_sigmoid_dw) run the C kernels' arithmetic in their
    order: the c backend's bits at an FMA level (numba contracts a * b + c), tails where the
    result underflows gradually, overflow-prone inputs and specials included."""
    if "c" not in fusedact.available_backends():
        pytest.skip("the c backend is not built")
    c_level = fusedact._dispatch._load("c")[0].describe()["simd"].split()[0]
    if c_level not in ("avx2", "avx512"):
        pytest.skip(f"numba contracts to FMA; c runs without it here ({c_level})")
    f = getattr(fusedact, op)
    rng = np.random.default_rng(10)
    x = np.concatenate([rng.standard_normal(30_000) * 8, np.linspace(-800, 60, 30_001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, -708.5, -745.0, -1400.0, -1401.0,
                         5e-324, -5e-324, 1e300, -1e300, -1.7976931348623157e308]])
    for n in (x.size, 1, 9, 17, 33):
        np.testing.assert_array_equal(f(x[:n], backend="numba", **params),
                                      f(x[:n], backend="c", **params), err_msg=f"n={n}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op,params,direction", [
    ("silu", {}, "backward"), ("swish", {"beta": 1.702}, "backward"),
    ("swish", {"beta": -0.7}, "backward"), ("mish", {}, "backward"),
    ("gelu", {"approximate": "tanh"}, "backward"), ("softplus", {}, "forward"),
    ("softplus", {"beta": 2.0}, "forward"), ("logsigmoid", {}, "forward")],
    ids=["silu", "swish", "swish_negative_beta", "mish", "gelu_tanh", "softplus",
         "softplus_beta2", "logsigmoid"])
def test_contracted_products_round_as_the_c_backends(op, params, direction, dtype):
    """numba contracts a * b + c to an FMA where C (built with -ffp-contract=off) rounds the
    product apart; the kernels mark those products mul_unfused, and swish's slope takes C's
    one division. Together: the c backend's bits (they differed on 20-25 % of float64 silu',
    swish' and mish' results, 0.14-0.16 % of softplus and logsigmoid results). float32
    inputs whose exponential leaves the normal range are left out: C's AVX-512 loops
    underflow gradually there, numba's portable exponential flushes to 0."""
    if "c" not in fusedact.available_backends():
        pytest.skip("the c backend is not built")
    c_level = fusedact._dispatch._load("c")[0].describe()["simd"].split()[0]
    if c_level not in ("avx2", "avx512"):
        pytest.skip(f"numba contracts to FMA; c runs without it here ({c_level})")
    rng = np.random.default_rng(11)
    low = -700.0 if dtype == np.float64 else -8.0 / max(1.0, abs(params.get("beta", 1.0)))
    x = np.concatenate([rng.standard_normal(30_000) * 6, np.linspace(low, 60, 30_001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)
    if dtype == np.float32:  # the exponential's argument inside float's normal range
        x = x[~(np.abs(x) > 8.0) | (x > 0) | np.isinf(x)]
    g = rng.standard_normal(x.size).astype(dtype)
    if direction == "forward":
        def run(backend, n):
            return getattr(fusedact, op)(x[:n], backend=backend, **params)
    else:
        def run(backend, n):
            return getattr(fusedact, op + "_backward")(g[:n], x[:n], backend=backend, **params)
    for n in (x.size, 1, 9, 17, 33):
        np.testing.assert_array_equal(run("numba", n), run("c", n), err_msg=f"n={n}")


@pytest.mark.parametrize("f32", [False, True], ids=["float64", "float32"])
def test_loops_fill_512_bit_registers_on_avx512_targets(monkeypatch, f32):
    """Every loop asks LLVM for 512-bit vectors (_numba_simd.wide_vectors): LLVM's tuning for
    Intel's AVX-512 cores prefers 256-bit ones, which held the numba loops at half the C
    kernels' width there (float32 gelu 0.35-0.56x c on an Emerald Rapids). The serial loop and
    the prange body (a function of its own) both compute in zmm registers."""
    import re

    from fusedact.backends import _numba_simd, numba_backend

    if not _numba_simd.target_has_avx512():
        pytest.skip("numba does not compile for an AVX-512 target here")
    dtype = np.float32 if f32 else np.float64
    loops = numba_backend._loops_for("elu", f32)
    # compiled here, not loaded from the disk cache: a loaded loop has no assembly to show
    monkeypatch.setattr(numba_backend, "_cache_usable", lambda: False)
    serial, parallel = numba_backend._jit_pair(NUMBA.numba, loops.forward)
    x = np.linspace(-20, 20, 70_001).astype(dtype)
    for loop in (serial, parallel):
        out = np.empty_like(x)
        loop(x, out, 1.0, 0.0, 0.0)
        np.testing.assert_allclose(out, fusedact.elu(x, backend="numpy"),
                                   rtol=4e-7 if f32 else 1e-15)
        asm = "".join(loop.inspect_asm().values())
        assert re.search(r"\tvfn?madd\w+\t[^\n]*%zmm", asm), "no 512-bit FMA in the loop"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_at_beta_one_takes_its_own_kernel_with_the_general_bits(dtype):
    """softplus at beta = 1 (the default) runs the softplus1 kernel, without beta's rounding
    term and division (as the C loops do), and gives the general kernel's bits: over the
    saturation regions, the threshold, tails and specials, at the default threshold and
    another; a beta of 2 keeps the general kernel."""
    from fusedact.backends import numba_backend

    f32 = dtype == np.float32
    rng = np.random.default_rng(21)
    x = np.concatenate([rng.standard_normal(20_000) * 12, np.linspace(-800, 800, 16_001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 19.999, 20.0, 20.001, 1e-30,
                         -1e-30, 1e-40, 88.0, -104.0, 710.0, -745.0]]).astype(dtype)
    general = numba_backend._build_elementwise(NUMBA.numba, "softplus", f32)[0][0]
    NUMBA._lanes.clear()  # the kernels of earlier calls (other betas) out of the way
    for threshold in (20.0, 3.5):
        want = np.empty_like(x)
        general(x, want, 1.0, threshold, 0.0)
        for n in (x.size, 1, 7, 17, 33):
            got = fusedact.softplus(x[:n], threshold=threshold, backend="numba")
            np.testing.assert_array_equal(got, want[:n], err_msg=f"threshold {threshold}, n={n}")
        kernels = {lane[4] for key, lane in NUMBA._lanes.items()
                   if key[:2] == (0, "softplus") and key[3] == x.dtype}
        assert kernels == {"softplus1"}, kernels
    NUMBA._lanes.clear()
    fusedact.softplus(x, beta=2.0, backend="numba")
    assert [lane[4] for key, lane in NUMBA._lanes.items() if key[1] == "softplus"] == ["softplus"]


@pytest.mark.parametrize("op", ["silu", "gelu_tanh"])
def test_float32_quotient_loops_divide_once_per_vector(op, monkeypatch):
    """float32 silu and gelu_tanh divide once per 16 lanes, as C's AVX-512 loops do: when the
    quotient's terms were selected per lane, LLVM turned silu's x / select(...) into a select
    of two quotients, two vdivps a vector (its loop 28 % slower); the exponents are selected
    instead (_numba_math32.one_plus_exp_parts_scalef)."""
    import re

    from fusedact.backends import _numba_simd, numba_backend

    if not _numba_simd.available():
        pytest.skip("the float32 quotient loops take vscalefps on AVX-512 targets only")
    numba_backend._loops_for(op, True)
    # compiled here, not loaded from the disk cache: a loaded loop has no assembly to show
    monkeypatch.setattr(numba_backend, "_cache_usable", lambda: False)
    serial = numba_backend._build_elementwise(NUMBA.numba, op, True)[0][0]
    x = np.linspace(-20, 20, 1001).astype(np.float32)
    out = np.empty_like(x)
    serial(x, out, 0.0, 0.0, 0.0)
    want = (fusedact.gelu(x, approximate="tanh", backend="numpy") if op == "gelu_tanh"
            else fusedact.silu(x, backend="numpy"))
    np.testing.assert_allclose(out, want, rtol=3 * np.finfo(np.float32).eps,
                               atol=3 * np.finfo(np.float32).smallest_subnormal)
    asm = "".join(serial.inspect_asm().values())
    assert len(re.findall(r"\tvdivps\t[^\n]*%zmm", asm)) == 1


def test_the_cuda_backends_float32_forms_take_no_x86_instruction():
    """The cuda backend compiles _numba_math32's portable forms (_device_fn) for the GPU, where
    vscalefps and the table permutes do not exist. Each kernel the cuda backend would take is
    compiled here for the CPU and its LLVM IR must hold neither, including the functions it
    calls (gelu_tanh's tail, x_sigmoid_pair, once inlined the AVX-512 form)."""
    from numba import njit

    from fusedact.backends import _numba_math32, cuda_backend

    for kernel in _numba_math32.KERNELS:
        for kind in ("fwd", "der"):
            fn = cuda_backend._device_fn(_numba_math32, kernel, kind)

            @njit(cache=False)
            def call(x, f=fn):
                return f(x, np.float32(1.5), np.float32(20.0), np.float32(0.0))

            call(np.float32(0.5))
            llvm = "".join(call.inspect_llvm().values())
            assert "scalef" not in llvm, f"{kernel}_{kind}"
            assert "fusedact_table_" not in llvm, f"{kernel}_{kind}"
