"""Things only the compiled C backend has: SIMD levels, chunking across threads, the
extension's own checks, and the accuracy tool's dense sweep as a test."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fusedact
from fusedact import ELEMENTWISE_OPS
from cases import param_sets

if "c" not in fusedact.available_backends():
    pytest.skip(f"the C backend is unavailable: {fusedact.backend_status()['c'][1]}",
                allow_module_level=True)

C = fusedact._dispatch._load("c")[0]
THRESHOLD = 65536  # FA_PARALLEL_MIN in csrc/fusedact.c


def test_simd_levels_and_env_var():
    assert C.simd() in ("baseline", "avx2", "avx512")
    code = ("import fusedact; c = fusedact._dispatch._load('c')[0]; "
            "print(fusedact.backend_status()['c'][1]); print(c.simd())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "FUSEDACT_SIMD": "baseline"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "baseline"
    r = subprocess.run([sys.executable, "-c", "import fusedact; print(fusedact.relu([1.0], backend='c'))"],
                       capture_output=True, text=True,
                       env={**os.environ, "FUSEDACT_SIMD": "sse9"}, timeout=120)
    assert r.returncode != 0 and "FUSEDACT_SIMD='sse9' is not one of baseline, avx2, avx512" in r.stderr


def test_op_names_match_the_catalogue():
    names = [C.ffi.string(C.lib.fa_op_name(i)).decode() for i in range(C.lib.fa_op_count())]
    assert [n for n in names if n != "gelu_tanh"] == list(ELEMENTWISE_OPS)
    assert C.lib.fa_elementwise_f32(99, 0, C.ffi.NULL, C.ffi.NULL, C.ffi.NULL, C.ffi.NULL, 0,
                                    [0.0] * 4, 1) == -1


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", ["sigmoid", "gelu", "mish", "relu", "softplus"])
def test_sizes_around_the_thread_threshold_and_chunks(name, threads):
    """Tails of 1..67 elements, and sizes at the parallel threshold and chunk boundaries,
    split over 1-3 threads, give exactly the single-threaded result."""
    f = getattr(fusedact, name)
    sizes = list(range(1, 68)) + [THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, THRESHOLD + 63,
                                  4 * 16384 * 3 + 17, 1_000_003]
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        big = (rng.standard_normal(max(sizes)) * 5).astype(dtype)
        fusedact.set_num_threads(1)
        try:
            reference = [f(big[:n], backend="c") for n in sizes]
            fusedact.set_num_threads(threads)
            for n, want in zip(sizes, reference):
                got = f(big[:n], backend="c")
                np.testing.assert_array_equal(got, want, err_msg=f"{name} n={n} threads={threads}")
                y, d = f(big[:n], derivative=True, backend="c")
                np.testing.assert_array_equal(y, want)
        finally:
            fusedact.set_num_threads(fusedact._threads._from_env())


def test_bias_act_backward_is_deterministic_across_threads():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4096, 64)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in (1, 2, 1, 2):
        fusedact.set_num_threads(threads)
        try:
            results.append(fusedact.bias_act_backward(g, x, b, "gelu", backend="c"))
        finally:
            fusedact.set_num_threads(fusedact._threads._from_env())
    for gx, gb in results[1:]:
        np.testing.assert_array_equal(gx, results[0][0])
        np.testing.assert_allclose(gb, results[0][1], rtol=1e-6)
    np.testing.assert_array_equal(results[1][1], results[3][1])  # same threads, same sum


def test_accuracy_tool_dense_sample():
    """The accuracy tool's own measurement (float32 over each op's domain against the
    float64 reference, float64 against mpmath) stays inside SPEC section 5 for c."""
    from fusedact import _accuracy

    rows = _accuracy.measure(ELEMENTWISE_OPS, ["c"], dense=200_000, dense64=150)
    for r in rows:
        assert r["f32_fwd"] <= 3.0, r
        assert r["f32_bwd"] <= 4.0, r
        assert r["f64_fwd"] <= 3.0, r


def test_param_sets_are_all_in_the_table():
    assert all(param_sets(n) for n in ELEMENTWISE_OPS)


@pytest.mark.parametrize("level", ["avx512", "avx2", "baseline"])
@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_outputs_equal_plain_ones(level, threads):
    """With streaming stores forced on every call (limit 0), each streamed op and mode writes
    exactly what plain stores write (cases.check_streamed_equals_plain): tails of 1..67
    elements, sizes around the 2048-byte block (511-513 float32, 255-257 float64) and the
    parallel threshold, misaligned outputs, in place, adversarial values."""
    from cases import check_streamed_equals_plain, variant_backend
    from fusedact.backends import _layout

    sizes = list(range(1, 68)) + [255, 256, 257, 511, 512, 513, 1537, THRESHOLD + 63, 200_003]
    before = C.lib.fa_stream_min_bytes(-1)
    fusedact.set_num_threads(threads)
    try:
        with variant_backend(f"c@{level}") as backend:
            check_streamed_equals_plain(backend, C.lib.fa_stream_min_bytes,
                                        list(_layout.STREAMED_MODES), sizes, seed=11)
    finally:
        C.lib.fa_stream_min_bytes(before)
        fusedact.set_num_threads(fusedact._threads._from_env())


@pytest.mark.parametrize("level", ["avx512", "avx2", "baseline"])
@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_softmax_backward_equals_plain(level, threads):
    """softmax_backward's rows streamed (limit 0) write what plain stores write: short rows,
    rows around a 64-byte line, rows of the largest streamed size (32 KiB) and one element
    more (plain), past the parallel threshold."""
    from cases import check_streamed_rows_equal_plain, variant_backend

    shapes = [(1, 1), (3, 7), (5, 17), (9, 33), (4, 64), (6, 65), (2, 4095), (2, 4096),
              (2, 4097), (2, 8192), (2, 8193), (100, 1024), (70, 1001)]
    before = C.lib.fa_stream_min_bytes(-1)
    fusedact.set_num_threads(threads)
    try:
        with variant_backend(f"c@{level}") as backend:
            check_streamed_rows_equal_plain(backend, C.lib.fa_stream_min_bytes, shapes, seed=12)
    finally:
        C.lib.fa_stream_min_bytes(before)
        fusedact.set_num_threads(fusedact._threads._from_env())


def test_stream_limit_env_var():
    code = ("import fusedact; c = fusedact._dispatch._load('c')[0]; "
            "print(c.lib.fa_stream_min_bytes(-1)); print(c.describe()['streaming stores'])")
    for value, want in (("", 40 << 20), ("0", 0), ("48", 48 << 20), ("off", 2**63 - 1)):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "FUSEDACT_STREAM_MIN_MB": value}, timeout=120)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.split("\n")[0]) == want, (value, r.stdout)
    r = subprocess.run([sys.executable, "-c", "import fusedact; fusedact.relu([1.0], backend='c')"],
                       capture_output=True, text=True,
                       env={**os.environ, "FUSEDACT_STREAM_MIN_MB": "12.5"}, timeout=120)
    assert r.returncode != 0
    assert "FUSEDACT_STREAM_MIN_MB='12.5' is not a whole number of MiB or 'off'" in r.stderr


@pytest.mark.parametrize("variable,value", [("FUSEDACT_SIMD", "sse9"),
                                            ("FUSEDACT_STREAM_MIN_MB", "12.5")])
def test_a_bad_setting_stops_auto(variable, value):
    """auto does not pass over a C backend that is built but misconfigured to run numba or
    NumPy instead: the first call says which variable is wrong; naming another backend
    still works, and `info` reports the problem instead of failing."""
    env = {**os.environ, variable: value}
    r = subprocess.run([sys.executable, "-c", "import fusedact; fusedact.relu([1.0])"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    assert f"{variable}={value!r}" in r.stderr and "fix or unset the variable" in r.stderr
    r = subprocess.run([sys.executable, "-c",
                        "import fusedact; print(fusedact.relu([-1.0, 2.0], backend='numpy'))"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["[0.", "2.]"], r.stderr
    r = subprocess.run([sys.executable, "-m", "fusedact", "info"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"selected: auto (from default) ({variable}={value!r}" in r.stdout


def test_float64_gelu_is_the_same_bits_with_and_without_avx512():
    """fa_avx512_f64.inc's gelu loops (forward, backward, derivative=True, bias_act) claim the
    portable code's bits: the AVX2 build runs that code with the same FMAs. Without AVX-512
    both runs are the same level and the test holds trivially."""
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.standard_normal(200_000) * 8, rng.uniform(-40, 40, 100_000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 38.0, -38.0, 1e-300, -1e-300,
                         5e-324, -5e-324, 37.99999999, -37.99999999]])
    g = rng.standard_normal(x.size)
    bias = rng.standard_normal(13)
    rows = x[: 13 * 1000].reshape(1000, 13)
    grows = g[: 13 * 1000].reshape(1000, 13)

    def run():
        return (fusedact.gelu(x, backend="c"), fusedact.gelu_backward(g, x, backend="c"),
                *fusedact.gelu(x, derivative=True, backend="c"),
                fusedact.bias_act(rows, bias, "gelu", backend="c"),
                *fusedact.bias_act_backward(grows, rows, bias, "gelu", backend="c"))

    best = run()
    before = C.simd()
    if C.set_simd("avx2") != "avx2":
        C.set_simd(before)
        pytest.skip("this CPU has no AVX2")
    try:
        portable = run()
    finally:
        C.set_simd(before)
    for got, want in zip(best, portable):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("level", ["avx512", "avx2", "baseline"])
def test_float16_conversions_match_numpy_at_every_simd_level(level):
    """fa_f16_to_f32 and fa_f32_to_f16 (the float16 loops' conversions: F16C where the level
    has it, the portable code for tails and the baseline): every half widened exactly, and
    floats rounded to nearest even as NumPy's astype rounds them, at the midpoints between
    halves and one float either side, the overflow and underflow boundaries, and random bits."""
    be = C
    previous = be.simd()
    be.set_simd(level)
    try:
        ffi, lib = be.ffi, be.lib
        halves = np.arange(65536, dtype=np.uint16)
        wide = np.empty(halves.size, np.float32)
        lib.fa_f16_to_f32(ffi.from_buffer("uint16_t[]", halves),
                          ffi.from_buffer("float[]", wide, True), halves.size)
        want = halves.view(np.float16).astype(np.float32)
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(wide), nan)
        np.testing.assert_array_equal(wide.view(np.uint32)[~nan], want.view(np.uint32)[~nan])
        finite = halves.view(np.float16).astype(np.float64)
        finite = np.unique(finite[np.isfinite(finite)])
        mids = ((finite[:-1] + finite[1:]) / 2).astype(np.float32)  # exact in float
        rng = np.random.default_rng(6)
        floats = np.concatenate([
            mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)),
            rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
            np.float32([65504, 65519.996, 65520, 65536, 1e30, 2**-25, 2**-24, 2**-14, 3e-8,
                        -0.0, np.inf, -np.inf, np.nan, 1e-45])])
        narrow = np.empty(floats.size, np.uint16)
        lib.fa_f32_to_f16(ffi.from_buffer("float[]", floats),
                          ffi.from_buffer("uint16_t[]", narrow, True), floats.size)
        with np.errstate(all="ignore"):
            want16 = floats.astype(np.float16)
        nan = np.isnan(want16)
        np.testing.assert_array_equal(np.isnan(narrow.view(np.float16)), nan)
        np.testing.assert_array_equal(narrow[~nan], want16.view(np.uint16)[~nan])
    finally:
        be.set_simd(previous)


@pytest.mark.parametrize("beta", [1.702, 0.5, -0.7, 1e-3, 100.0, 1e-38])
def test_float32_swish_with_a_beta_stays_within_spec(beta):
    """float32 swish at beta != 1 (AVX-512: x sigmoid(b x) with b x as a float pair, one
    division; elsewhere the portable double form): dense sweeps around the saturation of
    sigmoid(b x), wide and huge x, specials, against x sigmoid(b x) in double: under 2.5 ULP
    (measured 2.28 at most over ten betas), results below the smallest normal within one
    smallest normal (SPEC 5), and x = -inf with beta > 0 gives -0."""
    rng = np.random.default_rng(17)
    span = min(1.0 / abs(beta), 1e35)  # beta = 1e-38: b x stays within +-3.4 for every float
    x = np.concatenate([rng.standard_normal(100_000) * 8 * span,
                        np.linspace(-160 * span, 60 * span, 100_001),
                        rng.standard_normal(2_000) * 3e37, [3.4e38, -3.4e38, 2.5e38, -2.5e38],
                        [0.0, -0.0, 1e-40, -1e-40, -1e-45]]).astype(np.float32)
    x = x[np.isfinite(x)]
    y = fusedact.swish(x, beta=beta, backend="c").astype(np.float64)
    xd = x.astype(np.float64)
    u = beta * xd  # beta to double precision: the kernels carry its residual (P[3])
    with np.errstate(over="ignore"):
        want = np.where(u >= 0, xd / (1 + np.exp(-u)), xd * np.exp(np.minimum(u, 0))
                        / (1 + np.exp(np.minimum(u, 0))))
    tiny = float(np.finfo(np.float32).tiny)
    normal = np.abs(want) >= tiny
    ulp = np.ldexp(1.0, np.frexp(want)[1] - 24)
    err = np.abs(y - want)[normal] / ulp[normal]
    assert err.max() < 2.5, (err.max(), x[normal][err.argmax()])
    assert np.all(np.abs(y - want)[~normal] <= tiny)
    specials = np.array([np.inf, -np.inf, np.nan], np.float32)
    got = fusedact.swish(specials, beta=beta, backend="c")
    want_specials = fusedact.swish(specials, beta=beta, backend="numpy")
    np.testing.assert_array_equal(got, want_specials)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want_specials))


def test_float32_tanh_pieces_stay_near_correct_rounding():
    """The AVX-512 float32 tanh (a polynomial per piece, no division) measured 1.10 ULP over
    every float32; the exp-based form it replaced reached 1.93 on the accuracy tool's sweep
    (at x = -0.0311) and 2.42 over every float. A dense sweep, the worst points of both and
    the pieces' joins stay under 1.2 ULP, and tanh stays odd, bit for bit."""
    if C.simd() != "avx512":
        pytest.skip(f"the table of pieces is the AVX-512 loop's (here: {C.simd()})")
    joins = np.array([0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 9], np.float32)
    x = np.concatenate([np.linspace(0, 10, 2_000_001, dtype=np.float32),
                        np.geomspace(1e-38, 1, 200_001).astype(np.float32),
                        np.nextafter(joins, 0), joins, np.nextafter(joins, 20),
                        np.array([0.0620685294, 0.124593616, 0.0311, 4.157, 9.0, 9.011],
                                 np.float32)])
    y = fusedact.tanh(x, backend="c")
    want = np.tanh(x.astype(np.float64))
    ulp = np.ldexp(1.0, np.frexp(want)[1] - 24)
    err = np.abs(y - want) / np.maximum(ulp, 2.0 ** -149)
    assert err.max() < 1.2, (err.max(), x[err.argmax()])
    np.testing.assert_array_equal(fusedact.tanh(-x, backend="c"), -y)
