"""Generate the polynomial coefficients the compiled kernels share.

    python tools/gen_coeffs.py          # rewrites csrc/fa_coeffs.h and src/fusedact/_coeffs.py

One place for every fitted constant, so the C and Numba kernels evaluate the same
approximations; tests/test_coeffs.py regenerates them and checks the files are current.

erfc (float64 gelu in the numba and cuda backends): Y(t) = (1 + 2z) e^(z^2) erfc(z) with t = (z - K)/(z + K), K = 3.75, maps
z in [0, inf) to t in [-1, 1) and is smooth there (Shepherd & Laframboise, Math. Comp. 36
(1981)); its Chebyshev series is evaluated by Clenshaw's recurrence. 25 terms: truncation
error 3.8e-18 (24 terms give 5.1e-17), the fewest under a tenth of double's epsilon, measured
against mpmath. (float32 gelu used a 13-term set until it took the rational form below.)

gelu, float32: Phi(-a) = e^(-a^2/2) R(a) with R(a) = N(a)/D(a), degrees 4 and 5, on
a in [0, 13.5] (beyond, gelu(-a) is below float's smallest normal). The coefficients are the
result of a linearised least-squares fit with Lawson reweighting (``--refit`` reruns it with
NumPy and prints them); they are kept as literals here because that fit goes through LAPACK,
whose last bits differ between machines, and the check below measures them with mpmath:
max relative error 5.1e-9 (0.09 ULP of float), every coefficient positive, so the double
Horner sums that evaluate them have no cancellation.

gelu, float32, AVX-512 loop: the same R(a) as a degree-6 polynomial in u = a - t on 16 pieces
of [0, 13.5], four per octave of a + 1 (the loop numbers them by the bits of a + 1 and picks
each coefficient with one vpermps). Each t is a float where R(t) is a float to within about
0.001 ULP, found by walking the floats near the piece's middle, so c0 = R(t) is exact where a
plain fit would round it by up to 0.5 ULP; c1..c6 are least-squares fits of the relative
error at Chebyshev points in mpmath, rounded to float from the top down, each refit of the
lower ones taking up the rounding above it. Max relative error 8.0e-9 (0.13 ULP). Sixteen
pieces fit one vpermps table; 32 pieces of width 0.5 through vpermt2ps (two tables) measured
slower (155 against 142 us, 262,144 floats, one thread).

tanh, float32, AVX-512 loop: tanh(a) itself the same way, degree 6 on 14 pieces of [0, 9.5]
(four per octave of a + 1; tanh rounds to 1 from 9.011 on), so that no division is left: the
exp-based form e / (e + 2) spent a vdivps on every 16 floats. On the first piece t = 0, c0 = 0
and c1 = 1, so the result is a (1 + ...) and keeps its relative error as a -> 0, subnormals
included. Max relative error 1.9e-8 (0.31 ULP of float below 1); degree 5 gave 2.0e-7, and
degree 5 on 32 pieces (vpermt2ps) 2.3e-8 but ran slower (89-97 against 73-79 us, 262,144
floats, one thread, a C harness).

gelu, float64 (the C kernels, every level): R(a) the same way on 11 pieces of [0, 38], two per
octave of a + 1, degree 17 (relative error 3.4e-17, 0.3 ULP on the first piece, where c1 u
cannot be refit into c0), c5 and up rounded at once from one fit. Beyond 38 every gelu(-a) is
under double's smallest normal.

e^r, float32, AVX-512 paths: e^r = 1 + r + r^2 (c2 + c3 r + ... + c6 r^4) on |r| <= ln2/2, the
c_k float32 values of a Lawson-reweighted least-squares fit of the relative error (the same
method; literals for the same reason). Max relative error 5.2e-9 with the coefficients rounded
to float (0.09 ULP): degree 6 where the portable kernels' Taylor series needs degree 7 for
7.6e-9, one FMA fewer per exponential; degree 5 would be 1.1e-7 (1.8 ULP).

e^r, float64 (every exp-based kernel but expm1's): the same form with c2..c11, fitted in
mpmath (Lawson's reweighting of the relative error at 80 Chebyshev points, then rounded to
double from c2 up, each refit of the higher ones taking up the rounding below it: rounding
from the top down left c2's own rounding, 1.2e-17). Max relative error 3.8e-18 (0.03 ULP),
where the Taylor series needed degree 13 (6e-18): two FMAs fewer per exponential, float64
silu at 262,144 elements, one thread, AVX-512: 245 -> 217 us forward, 303 -> 275 backward.
expm1 keeps the Taylor tail: its relative error near r = 0 must hold against e^r - 1, where
this fit's c2 (0.5 + 1.1e-15) would dominate.

log1p (softplus, logsigmoid): fdlibm's reduction leaves log(1 + f) = f - (f^2/2 -
s (f^2/2 + z P(z))), s = f / (2 + f), z = s^2 <= Z_MAX = ((sqrt 2 - 1)/(sqrt 2 + 1))^2, where
P(z) = (2 atanh(sqrt z)/sqrt z - 2)/z = 2/3 + 2z/5 + 2z^2/7 + ... A relative error e in P
moves the result by at most e z P / 2 <= 0.01 e relative (at Z_MAX), so P needs e under
1.1e-15 in double and 6e-7 in float for 0.05 ULP. The polynomial interpolating P at the
Chebyshev nodes of [0, Z_MAX] (solved in mpmath at 50 digits: no LAPACK, the same bits
everywhere) gets there with 7 terms in double (4.7e-16) and 3 in float (3.0e-7), where the
Taylor series took 12 and 6: float64 softplus at 262,144, one thread, 737 -> 632 us.
"""

from __future__ import annotations

import pathlib
import sys

import mpmath

mpmath.mp.dps = 50
K = mpmath.mpf("3.75")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _y(t):
    if t >= 1:
        return 2 / mpmath.sqrt(mpmath.pi)  # the limit z -> inf: (1+2z)/(sqrt(pi) z) -> 2/sqrt(pi)
    z = K * (1 + t) / (1 - t)
    return (1 + 2 * z) * mpmath.exp(z * z) * mpmath.erfc(z)


def chebyshev(n_terms, n_nodes=120):
    """Chebyshev coefficients of Y on [-1, 1], from interpolation at n_nodes points."""
    nodes = [mpmath.cos(mpmath.pi * (j + mpmath.mpf(0.5)) / n_nodes) for j in range(n_nodes)]
    values = [_y(t) for t in nodes]
    coeffs = []
    for k in range(n_terms):
        s = mpmath.fsum(v * mpmath.cos(mpmath.pi * k * (j + mpmath.mpf(0.5)) / n_nodes)
                        for j, v in enumerate(values))
        coeffs.append(2 * s / n_nodes)
    coeffs[0] /= 2
    return coeffs


def clenshaw(coeffs, t):
    b1 = b2 = mpmath.mpf(0)
    for c in reversed(coeffs[1:]):
        b1, b2 = 2 * t * b1 - b2 + c, b1
    return t * b1 - b2 + coeffs[0]


def max_rel_error(coeffs, points=2000):
    worst = mpmath.mpf(0)
    for j in range(points + 1):
        t = -1 + 2 * mpmath.mpf(j) / points
        t = min(t, mpmath.mpf(1) - mpmath.mpf(10) ** -12)
        worst = max(worst, abs(clenshaw(coeffs, t) / _y(t) - 1))
    return worst


GELU_AMAX = 13.5
GELU_NUM = (0.5000000025639803, 0.43614713524055737, 0.1816465065141188, 0.04009829282735977,
            0.004037034200430164)
GELU_DEN = (1.0, 1.670179199962348, 1.195898963988259, 0.46527701238854463,
            0.10051872412183145, 0.010119205236928726)


EXP_F32_POLY = (0.4999999701976776, 0.1666652113199234, 0.04166722670197487,
                0.00836869329214096, 0.0013879691250622272)


def exp_f32_poly_error(points=2000):
    """Max relative error of 1 + r + r^2 (c2 + ... + c6 r^4) against e^r, |r| <= ln2/2."""
    half = mpmath.log(2) / 2
    worst = mpmath.mpf(0)
    for j in range(points + 1):
        r = -half + 2 * half * j / points
        p = mpmath.polyval(list(reversed(EXP_F32_POLY)), r)
        worst = max(worst, abs((1 + r + r * r * p) / mpmath.exp(r) - 1))
    return worst


EXP_F64_DEGREE = 11
EXP_F64_NODES = 80


def _exp_f64_rel_error(coeffs, r):
    """(1 + r + r^2 (c2 + c3 r + ...)) / e^r - 1."""
    return (1 + r + r * r * mpmath.polyval(list(reversed(coeffs)), r)) / mpmath.exp(r) - 1


def exp_f64_poly(iterations=40):
    """c2..c11 with e^r ~ 1 + r + r^2 (c2 + ... + c11 r^9) on |r| <= ln2/2, as doubles."""
    half = mpmath.log(2) / 2
    n = EXP_F64_NODES
    nodes = [half * mpmath.cos(mpmath.pi * (j + mpmath.mpf(0.5)) / n) for j in range(n)]
    # r^2 (P(r) - f(r)) / e^r is the relative error: f = (e^r - 1 - r) / r^2, weight r^2 / e^r
    targets = [(mpmath.exp(r) - 1 - r) / (r * r) for r in nodes]
    scales = [r * r / mpmath.exp(r) for r in nodes]
    weights = [mpmath.mpf(1)] * n

    def fit(fixed, free):
        lhs = mpmath.matrix([[w * s * r ** j for j in free]
                             for r, s, w in zip(nodes, scales, weights)])
        rhs = mpmath.matrix([w * s * (f - sum(mpmath.mpf(c) * r ** j for j, c in fixed.items()))
                             for r, s, f, w in zip(nodes, scales, targets, weights)])
        return mpmath.qr_solve(lhs, rhs)[0]

    free = list(range(EXP_F64_DEGREE - 1))  # index j: the coefficient of r^(j + 2)
    for _ in range(iterations):
        sol = fit({}, free)
        errors = [abs(_exp_f64_rel_error(list(sol), r)) for r in nodes]
        top = max(errors)
        weights = [w * (1 + 3 * e / top) for w, e in zip(weights, errors)]
        weights = [w * n / sum(weights) for w in weights]
    fixed = {}
    while free:  # round c2 first: the higher ones can still take up its rounding
        sol = fit(fixed, free)
        fixed[free.pop(0)] = float(sol[0])
    return tuple(fixed[j] for j in range(EXP_F64_DEGREE - 1))


def exp_f64_poly_error(coeffs, points=4000):
    half = mpmath.log(2) / 2
    return max(abs(_exp_f64_rel_error(coeffs, -half + 2 * half * j / points))
               for j in range(points + 1))


def _gelu_r(a):
    """R(a) = Phi(-a) e^(a^2/2)."""
    return mpmath.erfc(a / mpmath.sqrt(2)) * mpmath.exp(a * a / 2) / 2


def gelu_rational_error(points=1500):
    worst = mpmath.mpf(0)
    for j in range(points + 1):
        a = mpmath.mpf(GELU_AMAX) * j / points
        num = mpmath.polyval(list(reversed(GELU_NUM)), a)
        den = mpmath.polyval(list(reversed(GELU_DEN)), a)
        worst = max(worst, abs(num / den / _gelu_r(a) - 1))
    return worst


def refit_gelu_rational(n=4, m=5, nodes=3000):
    """The fit that produced GELU_NUM/GELU_DEN (prints them; needs NumPy)."""
    import numpy as np

    a = np.sort(0.5 * GELU_AMAX * (1 - np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)))
    r = np.array([float(_gelu_r(mpmath.mpf(v))) for v in a])
    den, w = np.ones_like(a), np.ones_like(a)
    for it in range(60):
        lhs = np.hstack([np.vander(a, n + 1, increasing=True),
                         -r[:, None] * np.vander(a, m + 1, increasing=True)[:, 1:]])
        weight = w / (den * r)  # relative error, linearised around the previous denominator
        sol = np.linalg.lstsq(lhs * weight[:, None], r * weight, rcond=None)[0]
        pn, pd = sol[:n + 1], np.concatenate([[1.0], sol[n + 1:]])
        den = np.polyval(pd[::-1], a)
        err = np.polyval(pn[::-1], a) / den / r - 1
        if it > 20:  # Lawson: weight up where the error peaks, towards equal ripple
            w = w * (1 + 3 * np.abs(err) / np.max(np.abs(err)))
    print("GELU_NUM =", tuple(float(v) for v in pn))
    print("GELU_DEN =", tuple(float(v) for v in pd))
    print("max relative error", np.max(np.abs(err)))


# gelu's R(a) piecewise, for a table lookup (vpermps / vpermt2pd) instead of a rational or a
# Chebyshev series: float32 (AVX-512 loop) and float64 (every level).
GELU_PIECE_DEGREE = 6
GELU_AMAX_F64 = 38.0  # gelu(-38) = -1.4e-314: beyond, every result is under the smallest normal
GELU_PIECE_DEGREE_F64 = 17
TANH_PIECE_DEGREE = 6
TANH_AMAX = 9.5  # tanh(a) rounds to 1 in float from a = 9.011 on


def gelu_pieces(per_octave=4, octaves=4, amax=GELU_AMAX):
    """Intervals of a, `per_octave` per octave of a + 1 over [1, 2^octaves), so that the
    exponent and top fraction bits of a + 1 number them; the last cut at amax."""
    return [(2.0 ** e * (1 + m / per_octave) - 1,
             min(2.0 ** e * (1 + (m + 1) / per_octave) - 1, amax))
            for e in range(octaves) for m in range(per_octave)
            if 2.0 ** e * (1 + m / per_octave) - 1 < amax]


def _float32(v):
    import numpy as np  # only to round to float32
    return float(np.float32(float(v)))


def _float64(v):
    return float(v)


def _piece_centre(f, mid, rnd, walk):
    """The float t within `walk` floats of mid (of the precision `rnd` rounds to) where f(t) is
    nearest a float, and that float: c0 = f(t) is then exact to ~0.001 ULP instead of 0.5
    (Gal's accurate tables)."""
    import numpy as np

    dtype = np.float32 if rnd is _float32 else np.float64
    best = None
    t = dtype(mid)
    for step in range(-walk, walk + 1):
        cand = t + dtype(step) * np.spacing(t)
        r = f(mpmath.mpf(float(cand)))
        c0 = rnd(r)
        off = abs(r - c0) / float(np.spacing(dtype(c0)))
        if best is None or off < best[0]:
            best = (off, float(cand), c0)
    return best[1], best[2]


def fit_piece(f, lo, hi, degree, first, rnd=_float32, walk=400, margin=0.01):
    """(t, [c0..c_degree]) with f(a) ~ sum c_j (a - t)^j on [lo, hi] widened by `margin` of its
    width (a + 1 rounds before it is numbered). c0 = f(t) exactly, or on the first piece t = 0
    and `first` fixes the low coefficients (f(0), and f'(0) where f(0) = 0, so that the
    relative error holds as a -> 0). The others minimise the relative error at Chebyshev
    points by least squares in mpmath, rounded from the top down, each refit of the lower ones
    taking up the rounding of the one above; in double, c5 and up are rounded at once (their
    roundings move f by under 2^-53 (c_j u^j / c0) < 2^-60, and 17 refits would cost a minute
    here)."""
    width = hi - lo
    if lo == 0:
        t, fixed = 0.0, dict(first)
    else:
        t, c0 = _piece_centre(f, (lo + hi) / 2, rnd, walk)
        fixed = {0: c0}
    lo, hi = max(0.0, lo - margin * width), hi + margin * width
    n_points = 5 * (degree + 1)
    points = [mpmath.mpf(lo + hi) / 2 + mpmath.mpf(hi - lo) / 2
              * mpmath.cos(mpmath.pi * (j + mpmath.mpf(0.5)) / n_points) for j in range(n_points)]
    rs = [f(a) for a in points]
    free = [j for j in range(1, degree + 1) if j not in fixed]
    refit_below = degree if rnd is _float32 else 4
    while free:
        lhs = mpmath.matrix([[(a - t) ** j / r for j in free] for a, r in zip(points, rs)])
        rhs = mpmath.matrix([1 - sum(mpmath.mpf(c) * (a - t) ** j for j, c in fixed.items()) / r
                             for a, r in zip(points, rs)])
        sol = mpmath.qr_solve(lhs, rhs)[0]
        while len(free) > refit_below:  # the higher coefficients at once
            top = free.pop()
            fixed[top] = rnd(sol[len(free)])
        refit_below = 0
        if free:
            top = free.pop()
            fixed[top] = rnd(sol[len(free)])
    return t, [fixed[j] for j in range(degree + 1)]


def gelu_piece(lo, hi, degree, rnd=_float32, walk=400):
    return fit_piece(_gelu_r, lo, hi, degree, {0: 0.5}, rnd, walk)


def tanh_piece(lo, hi):
    return fit_piece(mpmath.tanh, lo, hi, TANH_PIECE_DEGREE, {0: 0.0, 1: 1.0})


def piece_error(f, lo, hi, t, coeffs, points=300):
    """Max relative error at points + 1 even steps of [lo, hi] (leaving out a zero of f)."""
    worst = mpmath.mpf(0)
    for j in range(points + 1):
        a = mpmath.mpf(lo) + (hi - lo) * mpmath.mpf(j) / points
        r = f(a)
        if r != 0:
            worst = max(worst, abs(mpmath.polyval(list(reversed(coeffs)), a - t) / r - 1))
    return worst


Z_MAX = ((mpmath.sqrt(2) - 1) / (mpmath.sqrt(2) + 1)) ** 2


def _log1p_p(z):
    r = mpmath.sqrt(z)
    return (2 * mpmath.atanh(r) / r - 2) / z


def log1p_poly(n_terms):
    """Coefficients (z^0 first) of the polynomial interpolating P at n_terms Chebyshev nodes
    of [0, Z_MAX], solved in mpmath."""
    nodes = [Z_MAX / 2 * (1 - mpmath.cos(mpmath.pi * (j + mpmath.mpf(0.5)) / n_terms))
             for j in range(n_terms)]
    a = mpmath.matrix([[z ** k for k in range(n_terms)] for z in nodes])
    b = mpmath.matrix([_log1p_p(z) for z in nodes])
    return list(mpmath.lu_solve(a, b))


def log1p_poly_error(coeffs, points=1000):
    """Max relative error in P of the coefficients as given (rounded to double or float)."""
    worst = mpmath.mpf(0)
    for j in range(1, points + 1):
        z = Z_MAX * j / points
        worst = max(worst, abs(mpmath.polyval(list(reversed(coeffs)), z) / _log1p_p(z) - 1))
    return worst


def _emit(header, py, c_name, py_name, values):
    """One coefficient array, as a C static array and as a Python tuple."""
    header.append(f"static const double {c_name}[{len(values)}] = {{")
    header += [f"    {v!r}," for v in values]
    header.append("};")
    py.append(f"{py_name} = (")
    py += [f"    {v!r}," for v in values]
    py.append(")")


def main(check_only=False):
    sets = {"f64": 25}
    out = {}
    for name, n in sets.items():
        c = chebyshev(n)
        err = max_rel_error(c)
        print(f"erfc Y series {name}: {n} terms, truncation error {mpmath.nstr(err, 3)}",
              file=sys.stderr)
        out[name] = [float(v) for v in c]
    header = ["/* Generated by tools/gen_coeffs.py: do not edit. */",
              "#ifndef FA_COEFFS_H", "#define FA_COEFFS_H", "",
              "/* Chebyshev series of Y(t) = (1+2z) e^(z^2) erfc(z), t = (z-K)/(z+K). */",
              "#define FA_ERFC_K 3.75"]
    py = ['"""Generated by tools/gen_coeffs.py: do not edit."""', "", "ERFC_K = 3.75"]
    for name, c in out.items():
        header.append(f"#define FA_ERFC_TERMS_{name.upper()} {len(c)}")
        _emit(header, py, f"fa_erfc_cheb_{name}", f"ERFC_CHEB_{name.upper()}", c)
    err = gelu_rational_error()
    print(f"gelu R(a) = N/D float32 set: max relative error {mpmath.nstr(err, 3)}",
          file=sys.stderr)
    assert err < 1e-8 and min(GELU_NUM + GELU_DEN) > 0
    header += ["", "/* float32 gelu: Phi(-a) = e^(-a^2/2) N(a)/D(a) on [0, 13.5] (max rel. error "
               f"{mpmath.nstr(err, 2)}). */",
               f"#define FA_GELU_AMAX {GELU_AMAX!r}"]
    py += ["", f"GELU_AMAX = {GELU_AMAX!r}"]
    for name, c in (("num", GELU_NUM), ("den", GELU_DEN)):
        _emit(header, py, f"fa_gelu_{name}", f"GELU_{name.upper()}", c)
    err = exp_f32_poly_error()
    print(f"e^r float32 degree-6 set: max relative error {mpmath.nstr(err, 3)}", file=sys.stderr)
    assert err < 6e-9
    header += ["", "/* e^r = 1 + r + r^2 (c2 + ... + c6 r^4), |r| <= ln2/2, float32 values (max rel. "
               f"error {mpmath.nstr(err, 2)}). */"]
    _emit(header, py, "fa_exp_f32_poly", "EXP_F32_POLY", EXP_F32_POLY)
    exp_f64 = exp_f64_poly()
    err = exp_f64_poly_error(exp_f64)
    print(f"e^r float64 degree-{EXP_F64_DEGREE} set: max relative error {mpmath.nstr(err, 3)}",
          file=sys.stderr)
    assert err < 4e-18  # 0.035 ULP of double
    header += ["", f"/* e^r = 1 + r + r^2 (c2 + ... + c{EXP_F64_DEGREE} r^{EXP_F64_DEGREE - 2}), "
               f"|r| <= ln2/2, doubles (max rel. error {mpmath.nstr(err, 2)}). */"]
    _emit(header, py, "fa_exp_f64_poly", "EXP_F64_POLY", exp_f64)
    import numpy as np  # only to round coefficients to float32

    for name, n, limit, rnd in (("f64", 7, 1.1e-15, float),
                                ("f32", 3, 6e-7, lambda v: float(np.float32(float(v))))):
        c = [rnd(v) for v in log1p_poly(n)]
        err = log1p_poly_error(c)
        print(f"log1p P(z) {name}: {n} terms, max relative error {mpmath.nstr(err, 3)}",
              file=sys.stderr)
        assert err < limit
        header += ["", f"/* log1p's P(z) = 2/3 + 2z/5 + ... on [0, {mpmath.nstr(Z_MAX, 6)}]: {n} terms "
                   f"({name}; max rel. error {mpmath.nstr(err, 2)}). */"]
        _emit(header, py, f"fa_log1p_p_{name}", f"LOG1P_P_{name.upper()}", c)
    for name, ctype, pieces, degree, rnd, walk, limit in (
            ("f32", "float", gelu_pieces(), GELU_PIECE_DEGREE, _float32, 400, 1.2e-8),
            ("f64", "double", gelu_pieces(2, 6, GELU_AMAX_F64), GELU_PIECE_DEGREE_F64, _float64,
             100, 4e-17)):
        rows, worst = [], mpmath.mpf(0)
        for lo, hi in pieces:
            t, c = gelu_piece(lo, hi, degree, rnd, walk)
            worst = max(worst, piece_error(_gelu_r, lo, hi, t, c))
            rows.append([t] + c)
        print(f"gelu R(a) {name} pieces: {len(rows)}, degree {degree}, max relative error "
              f"{mpmath.nstr(worst, 3)}", file=sys.stderr)
        assert worst < limit  # 0.2 ULP (float), 0.36 ULP (double: the first piece, c1 u)
        rows += [[0.0] * len(rows[0])] * (16 - len(rows))  # a whole register's table
        table = [[r[j] for r in rows] for j in range(degree + 2)]
        amax = GELU_AMAX if name == "f32" else GELU_AMAX_F64
        header += ["", f"/* gelu ({ctype}): R(a) = sum c_j (a - t)^j on {len(pieces)} pieces of "
                   f"[0, {amax!r}] numbered by the bits of a + 1;",
                   f"   row 0: t, rows 1..{degree + 1}: c0.. (max rel. error {mpmath.nstr(worst, 2)}). */",
                   f"#define FA_GELU_PIECE_DEGREE_{name.upper()} {degree}"]
        if name == "f64":
            header.append(f"#define FA_GELU_AMAX_F64 {amax!r}")
            py += ["", f"GELU_AMAX_F64 = {amax!r}"]
        header.append(f"static const {ctype} fa_gelu_pieces_{name}[{degree + 2}][16] = {{")
        header += ["    {" + ", ".join(f"{v!r}" for v in row) + "}," for row in table]
        header.append("};")
        py += ["", f"GELU_PIECES_{name.upper()} = ("]
        py += ["    (" + ", ".join(f"{v!r}" for v in row) + ")," for row in table] + [")"]
    rows, worst = [], mpmath.mpf(0)
    pieces = gelu_pieces(amax=TANH_AMAX)
    for lo, hi in pieces:
        t, c = tanh_piece(lo, hi)
        worst = max(worst, piece_error(mpmath.tanh, lo, hi, t, c))
        rows.append([t] + c)
    print(f"tanh f32 pieces: {len(rows)}, degree {TANH_PIECE_DEGREE}, max relative error "
          f"{mpmath.nstr(worst, 3)}", file=sys.stderr)
    assert worst < 2.5e-8  # 0.42 ULP of float below 1
    rows += [[0.0] * len(rows[0])] * (16 - len(rows))
    table = [[r[j] for r in rows] for j in range(TANH_PIECE_DEGREE + 2)]
    header += ["", f"/* tanh (float): tanh(a) = sum c_j (a - t)^j on {len(pieces)} pieces of "
               f"[0, {TANH_AMAX!r}] numbered by the bits of a + 1;",
               f"   row 0: t, rows 1..{TANH_PIECE_DEGREE + 1}: c0.. (max rel. error "
               f"{mpmath.nstr(worst, 2)}). */",
               f"#define FA_TANH_PIECE_DEGREE_F32 {TANH_PIECE_DEGREE}",
               f"#define FA_TANH_AMAX_F32 {TANH_AMAX!r}f",
               f"static const float fa_tanh_pieces_f32[{TANH_PIECE_DEGREE + 2}][16] = {{"]
    header += ["    {" + ", ".join(f"{v!r}" for v in row) + "}," for row in table]
    header.append("};")
    py += ["", f"TANH_AMAX_F32 = {TANH_AMAX!r}", "TANH_PIECES_F32 = ("]
    py += ["    (" + ", ".join(f"{v!r}" for v in row) + ")," for row in table] + [")"]
    header += ["", "#endif", ""]
    py.append("")
    files = {ROOT / "csrc" / "fa_coeffs.h": "\n".join(header),
             ROOT / "src" / "fusedact" / "_coeffs.py": "\n".join(py)}
    if check_only:
        return all(p.read_text() == text for p, text in files.items())
    for p, text in files.items():
        p.write_text(text)
    return True


if __name__ == "__main__":
    if "--refit" in sys.argv:
        refit_gelu_rational()
    else:
        main()
