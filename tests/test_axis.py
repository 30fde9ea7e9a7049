"""softmax, log_softmax and maxout, forward and backward, along any axis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import fusedact
import reference as ref
from cases import HOST_BACKENDS, SIMD_VARIANTS, variant_backend

SHAPES_AXES = [((7,), -1), ((5, 33), -1), ((5, 33), 0), ((3, 4, 17), 1), ((2, 1, 9), -1),
               ((4, 1024), -1), ((1, 1), 0)]


def _logits(shape, dtype, seed=0, scale=5.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_softmax_and_log_softmax_forward(shape, axis, dtype, backend):
    x = _logits(shape, dtype)
    before = x.copy()
    y = fusedact.softmax(x, axis=axis, backend=backend)
    ly = fusedact.log_softmax(x, axis=axis, backend=backend)
    np.testing.assert_array_equal(x, before)
    assert y.dtype == dtype and ly.dtype == dtype and y.shape == x.shape
    xw = x.astype(np.float64)
    lwant = special.log_softmax(xw, axis=axis)
    if dtype == np.float64:
        # scipy's float64 softmax is itself off by ~9 ULP (x - max rounds): use mpmath.
        errs = _softmax_mp_errors(xw, y, axis)
    else:
        errs = ref.ulp_error(y, special.softmax(xw, axis=axis), dtype)
    assert errs.max() <= 3.0
    # log_softmax near 0 (the largest entry) has an absolute error of a few eps.
    np.testing.assert_allclose(ly, lwant, rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps * np.abs(xw).max())


def _softmax_mp_errors(x, y, axis):
    import mpmath

    xm, ym = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    errs = []
    for idx in np.ndindex(xm.shape[:-1]):
        row = [mpmath.mpf(float(v)) for v in xm[idx]]
        e = [mpmath.exp(v - max(row)) for v in row]
        total = mpmath.fsum(e)
        errs.append(ref.ulp_error_mp(ym[idx], [v / total for v in e], np.float64))
    return np.concatenate(errs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_softmax_extreme_logits(dtype, backend):
    x = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4], [-np.inf, 0.0, 1.0, -np.inf],
                  [np.nan, 1.0, 2.0, 3.0], [88.0, 89.0, 90.0, -104.0]], dtype=dtype)
    y = fusedact.softmax(x, backend=backend)
    ly = fusedact.log_softmax(x, backend=backend)
    np.testing.assert_allclose(y[0], [0.5, 0, 0, 0.5])
    np.testing.assert_allclose(y[1], [0.25] * 4)
    assert y[2, 0] == 0 and y[2, 3] == 0 and np.isclose(y[2, 1:3].sum(), 1)
    assert np.isnan(y[3]).all() and np.isnan(ly[3]).all()
    np.testing.assert_allclose(ly[0], [-np.log(2), -2e4 - np.log(2), -1e4 - np.log(2), -np.log(2)],
                               rtol=1e-6)
    assert ly[2, 0] == -np.inf
    assert np.isfinite(y[4]).all() and np.isclose(y[4].sum(), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_softmax_finds_the_row_maximum_at_every_position(dtype, backend):
    """A row of zeros with one logit of 200 (e^200 overflows float32 and e^-200 underflows
    it): only the true row maximum, wherever it sits in a vector body or tail, keeps every
    exponential finite and the result exact."""
    for n in range(1, 34):
        x = np.zeros((n, n), dtype)
        x[np.arange(n), np.arange(n)] = 200.0
        x[np.arange(n), np.arange(n)[::-1]] -= 1000.0  # a very negative entry too
        x[np.arange(n), np.arange(n)] = 200.0
        y = fusedact.softmax(x, backend=backend)
        ly = fusedact.log_softmax(x, backend=backend)
        assert np.isfinite(y).all() and np.isfinite(ly).all(), n
        np.testing.assert_array_equal(np.diag(y), np.ones(n, dtype))
        np.testing.assert_array_equal(np.diag(ly), np.zeros(n, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_a_nan_of_either_sign_anywhere_in_a_row_makes_it_nan(dtype, backend):
    """A NaN's sign bit is arbitrary (NumPy's -np.nan, 0 * -inf): row maxima found on integer
    keys must not order a negative NaN below the numbers, in a vector body or a tail."""
    bits = np.uint32 if dtype == np.float32 else np.uint64
    negative_nan = np.array(-np.nan, dtype)
    assert np.signbit(negative_nan)
    for n in (1, 5, 17, 33):
        for where in sorted({0, n // 2, n - 1}):
            for nan in (np.array(np.nan, dtype), negative_nan):
                x = np.linspace(-3, 3, 2 * n, dtype=dtype).reshape(2, n)
                x[0, where] = nan
                assert x.view(bits)[0, where] == nan.view(bits)
                y = fusedact.softmax(x, backend=backend)
                ly = fusedact.log_softmax(x, backend=backend)
                assert np.isnan(y[0]).all() and np.isnan(ly[0]).all(), (n, where)
                assert np.isfinite(y[1]).all() and np.isclose(y[1].sum(), 1)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_softmax_backward_matches_finite_differences(name, shape, axis, backend):
    x = _logits(shape, np.float64, seed=1, scale=2.0)
    g = np.random.default_rng(2).standard_normal(shape)
    v = np.random.default_rng(3).standard_normal(shape)
    f = getattr(fusedact, name)
    y = f(x, axis=axis, backend=backend)
    grad_in = getattr(fusedact, f"{name}_backward")(g, y, axis=axis, backend=backend)
    h = 1e-6
    numeric = (np.sum(g * f(x + h * v, axis=axis, backend="numpy"))
               - np.sum(g * f(x - h * v, axis=axis, backend="numpy"))) / (2 * h)
    np.testing.assert_allclose(np.sum(grad_in * v), numeric, rtol=1e-6, atol=1e-8)
    # And against the closed form in float64.
    if name == "softmax":
        want = y * (g - np.sum(g * y, axis=axis, keepdims=True))
    else:
        want = g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)
    np.testing.assert_allclose(grad_in, want, rtol=1e-12, atol=1e-14)


# Middle axes, which the c backend reduces in place in memory (fa_axis: blocks of columns,
# their width chosen from n; 16 to 256 columns): inner sizes 1..33 and past a block, partial
# last blocks, n = 1, and Fortran order.
MIDDLE_AXES = [((33, 17), 0), ((2, 300, 40), 1), ((3, 7, 600), 1), ((2000, 24), 0),
               ((1, 3, 1), 1), ((4, 1, 5), 1), ((2, 5, 3, 7), 1), ((2, 5, 3, 7), 2)]


@pytest.fixture(params=HOST_BACKENDS + SIMD_VARIANTS)
def host_variant(request):
    with variant_backend(request.param) as name:
        yield name


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", MIDDLE_AXES)
def test_softmax_family_along_middle_axes(shape, axis, dtype, order, host_variant):
    """Forward and backward along a middle axis against float64 truth (3 ULP forward, as the
    rows) and against the same backend on the axis moved last, every inner size up to 33 and
    blocks of columns crossed."""
    backend = host_variant
    x = np.asarray(_logits(shape, dtype, seed=4), order=order)
    g = np.asarray(np.random.default_rng(5).standard_normal(shape).astype(dtype), order=order)
    before = x.copy()
    y = fusedact.softmax(x, axis=axis, backend=backend)
    ly = fusedact.log_softmax(x, axis=axis, backend=backend)
    np.testing.assert_array_equal(x, before)
    xw = x.astype(np.float64)
    if dtype == np.float32:
        assert ref.ulp_error(y, special.softmax(xw, axis=axis), dtype).max() <= 3.0
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    rows = np.moveaxis(fusedact.softmax(moved, backend=backend), -1, axis)
    np.testing.assert_allclose(y, rows, rtol=2 * np.finfo(dtype).eps, atol=0)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(ly, special.log_softmax(xw, axis=axis), rtol=4 * eps,
                               atol=4 * eps * np.abs(xw).max())
    for name, saved in (("softmax", y), ("log_softmax", ly)):
        got = getattr(fusedact, f"{name}_backward")(g, saved, axis=axis, backend=backend)
        sw, gw = saved.astype(np.float64), g.astype(np.float64)
        if name == "softmax":
            want = sw * (gw - np.sum(gw * sw, axis=axis, keepdims=True))
        else:
            want = gw - np.exp(sw) * np.sum(gw, axis=axis, keepdims=True)
        # the column sums are rounded in the array's type, as the rows' are: their error,
        # up to n eps times the sum of magnitudes, reaches every entry through y or e^y
        terms = np.abs(gw * sw) if name == "softmax" else np.abs(gw)
        bound = shape[axis] * eps * terms.sum(axis=axis, keepdims=True)
        bound = bound * (np.abs(sw) if name == "softmax" else np.exp(sw))
        err = np.abs(got.astype(np.float64) - want)
        assert (err <= 4 * eps * np.abs(want) + bound).all(), (name, err.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_middle_axis_special_columns(dtype, host_variant):
    """Special values give what they give along a row: a NaN makes its column NaN and only
    its column, as do a column of -inf and a +inf (inf - inf in the sum); a -inf entry
    gives 0."""
    backend = host_variant
    x = _logits((6, 9), dtype, seed=6)
    x[2, 1] = np.nan
    x[:, 3] = -np.inf
    x[4, 5] = np.inf
    x[0, 6] = x[3, 6] = np.inf
    x[1, 7] = -np.inf
    y = fusedact.softmax(x, axis=0, backend=backend)
    rows = fusedact.softmax(np.ascontiguousarray(x.T), backend=backend).T
    np.testing.assert_array_equal(np.isnan(y), np.isnan(rows))
    np.testing.assert_allclose(y, rows, rtol=2 * np.finfo(dtype).eps, atol=0)
    assert np.isnan(y[:, [1, 3, 5, 6]]).all()
    assert y[1, 7] == 0 and np.isfinite(y[:, [0, 2, 4, 7, 8]]).all()
    np.testing.assert_allclose(y[:, [0, 2, 4, 7, 8]].sum(axis=0), 1, rtol=4 * np.finfo(dtype).eps)
    ly = fusedact.log_softmax(x, axis=0, backend=backend)
    np.testing.assert_array_equal(np.isnan(ly), np.isnan(y))
    assert ly[1, 7] == -np.inf


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_middle_axis_threads_and_in_place(name, host_variant):
    """Past the parallel threshold, 1-3 threads give the same bits; out= the input itself and
    out= grad_out in the backward give the out-of-place result."""
    backend = host_variant
    x = _logits((4, 300, 120), np.float32, seed=7)
    g = np.random.default_rng(8).standard_normal(x.shape).astype(np.float32)
    f, fb = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    results = []
    for threads in (1, 2, 3):
        fusedact.set_num_threads(threads)
        try:
            y = f(x, axis=1, backend=backend)
            results.append((y, fb(g, y, axis=1, backend=backend)))
        finally:
            fusedact.set_num_threads(fusedact._threads._from_env())
    for y, gx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(gx, results[0][1])
    inplace = x.copy()
    assert f(inplace, axis=1, out=inplace, backend=backend) is inplace
    np.testing.assert_array_equal(inplace, results[0][0])
    g2 = g.copy()
    assert fb(g2, results[0][0], axis=1, out=g2, backend=backend) is g2
    np.testing.assert_array_equal(g2, results[0][1])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_out_and_in_place(name, backend):
    x = _logits((6, 40), np.float32)
    f = getattr(fusedact, name)
    want = f(x, backend=backend)
    inplace = x.copy()
    assert f(inplace, out=inplace, backend=backend) is inplace
    np.testing.assert_array_equal(inplace, want)
    buf = np.zeros(6 * 40 + 1, np.float32)
    buf[:-1] = x.ravel()
    shifted = buf[1:].reshape(6, 40)
    f(buf[:-1].reshape(6, 40), out=shifted, backend=backend)
    np.testing.assert_array_equal(shifted, want)
    assert f(np.zeros((0, 5), np.float32), backend=backend).shape == (0, 5)
    assert f(np.zeros((3, 0), np.float32), backend=backend).shape == (3, 0)
    with pytest.raises(ValueError, match="at least one dimension"):
        f(np.float32(1.0), backend=backend)
    with pytest.raises(np.exceptions.AxisError):
        f(x, axis=2, backend=backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_backward_out_aliasing_and_layouts(name, dtype, backend):
    """The backward's out= as grad_out or y themselves, partly overlapping y, read-only or of
    the wrong type; Fortran-ordered, transposed, 3-D and strided inputs; a NumPy integer
    axis; mixed input types. The plain calls take a shorter path than the others, and each
    must give the numpy reference's rows without touching the inputs."""
    x = _logits((5, 33), dtype, seed=5)
    g = _logits((5, 33), dtype, seed=6, scale=1.0)
    f, b = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    y = f(x, backend=backend)
    want = b(g, y, backend="numpy")
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    g0, y0 = g.copy(), y.copy()

    np.testing.assert_allclose(b(g, y, backend=backend), want, **tol)
    np.testing.assert_allclose(b(g, y, axis=np.int64(1), backend=backend), want, **tol)
    out = np.full_like(g, np.nan)
    assert b(g, y, out=out, backend=backend) is out
    np.testing.assert_allclose(out, want, **tol)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(y, y0)

    gg, yy = g.copy(), y.copy()
    assert b(gg, y, out=gg, backend=backend) is gg
    np.testing.assert_allclose(gg, want, **tol)
    assert b(g, yy, out=yy, backend=backend) is yy
    np.testing.assert_allclose(yy, want, **tol)
    buf = np.zeros(y.size + 1, dtype)
    buf[:-1] = y.ravel()
    shifted = buf[1:].reshape(y.shape)  # overlaps y's view by all but one element
    b(g, buf[:-1].reshape(y.shape), out=shifted, backend=backend)
    np.testing.assert_allclose(shifted, want, **tol)

    np.testing.assert_allclose(b(np.asfortranarray(g), np.asfortranarray(y), backend=backend),
                               want, **tol)
    np.testing.assert_allclose(b(g.T, y.T, axis=0, backend=backend), want.T, **tol)
    g3, y3 = np.stack([g, g[::-1]]), np.stack([y, y[::-1]])
    np.testing.assert_allclose(b(g3, y3, backend=backend), np.stack([want, want[::-1]]), **tol)
    wide = np.zeros((5, 66), dtype)
    wide[:, ::2] = y
    np.testing.assert_allclose(b(g, wide[:, ::2], backend=backend), want, **tol)

    mixed = b(g.astype(np.float32), y.astype(np.float64), backend=backend)
    assert mixed.dtype == np.float64
    np.testing.assert_allclose(mixed, b(g.astype(np.float32).astype(np.float64),
                                        y.astype(np.float64), backend="numpy"),
                               rtol=1e-12, atol=1e-14)
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match="dtype"):
        b(g, y, out=np.empty(g.shape, other), backend=backend)
    with pytest.raises(ValueError, match="shape"):
        b(g, y, out=np.empty((33, 5), dtype), backend=backend)
    frozen = np.empty_like(g)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        b(g, y, out=frozen, backend=backend)
    with pytest.raises(ValueError, match="shape"):
        b(g[:, :-1], y, backend=backend)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(y, y0)


def _maxout_loop(x, pieces, axis):
    xm = np.moveaxis(x, axis, -1)
    out = np.empty(xm.shape[:-1] + (xm.shape[-1] // pieces,), dtype=np.float64)
    for idx in np.ndindex(out.shape):
        group = xm[idx[:-1]][idx[-1] * pieces:(idx[-1] + 1) * pieces]
        out[idx] = np.nan if np.isnan(group).any() else group.max()
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,pieces,axis", [((12,), 3, 0), ((4, 10), 2, -1), ((6, 5), 3, 0),
                                                ((2, 9, 3), 3, 1), ((3, 8), 1, 1), ((3, 8), 8, 1),
                                                # more groups than the C kernels' blocks of 256
                                                ((3, 1204), 4, 1), ((2, 707), 7, -1)])
def test_maxout_forward_backward(shape, pieces, axis, dtype, backend):
    x = _logits(shape, dtype, seed=4)
    x.ravel()[::7] = x.ravel()[1::7][: x.ravel()[::7].size]  # ties: first maximum wins
    x.ravel()[5] = np.nan
    y = fusedact.maxout(x, pieces, axis=axis, backend=backend)
    np.testing.assert_array_equal(y, _maxout_loop(x.astype(np.float64), pieces, axis).astype(dtype))
    g = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    gi = fusedact.maxout_backward(g, x, pieces, axis=axis, backend=backend)
    assert gi.shape == x.shape and gi.dtype == dtype
    # Loop reference: each group's grad goes to its first maximum (or first NaN).
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    gm = np.moveaxis(g.astype(np.float64), axis, -1)
    want = np.zeros_like(xm)
    for idx in np.ndindex(gm.shape):
        group = xm[idx[:-1]][idx[-1] * pieces:(idx[-1] + 1) * pieces]
        nans = np.flatnonzero(np.isnan(group))
        k = nans[0] if nans.size else int(np.argmax(group))
        want[idx[:-1] + (idx[-1] * pieces + k,)] = gm[idx]
    np.testing.assert_array_equal(gi, np.moveaxis(want, -1, axis).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pieces", [2, 3, 4, 5, 6, 8, 12, 16, 32])
def test_maxout_ties_nans_and_signed_zeros_in_every_position(pieces, dtype, backend):
    """Groups drawn from seven values (NaN, +-inf, +-0, +-1), so that most hold ties, several
    NaNs or both zeros: the result is the group's first NaN, else its first maximum (with that
    entry's sign), and the backward routes grad to that entry. 300 groups a row cross the C
    kernels' blocks, whose even counts are reduced as pairs of pairs."""
    alphabet = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1.0, np.inf], dtype)
    x = alphabet[np.random.default_rng(pieces).integers(0, 7, (3, 300 * pieces))]
    g = np.random.default_rng(1).standard_normal((3, 300)).astype(dtype)
    groups = x.reshape(3, 300, pieces)
    nans = np.isnan(groups)
    first = np.where(nans.any(-1), nans.argmax(-1),
                     np.where(nans, -np.inf, groups).argmax(-1))  # argmax: the first maximum
    want = np.take_along_axis(groups, first[..., None], -1)[..., 0]
    y = fusedact.maxout(x, pieces, backend=backend)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    number = ~np.isnan(want)
    np.testing.assert_array_equal(y[number], want[number])
    np.testing.assert_array_equal(np.signbit(y[number]), np.signbit(want[number]))
    gi = fusedact.maxout_backward(g, x, pieces, backend=backend)
    route = np.zeros_like(groups)
    np.put_along_axis(route, first[..., None], g[..., None], -1)
    np.testing.assert_array_equal(gi, route.reshape(x.shape))


def test_maxout_errors(backend):
    with pytest.raises(ValueError, match="not a multiple of pieces"):
        fusedact.maxout(np.zeros((2, 5)), 2, backend=backend)
    with pytest.raises(TypeError, match="integer"):
        fusedact.maxout(np.zeros((2, 4)), 2.0, backend=backend)
    with pytest.raises(ValueError, match="expected"):
        fusedact.maxout_backward(np.zeros((2, 3)), np.zeros((2, 4)), 2, backend=backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_rows_at_every_offset_from_a_cache_line(dtype, backend):
    """Rows starting 0..15 elements past a 64-byte boundary, widths around the vector
    length: the row passes peel elements up to their output's boundary (that split must
    lose nothing and read nothing outside the row)."""
    base = _logits(4096 + 64, dtype, seed=3)
    g = _logits(4096 + 64, dtype, seed=4)
    for cols in (1, 3, 15, 16, 17, 31, 33, 100):
        for start in range(16):
            x = base[start:start + 4 * cols].reshape(4, cols)
            gr = g[start:start + 4 * cols].reshape(4, cols)
            xw = x.astype(np.float64)
            y = fusedact.softmax(x, backend=backend)
            if dtype == np.float32:
                assert ref.ulp_error(y, special.softmax(xw, axis=-1), dtype).max() <= 3.0
            else:  # scipy's float64 softmax is off by ~10 ULP itself (x - max rounds)
                np.testing.assert_allclose(y, special.softmax(xw, axis=-1), rtol=1e-13)
            ly = fusedact.log_softmax(x, backend=backend)
            eps = np.finfo(dtype).eps
            np.testing.assert_allclose(ly, special.log_softmax(xw, axis=-1), rtol=4 * eps,
                                       atol=4 * eps * np.abs(xw).max())
            yw = special.softmax(xw, axis=-1)
            want = yw * (gr - (gr * yw).sum(-1, keepdims=True))
            got = fusedact.softmax_backward(gr, y, backend=backend)
            np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=(1e-5 if dtype == np.float32 else 1e-12)
                                       * np.abs(gr).max())
            lwant = gr - np.exp(special.log_softmax(xw, axis=-1)) * gr.sum(-1, keepdims=True)
            lgot = fusedact.log_softmax_backward(gr, ly, backend=backend)
            np.testing.assert_allclose(lgot, lwant, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=(1e-5 if dtype == np.float32 else 1e-12)
                                       * np.abs(gr).max() * cols)
