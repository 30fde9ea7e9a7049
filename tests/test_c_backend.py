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
        limit = 4.5 if r["op"] == "gelu" else 3.0  # see FLOAT64_EXCEPTIONS in test_elementwise
        assert r["f64_fwd"] <= limit, r


def test_param_sets_are_all_in_the_table():
    assert all(param_sets(n) for n in ELEMENTWISE_OPS)
