"""bias_act, bias_act_backward and softmax_cross_entropy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import fusedact
import reference as ref
from cases import HOST_BACKENDS, SIMD_VARIANTS, elementwise_cases, variant_backend
from fusedact import ELEMENTWISE_OPS, OPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_bias_act_is_act_of_sum(name, params, dtype, backend):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5, 3, 19)) * 4).astype(dtype)
    b = (rng.standard_normal(19) * 2).astype(dtype)
    y = fusedact.bias_act(x, b, name, **params, backend=backend)
    assert y.dtype == dtype and y.shape == x.shape
    z = x + b  # rounded to dtype, as act(x + b) would be
    want = ref.forward(name, z, params)
    if dtype == np.float64:
        np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-300)
    else:
        assert ref.ulp_error(y, want, dtype).max() <= 3.0, name

    g = rng.standard_normal(x.shape).astype(dtype)
    gx, gb = fusedact.bias_act_backward(g, x, b, name, **params, backend=backend)
    saved = getattr(fusedact, name)(z, **params, backend="numpy") if OPS[name].saved == "y" else z
    want_gx = getattr(fusedact, f"{name}_backward")(g, saved, **params, backend="numpy")
    np.testing.assert_allclose(gx, want_gx, rtol=8 * np.finfo(dtype).eps,
                               atol=8 * np.finfo(dtype).eps * np.abs(g).max())
    want_gb = gx.astype(np.float64).reshape(-1, 19).sum(axis=0)
    bound = 15 * 2 * np.finfo(dtype).eps * np.abs(gx.astype(np.float64)).reshape(-1, 19).sum(axis=0)
    assert np.all(np.abs(gb - want_gb) <= bound + 1e-30), name
    assert gb.shape == (19,) and gb.dtype == dtype


def test_bias_act_identity_params_and_out(backend):
    x = np.arange(12.0).reshape(3, 4)
    b = np.array([1.0, -1.0, 0.5, 0.0])
    np.testing.assert_array_equal(fusedact.bias_act(x, b, "identity", backend=backend), x + b)
    np.testing.assert_array_equal(fusedact.bias_act(x, b, None, backend=backend), x + b)
    gx, gb = fusedact.bias_act_backward(np.ones_like(x), x, b, None, backend=backend)
    np.testing.assert_array_equal(gb, [3.0] * 4)
    y = fusedact.bias_act(x - 6, b, "leaky_relu", negative_slope=0.5, backend=backend)
    np.testing.assert_allclose(y, np.where(x - 6 + b > 0, x - 6 + b, 0.5 * (x - 6 + b)))
    out = np.empty_like(x)
    assert fusedact.bias_act(x, b, "relu", out=out, backend=backend) is out
    inplace = x.copy()
    fusedact.bias_act(inplace, b, "relu", out=inplace, backend=backend)
    np.testing.assert_array_equal(inplace, np.maximum(x + b, 0))
    ogx, ogb = np.empty_like(x), np.empty_like(b)
    r = fusedact.bias_act_backward(np.ones_like(x), x, b, "relu", out=(ogx, ogb), backend=backend)
    assert r[0] is ogx and r[1] is ogb
    gx, gb = fusedact.bias_act_backward(np.ones((0, 4)), np.ones((0, 4)), b, "relu", backend=backend)
    assert gx.shape == (0, 4) and np.array_equal(gb, np.zeros(4))


def test_bias_act_errors(backend):
    x, b = np.zeros((2, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="bias has shape"):
        fusedact.bias_act(x, np.zeros(4), "relu", backend=backend)
    with pytest.raises(ValueError, match="not an elementwise op"):
        fusedact.bias_act(x, b, "softmax", backend=backend)
    with pytest.raises(TypeError, match="no parameter"):
        fusedact.bias_act(x, b, "relu", alpha=2.0, backend=backend)
    with pytest.raises(ValueError, match="must be equal"):
        fusedact.bias_act_backward(np.zeros((3, 3)), x, b, "relu", backend=backend)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 1), (7, 10), (64, 1000), (2, 3, 5)])
def test_softmax_cross_entropy(shape, dtype, backend):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    loss, grad = fusedact.softmax_cross_entropy(z, labels, backend=backend)
    assert loss.shape == shape[:-1] and grad.shape == shape and loss.dtype == dtype
    zw = z.astype(np.float64)
    ls = special.log_softmax(zw, axis=-1)
    want_loss = -np.take_along_axis(ls, labels[..., None], -1)[..., 0]
    want_grad = np.exp(ls)
    np.put_along_axis(want_grad, labels[..., None],
                      np.take_along_axis(want_grad, labels[..., None], -1) - 1, -1)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, want_loss, rtol=4 * eps, atol=4 * eps * (1 + np.abs(zw).max()))
    np.testing.assert_allclose(grad, want_grad, rtol=4 * eps, atol=4 * eps)


def test_softmax_cross_entropy_extremes_and_ignore(backend):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 0, -100])
    loss, grad = fusedact.softmax_cross_entropy(z, labels, backend=backend)
    np.testing.assert_allclose(loss, [0.0, 2e4, 0.0])
    np.testing.assert_allclose(grad[0], [0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(grad[1], [-1.0, 1.0, 0.0], atol=1e-6)
    assert not grad[2].any()
    with pytest.raises(ValueError, match="out of range"):
        fusedact.softmax_cross_entropy(z, np.array([0, 3, 1]), backend=backend)
    with pytest.raises(TypeError, match="integer class indices"):
        fusedact.softmax_cross_entropy(z, np.array([0.0, 1.0, 1.0]), backend=backend)
    with pytest.raises(ValueError, match="labels has shape"):
        fusedact.softmax_cross_entropy(z, np.array([0, 1]), backend=backend)


@pytest.mark.parametrize("rows", [5, 64, 65, 300])
def test_softmax_cross_entropy_label_checks_at_every_batch_size(rows, backend):
    """Labels are checked one by one up to 64 of them and by array operations above: both
    must take every class and the ignore_index, refuse the rest with the same error, and
    give what the general path gives for other label types and layouts."""
    rng = np.random.default_rng(rows)
    z = rng.standard_normal((rows, 7)).astype(np.float32)
    labels = rng.integers(0, 7, rows)
    labels[::4] = -100  # ignored
    labels[1] = 6  # the last class
    want = fusedact.softmax_cross_entropy(z, labels, backend="numpy")
    for lab in (labels, labels.astype(np.int32), list(labels),
                np.repeat(labels, 2)[::2]):  # the same labels, other types and strides
        loss, grad = fusedact.softmax_cross_entropy(z, lab, backend=backend)
        np.testing.assert_allclose(loss, want[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad, want[1], rtol=1e-6, atol=1e-6)
        assert not grad[::4].any() and not loss[::4].any()
    for bad_value in (7, -1, -101, 2**62, -2**63):
        for where in (0, rows // 2, rows - 1):
            bad = labels.copy()
            bad[where] = bad_value
            with pytest.raises(ValueError, match=f"label {bad_value} is out of range"):
                fusedact.softmax_cross_entropy(z, bad, backend=backend)
    # another ignore_index: -100 is then out of range; labels equal to it are skipped
    with pytest.raises(ValueError, match="label -100 is out of range"):
        fusedact.softmax_cross_entropy(z, labels, ignore_index=3, backend=backend)
    shifted = np.where(labels == -100, 3, labels)
    loss, grad = fusedact.softmax_cross_entropy(z, shifted, ignore_index=3, backend=backend)
    assert not loss[shifted == 3].any() and not grad[shifted == 3].any()
    # unsigned labels past int64 wrap negative in the general path: out of range there too
    with pytest.raises(ValueError, match="out of range"):
        fusedact.softmax_cross_entropy(z, np.full(rows, 2**64 - 1, np.uint64), backend=backend)
    # an ignore_index no int64 equals: every label must be a class
    loss, _ = fusedact.softmax_cross_entropy(z, np.abs(shifted), ignore_index=2**70,
                                              backend=backend)
    assert np.all(loss > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_grad_bias_is_the_same_on_any_thread_count(dtype, host_backend):
    """grad_bias sums a column over rows in blocks that threads share out: the blocks' order of
    addition is fixed, so the bits must not depend on how many threads ran (300 rows: several
    blocks, one of them partial)."""
    from fusedact import _threads

    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 257)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    bias = rng.standard_normal(257).astype(dtype)
    before = _threads.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            _threads.set_num_threads(threads)
            results.append(fusedact.bias_act_backward(g, x, bias, "gelu", backend=host_backend))
    finally:
        _threads.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    want = fusedact.bias_act_backward(g, x, bias, "gelu", backend="numpy")[1]
    np.testing.assert_allclose(results[0][1], want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def _special_rows(dtype):
    """x (9 rows of 67, NaN, +-inf, +-0 and a subnormal among them), bias and grad_out."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((9, 67)) * 6).astype(dtype)
    x[0, :6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40]
    b = (rng.standard_normal(67) * 3).astype(dtype)
    return x, b, rng.standard_normal((9, 67)).astype(dtype)


@pytest.mark.parametrize("variant", HOST_BACKENDS + SIMD_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_bias_act_is_act_of_the_rounded_sum_bit_for_bit(variant, dtype):
    """Fused and unfused round the same way on the host backends: x + bias rounded to the
    dtype, then the op's own kernel (the AVX-512 float32 loops included)."""
    with variant_backend(variant) as name:
        x, b, _ = _special_rows(dtype)
        for act in ELEMENTWISE_OPS:
            fused = fusedact.bias_act(x, b, act, backend=name)
            unfused = getattr(fusedact, act)(x + b, backend=name)
            np.testing.assert_array_equal(fused, unfused, err_msg=act)


COMPILED_VARIANTS = [v for v in HOST_BACKENDS + SIMD_VARIANTS if v != "numpy"]


@pytest.mark.parametrize("variant", COMPILED_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_bias_act_backward_is_the_unfused_backward_bit_for_bit(variant, dtype):
    """The compiled backends' fused backward: grad_x as act_backward(g, saved(x + bias)),
    grad_bias as grad_x's column sums accumulated in double row after row."""
    with variant_backend(variant) as name:
        x, b, g = _special_rows(dtype)
        z = x + b
        for act in ELEMENTWISE_OPS:
            gx, gb = fusedact.bias_act_backward(g, x, b, act, backend=name)
            saved = getattr(fusedact, act)(z, backend=name) if OPS[act].saved == "y" else z
            want = getattr(fusedact, f"{act}_backward")(g, saved, backend=name)
            np.testing.assert_array_equal(gx, want, err_msg=act)
            column_sums = np.zeros(67)
            for row in gx.astype(np.float64):
                column_sums += row
            np.testing.assert_array_equal(gb, column_sums.astype(dtype), err_msg=act)
