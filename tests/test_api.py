"""Input rules of SPEC section 3 and the shape of the public API, driven by the catalogue."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

import fusedact
from fusedact import ELEMENTWISE_OPS, OPS


def test_every_catalogue_op_has_forward_and_backward():
    for name, spec in OPS.items():
        assert callable(getattr(fusedact, name)), name
        if spec.family != "fused" or name == "bias_act":
            assert callable(getattr(fusedact, f"{name}_backward")), name
        assert name in fusedact.__all__


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_signatures_docstrings_repr_pickle(name):
    f, b = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    spec = OPS[name]
    params = list(inspect.signature(f).parameters)
    assert params == ["x", *spec.param_names, "out", "derivative", "backend"]
    bparams = list(inspect.signature(b).parameters)
    assert bparams == ["grad_out", spec.saved, *spec.param_names, "out", "backend"]
    for p in spec.params:
        assert inspect.signature(f).parameters[p.name].default == p.default
    assert repr(f) == f"fusedact.{name}" and repr(b) == f"fusedact.{name}_backward"
    assert spec.numpy_equivalent in f.__doc__ and spec.formula in f.__doc__
    assert pickle.loads(pickle.dumps(f)) is f


DTYPE_CASES = [(np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
               (np.int8, np.float64), (np.int64, np.float64), (np.uint16, np.float64),
               (np.bool_, np.float64)]


@pytest.mark.parametrize("in_dtype,out_dtype", DTYPE_CASES, ids=lambda d: np.dtype(d).name)
def test_dtype_rules(in_dtype, out_dtype, backend):
    x = np.array([0, 1, 2, 3], dtype=in_dtype)
    y = fusedact.gelu(x, backend=backend)
    assert y.dtype == out_dtype
    np.testing.assert_allclose(y, fusedact.gelu(x.astype(np.float64), backend="numpy"),
                               rtol=1e-3 if in_dtype == np.float16 else 1e-6)


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array([object()]), np.array(["a"]),
                                 np.array([1.0], dtype=np.longdouble)],
                         ids=["complex", "object", "str", "longdouble"])
def test_unsupported_dtypes_raise_type_error(bad, backend):
    if bad.dtype == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match="float16, float32, float64"):
        fusedact.sigmoid(bad, backend=backend)


def test_array_likes_scalars_and_byte_order(backend):
    assert isinstance(fusedact.relu([1.0, -2.0], backend=backend), np.ndarray)
    s = fusedact.sigmoid(0.0, backend=backend)
    assert isinstance(s, np.float64) and s == 0.5
    s32 = fusedact.sigmoid(np.float32(0.0), backend=backend)
    assert isinstance(s32, np.float32)
    swapped = np.arange(-3.0, 3.0).astype(">f8")
    np.testing.assert_array_equal(fusedact.tanh(swapped, backend=backend),
                                  fusedact.tanh(swapped.astype("<f8"), backend=backend))
    assert fusedact.tanh(swapped, backend=backend).dtype == np.dtype("=f8")
    with pytest.raises(TypeError, match="not array-like|not supported"):
        fusedact.relu({"a": 1}, backend=backend)


def test_out_errors(backend):
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"shape \(5,\), expected \(4,\)"):
        fusedact.relu(x, out=np.zeros(5, np.float32), backend=backend)
    with pytest.raises(TypeError, match="dtype float64, expected float32"):
        fusedact.relu(x, out=np.zeros(4), backend=backend)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fusedact.relu(x, out=ro, backend=backend)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fusedact.relu(x, out=[0.0] * 4, backend=backend)
    out16 = np.zeros(4, np.float16)
    assert fusedact.relu(x.astype(np.float16), out=out16, backend=backend) is out16


def test_backward_shape_and_dtype_rules(backend):
    with pytest.raises(ValueError, match=r"grad_out has shape \(3,\) but x has shape \(4,\)"):
        fusedact.gelu_backward(np.ones(3), np.ones(4), backend=backend)
    r = fusedact.gelu_backward(np.ones(3, np.float32), np.ones(3, np.float64), backend=backend)
    assert r.dtype == np.float64
    r = fusedact.gelu_backward(np.ones(3, np.float16), np.ones(3, np.float32), backend=backend)
    assert r.dtype == np.float32
    r = fusedact.sigmoid_backward(np.ones(3, np.int32), np.full(3, 0.5, np.float16), backend=backend)
    assert r.dtype == np.float64


def test_parameter_validation(backend):
    with pytest.raises(ValueError, match="approximate='erf' is not one of"):
        fusedact.gelu(np.ones(2), approximate="erf", backend=backend)
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        fusedact.leaky_relu(np.ones(2), negative_slope="big", backend=backend)
    np.testing.assert_allclose(fusedact.leaky_relu(np.array([-2.0]), np.float32(0.5),
                                                   backend=backend), [-1.0])
    with pytest.raises(ValueError, match="alpha must not be 0"):
        fusedact.celu(np.ones(2), alpha=0.0, backend=backend)
    with pytest.raises(ValueError, match="beta must not be 0"):
        fusedact.softplus_backward(np.ones(2), np.ones(2), beta=0, backend=backend)


def test_no_runtime_warnings_and_inputs_untouched(backend):
    # pytest turns RuntimeWarning into an error (pyproject's filterwarnings).
    x = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0, 5e-324])
    before = x.copy()
    with np.errstate(over="ignore"):
        x16 = x.astype(np.float16)
    for name in ELEMENTWISE_OPS:
        y, d = getattr(fusedact, name)(x, derivative=True, backend=backend)
        getattr(fusedact, f"{name}_backward")(x, x, backend=backend)
        getattr(fusedact, name)(x16, backend=backend)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_nan_and_infinity_semantics(name, backend):
    f = getattr(fusedact, name)
    y = f(np.array([np.nan, np.inf, -np.inf]), backend=backend)
    assert np.isnan(y[0]), f"{name}(NaN) must be NaN"
    assert not np.isnan(y[1:]).any(), f"{name}(+-inf) must be the limit, got {y[1:]}"
    _, d = f(np.array([np.nan, np.inf, -np.inf]), derivative=True, backend=backend)
    assert np.isnan(d[0]) and not np.isnan(d[1:]).any(), f"{name}' at NaN/inf: {d}"


def test_equal_but_not_identical_dtypes(backend):
    """An unpickled array's float32 dtype equals np.float32's but is another object (dask
    workers receive such arrays); each must still run its own dtype's kernel."""
    import pickle

    for base in (np.float32, np.float64):
        dtype = pickle.loads(pickle.dumps(np.dtype(base)))
        assert dtype == np.dtype(base) and dtype is not np.dtype(base)
        x = np.linspace(-6, 6, 1001).astype(base).view(dtype)
        want = fusedact.gelu(x.astype(base), backend="numpy")
        np.testing.assert_allclose(fusedact.gelu(x, backend=backend), want, rtol=1e-6)
        g = np.ones_like(x)
        np.testing.assert_allclose(fusedact.sigmoid_backward(g, x, backend=backend),
                                   fusedact.sigmoid_backward(g.astype(base), x.astype(base),
                                                             backend="numpy"), rtol=1e-6, atol=1e-30)


def test_large_outputs_share_their_inputs_offset_from_a_cache_line():
    """A new output of _ALIGN_MIN elements or more starts as far past a 64-byte boundary as
    its input (so the kernels' peeled head aligns both); smaller or non-contiguous inputs get
    np.empty_like. Values are those of an ordinary call either way."""
    from fusedact import _api

    if "c" not in fusedact.available_backends():
        pytest.skip("the c backend, whose kernels peel to alignment, is not built here")
    n = _api._ALIGN_MIN
    base = np.random.default_rng(5).standard_normal(n + 16).astype(np.float32)
    c = "c"  # named: under FUSEDACT_BACKEND=numba the default would not place outputs
    for start in range(0, 16, 3):
        x = base[start:start + n]
        for y in (fusedact.sigmoid(x, backend=c), fusedact.sigmoid_backward(x, x, backend=c),
                  fusedact.softmax(x.reshape(64, -1), backend=c),
                  fusedact.relu(x.astype(np.float16), backend=c)):
            assert y.flags.c_contiguous and y.flags.writeable
            if y.dtype == np.float32:
                assert y.ctypes.data % 64 == x.ctypes.data % 64
        np.testing.assert_array_equal(fusedact.sigmoid(x), fusedact.sigmoid(x.copy()))
    small = base[1:101]
    assert fusedact.sigmoid(small).flags.owndata
    # backends whose kernels do not peel (numba) get NumPy's own allocation, which was faster
    # for them; their values are the same wherever the output lies
    for name in ("numba", "numpy"):
        if name in fusedact.available_backends():
            x = base[3:3 + n]
            for y in (fusedact.sigmoid(x, backend=name),
                      fusedact.sigmoid_backward(x, x, backend=name)):
                assert y.flags.owndata and y.flags.c_contiguous
            np.testing.assert_allclose(fusedact.sigmoid(x, backend=name),
                                       fusedact.sigmoid(x, backend="numpy"), rtol=2e-7)
    strided = base[::2]
    np.testing.assert_array_equal(fusedact.tanh(strided), fusedact.tanh(strided.copy()))


@pytest.mark.parametrize("order", ["C", "F"])
def test_float16_through_the_c_conversions_equals_numpy_casts(order, host_backend):
    """float16 arrays of 4096 elements and more convert to float32 and back through the C
    extension's conversions (C order; other layouts cast in NumPy): the results are NumPy's
    casts of the float32 results, overflow to inf, NaNs and signed zeros included."""
    rng = np.random.default_rng(21)
    x32 = (rng.standard_normal((64, 128)) * 4e4).astype(np.float32)
    x32[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    with np.errstate(over="ignore"):
        h = np.asarray(x32.astype(np.float16), order=order)
        b = (rng.standard_normal(128) * 4e4).astype(np.float16)
        wide, bw = h.astype(np.float32), b.astype(np.float32)
        cases = [
            (fusedact.softmax(h, axis=0, backend=host_backend),
             fusedact.softmax(wide, axis=0, backend=host_backend).astype(np.float16)),
            (fusedact.bias_act(h, b, "relu", backend=host_backend),
             fusedact.bias_act(wide, bw, "relu", backend=host_backend).astype(np.float16)),
            (fusedact.sigmoid(h, backend=host_backend),
             fusedact.sigmoid(wide, backend=host_backend).astype(np.float16))]
    assert np.isinf(cases[1][1]).any()  # the overflow is exercised
    for got, want in cases:
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
