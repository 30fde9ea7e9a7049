"""Every elementwise op x dtype x backend against the independent references."""

from __future__ import annotations

import numpy as np
import pytest

import fusedact
import reference as ref
from cases import adversarial, elementwise_cases, finite_sample, FLOAT_DTYPES
from fusedact import OPS

# SPEC section 5: forward within 3 ULP, backward within 4 mixed units.
FORWARD_ULP = 3.0
BACKWARD_UNITS = 4.0
# The cuda backend's float64 gelu sums erfc's Chebyshev series, as numba did until it took R(a)
# on table pieces (numba's series: 4.0 ULP at x = -27.2). Recorded in the README.
FLOAT64_EXCEPTIONS = {("cuda", "gelu", "none"): 4.5}


def _call(name, x, params, backend, **kw):
    return getattr(fusedact, name)(x, **params, backend=backend, **kw)


def _where(x, errs):
    i = int(np.argmax(errs))
    return f"worst {errs[i]:.2f} at x={x.ravel()[i]!r}"


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_forward_adversarial(name, params, dtype, backend):
    x = adversarial(dtype, OPS[name].domain)
    x_before = x.copy()
    y = _call(name, x, params, backend)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, x_before)  # inputs are never modified
    want = ref.forward(name, x, params)
    if dtype == np.float64:
        # Structure (NaN/inf positions, signs of limits) here; digits against mpmath below.
        # (the float64 formulas lose up to ~1000 ULP in some tails, e.g. gelu's x**3).
        errs = ref.ulp_error(y, want, np.float64)
        tol = 1e5
    else:
        errs = ref.ulp_error(y, want, dtype)
        tol = FORWARD_ULP
    assert errs.max() <= tol, f"{name}{params} {np.dtype(dtype).name} [{backend}]: {_where(x, errs)}"


# Where a 20,000-point float64 sweep once found more than 3 ULP: mish (3.54 at the first,
# seven roundings in its quotient), swish b=1.702 (3.24) and gelu_tanh (3.05), whose
# x sigmoid(u + err) rounded d, x p and the correction apart. Every op takes them.
FLOAT64_PAST_WORST = (-2.1311065553277615, -6.830841542077096, -8.696434821741079,
                      -5.5112755637781845, -5.959797989899499, -21.834620951447334,
                      -6.348317415870795, -5.32278534861409, -1.3380669033451653)


# Piecewise-linear ops are exact in float64 formulas: test_forward_adversarial covers them.
@pytest.mark.parametrize("name,params", [c for c in elementwise_cases()
                                         if not OPS[c.values[0]].piecewise])
def test_forward_float64_against_mpmath(name, params, backend):
    spec = OPS[name]
    lo, hi = spec.domain
    x = np.concatenate([np.linspace(lo, hi, 151), np.random.default_rng(5).uniform(lo, hi, 50),
                        [-1e-8, 1e-300, -2.5e-310, 0.5, -0.5, -709.0, -711.5, -713.0],
                        [v for v in FLOAT64_PAST_WORST if lo <= v <= hi]])
    truths = ref.mp_forward(name, x, params)
    y = _call(name, x, params, backend)
    errs = ref.ulp_error_mp(y, truths, np.float64)
    tol = FLOAT64_EXCEPTIONS.get((backend, name, params.get("approximate")), FORWARD_ULP)
    assert errs.max() <= tol, f"{name}{params} float64 [{backend}]: {_where(x, errs)}"


def _saved_and_truth(name, params, x, dtype):
    """(saved array of dtype, float64 derivative at the point the kernel sees)."""
    if OPS[name].saved == "y":
        y = fusedact.__dict__[name](x, **params, backend="numpy")
        yw = y.astype(np.float64)
        with np.errstate(all="ignore"):
            d = {"sigmoid": lambda: yw * (1 - yw), "tanh": lambda: 1 - yw * yw,
                 "relu": lambda: np.where(np.isnan(yw), yw, (yw > 0).astype(float))}[name]()
        return y, d
    return x, ref.derivative(name, x, params)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_backward_adversarial(name, params, dtype, backend):
    x = adversarial(dtype, OPS[name].domain)
    rng = np.random.default_rng(2)
    g = rng.standard_normal(x.shape).astype(dtype)
    saved, d = _saved_and_truth(name, params, x, dtype)
    got = getattr(fusedact, f"{name}_backward")(g, saved, **params, backend=backend)
    assert got.dtype == dtype
    gw = g.astype(np.float64)
    with np.errstate(all="ignore"):
        want = gw * d
        if OPS[name].piecewise:
            want = np.where(d == 0, 0.0, want)
    # float64 truths here are float64 formulas themselves (a few ULP): allow for that.
    tol = BACKWARD_UNITS if dtype != np.float64 else 4 * BACKWARD_UNITS
    errs = ref.mixed_error(got, want, gw, dtype)
    assert errs.max() <= tol, f"{name}_backward{params} {np.dtype(dtype).name} [{backend}]: {_where(x, errs)}"


@pytest.mark.parametrize("name,params", elementwise_cases())
def test_backward_matches_finite_differences(name, params, backend):
    """float64 central differences, away from kinks, against the backward kernel."""
    spec = OPS[name]
    x = finite_sample(np.float64, (max(spec.domain[0], -15.0), min(spec.domain[1], 15.0)), n=400)
    kinks = np.array([0.0, -3.0, 3.0, 6.0, params.get("min_val", 0.0), params.get("max_val", 0.0)])
    x = x[np.min(np.abs(x[:, None] - kinks[None, :]), axis=1) > 1e-3]
    if name == "softplus":
        x = x[np.abs(x * params["beta"] - params["threshold"]) > 1e-3]
    f = getattr(fusedact, name)
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    numeric = (f(x + h, **params, backend="numpy") - f(x - h, **params, backend="numpy")) / (2 * h)
    saved = f(x, **params, backend=backend) if spec.saved == "y" else x
    got = getattr(fusedact, f"{name}_backward")(np.ones_like(x), saved, **params, backend=backend)
    np.testing.assert_allclose(got, numeric, rtol=2e-6, atol=2e-7,
                               err_msg=f"{name}{params} [{backend}]")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_signed_zeros_match_the_reference(name, params, dtype, backend):
    """f(+-0) and the zero results of tiny inputs carry the reference's sign (the ULP
    measure counts -0 and +0 as equal; silu(-0) and float64 gelu(-0) once gave +0)."""
    tiny = float(np.finfo(dtype).smallest_subnormal)
    x = np.array([0.0, -0.0, tiny, -tiny, 1e-30, -1e-30], dtype)
    y = _call(name, x, params, backend)
    want = ref.forward(name, x, params).astype(dtype)
    zero = (want == 0) & (y == 0)
    np.testing.assert_array_equal(np.signbit(y[zero]), np.signbit(want[zero]),
                                  err_msg=f"{name}{params} at {x[zero]} [{backend}]")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_derivative_true_is_forward_and_backward_in_one(name, params, dtype, backend):
    x = adversarial(dtype, OPS[name].domain)
    y, d = _call(name, x, params, backend, derivative=True)
    y_alone = _call(name, x, params, backend)
    np.testing.assert_array_equal(y, y_alone)
    saved = y if OPS[name].saved == "y" else x
    with np.errstate(all="ignore"):
        d_alone = getattr(fusedact, f"{name}_backward")(np.ones_like(x), saved, **params,
                                                        backend=backend)
    errs = ref.mixed_error(d, d_alone, np.ones(x.shape), dtype)
    assert errs.max() <= 2.0, f"{name}{params} [{backend}]: {_where(x, errs)}"


@pytest.mark.parametrize("name,params", elementwise_cases())
def test_layouts_sizes_and_tails(name, params, backend):
    """Sizes 0..33, 0-d, strided, negative strides, Fortran and transposed layouts give
    exactly what the same backend gives on a contiguous copy, and match numpy."""
    f = getattr(fusedact, name)
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for n in range(0, 34):
            x = (rng.standard_normal(n) * 4).astype(dtype)
            y = f(x, **params, backend=backend)
            assert y.shape == (n,) and y.dtype == dtype
            # Each backend is within 3 ULP of the truth (tested above), so two backends may
            # differ by 6; float64 gelu by up to 10 (see FLOAT64_EXCEPTIONS).
            np.testing.assert_array_max_ulp(y, f(x, **params, backend="numpy"), maxulp=10)
        base = (rng.standard_normal((9, 14)) * 4).astype(dtype)
        views = {"strided": base[::2, ::3], "negative": base[::-1, ::-2], "fortran":
                 np.asfortranarray(base), "transposed": base.T, "column": base[:, 5]}
        for label, v in views.items():
            y = f(v, **params, backend=backend)
            assert y.shape == v.shape, label
            np.testing.assert_array_equal(y, f(np.ascontiguousarray(v), **params, backend=backend),
                                          err_msg=f"{name} {label} [{backend}]")
        zero_d = np.array(dtype(0.75))
        r = f(zero_d, **params, backend=backend)
        assert np.ndim(r) == 0 and isinstance(r, np.generic)


@pytest.mark.parametrize("name,params", elementwise_cases())
def test_out_in_place_and_overlap(name, params, backend):
    f = getattr(fusedact, name)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(101) * 4).astype(np.float32)
    expected = f(x, **params, backend=backend)
    inplace = x.copy()
    r = f(inplace, **params, out=inplace, backend=backend)
    assert r is inplace
    np.testing.assert_array_equal(inplace, expected)
    # Partial overlap: out is the input shifted by one element.
    buf = np.concatenate([x, [0]]).astype(np.float32)
    out_view = buf[1:]
    f(buf[:-1], **params, out=out_view, backend=backend)
    np.testing.assert_array_equal(out_view, expected)
    # A strided out.
    wide = np.zeros(202, np.float32)
    f(x, **params, out=wide[::2], backend=backend)
    np.testing.assert_array_equal(wide[::2], expected)
    assert not wide[1::2].any()
    # Backward in place on grad_out.
    g = np.ones_like(x)
    saved = expected if OPS[name].saved == "y" else x
    want = getattr(fusedact, f"{name}_backward")(g, saved, **params, backend=backend)
    got = getattr(fusedact, f"{name}_backward")(g, saved, **params, out=g, backend=backend)
    assert got is g
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("name,params", elementwise_cases())
def test_derivative_out_tuple(name, params, backend):
    x = np.linspace(-5, 5, 37)
    oy, od = np.empty_like(x), np.empty_like(x)
    y, d = _call(name, x, params, backend, derivative=True, out=(oy, od))
    assert y is oy and d is od
    with pytest.raises(TypeError, match="tuple of 2"):
        _call(name, x, params, backend, derivative=True, out=oy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_gelu_at_the_edges_of_its_pieces(dtype, backend):
    """The c backend's gelu evaluates R(a) on pieces numbered by the bits of |x| + 1 (float32:
    four an octave up to 13.5, the AVX-512 loop; float64: two an octave up to 38, every
    level); a + 1 rounds before it is numbered, so each piece must also hold just past its
    ends. 48 floats either side of every edge, both signs, and the clamp; forward, backward,
    and derivative=True's pair. The float64 truths here are mpmath's."""
    if dtype == np.float32:
        edges = [2.0 ** e * (1 + m / 4) - 1 for e in range(4) for m in range(4)] + [13.5]
    else:
        edges = [2.0 ** e * (1 + m / 2) - 1 for e in range(6) for m in range(2)] + [38.0]
        edges = [e for e in edges if e <= 38.0]
    steps = np.arange(-48, 49, dtype=dtype)
    x = np.concatenate([dtype(e) + steps * np.spacing(dtype(max(e, 1e-3))) for e in edges])
    x = np.concatenate([x, -x]).astype(dtype)
    exact = {"approximate": "none"}
    y = _call("gelu", x, exact, backend)
    if dtype == np.float32:
        errs = ref.ulp_error(y, ref.forward("gelu", x, exact), np.float32)
        tol = FORWARD_ULP
    else:
        errs = ref.ulp_error_mp(y, ref.mp_forward("gelu", x, exact), np.float64)
        tol = FLOAT64_EXCEPTIONS.get((backend, "gelu", "none"), FORWARD_ULP)
    assert errs.max() <= tol, _where(x, errs)
    g = np.random.default_rng(9).standard_normal(x.shape).astype(dtype)
    got = fusedact.gelu_backward(g, x, **exact, backend=backend)
    gw = g.astype(np.float64)
    slope = ref.derivative("gelu", x, exact)
    unit_tol = BACKWARD_UNITS if dtype == np.float32 else 4 * BACKWARD_UNITS  # float64 truths
    errs = ref.mixed_error(got, gw * slope, gw, dtype)
    assert errs.max() <= unit_tol, _where(x, errs)
    y2, d = _call("gelu", x, exact, backend, derivative=True)
    np.testing.assert_array_equal(y2, y)
    errs = ref.mixed_error(d, slope, np.ones_like(slope), dtype)
    assert errs.max() <= unit_tol, _where(x, errs)
