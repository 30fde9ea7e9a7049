"""The ``numpy`` backend: the numerically careful reference and the fallback that is always there.

Every formula is evaluated in float64 (float32 and float16 inputs are widened first and the
result rounded once at the end), and written so that no finite input overflows and the tails
keep their digits:

* sigmoid as e/(1+e) with e = exp(-|x|) reflected, never exp of a positive number;
* softplus as max(x,0) + log1p(exp(-|x|)), logsigmoid as min(x,0) - log1p(exp(-|x|));
* gelu as x Phi(x) = x Q(|x|) (x - x Q(|x|) for x > 0), Q(a) = e^(-a^2/2) R(a), with R on
  the C kernels' table pieces (tools/gen_coeffs.py) and a^2/2 split exactly, since the
  exponential amplifies its rounding by a^2/2 (700 ULP at x = -37 otherwise); gelu's
  derivative keeps erfc (scipy.special.ndtr) with the x/sqrt(2) rounding error corrected;
* the tanh form of gelu as x sigmoid(2u), never 1 + tanh(u), which cancels for x < -3;
* derivatives evaluated on x clamped to a range beyond which they are exactly at their
  limit, so +-inf give the limit instead of inf*0 = NaN.

This module is the oracle the compiled backends are tested against.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .._catalogue import OPS, SELU_ALPHA, SELU_SCALE
from .._coeffs import GELU_AMAX_F64, GELU_PIECES_F64
from ._base import Backend

_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_TANH_C = 0.044715
# The rest of the decimal 0.044715 and of 2 sqrt(2/pi) beyond their doubles (from mpmath):
# the tanh-form gelu's tail is conditioned like |2u|, 650 at x = -20.
_GELU_TANH_C_LO = 2.1960211427085595e-18
_TWO_SQRT_2_OVER_PI = 1.5957691216057308
_TWO_SQRT_2_OVER_PI_LO = -9.96930880911092e-17
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_PI = 1.7724538509055159
_TWO_OVER_SQRT_PI = 1.1283791670955126
# 1/sqrt(2) as an unevaluated sum hi + lo of doubles, for the exact product x/sqrt(2).
_RSQRT2_HI = 0.7071067811865476
_RSQRT2_LO = -4.833646656726457e-17


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    d = 1.0 + e
    return np.where(x >= 0, 1.0 / d, e / d)


def _softplus_unit(x):
    """log(1 + e^x), accurate for every x."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _split(a):
    """Veltkamp split: a = hi + lo, each with at most 26 significant bits."""
    c = a * 134217729.0  # 2**27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    """a*b = p + err exactly (Dekker), for the tails where one rounding matters."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def _two_sum(a, b):
    """a + b = s + err exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _erfc_cf(z):
    """erfc(z) for z >= 2 as (r, e) with erfc(z) = r e e, and -d log erfc/dz.

    From the continued fraction erfc(z) = e^(-z^2) / (sqrt(pi) (z + 1/2 / (z + 1 / (z + ...)))).
    scipy.special.erfc is off by up to 32 ULP for z in [4, 27] (measured against mpmath),
    too much for an oracle; 80 terms reach 1.5 ULP from z = 2 up. e^(-z^2) comes from the
    exact square z^2 = hi + lo as e^(-hi/2)^2 (1 - lo): each half stays a normal number where
    e^(-z^2) itself would be subnormal (z > 26.6) but the caller's product is not.
    """
    t = np.zeros_like(z)
    for k in range(80, 0, -1):
        t = (0.5 * k) / (z + t)
    hi, lo = _two_prod(z, z)
    return (1.0 - lo) / (_SQRT_PI * (z + t)), np.exp(-0.5 * hi), 2.0 * (z + t), hi


def _phi_cdf(x, scale=1.0):
    """scale * Phi(x), Phi the standard normal CDF, to a few ULP in the lower tail too.

    Phi(x) = erfc(z)/2 with z = -x/sqrt(2). Rounding z alone costs 2 z^2 eps of relative
    error (700 ULP at x = -37), so z is formed exactly as zh + zl and
    erfc(zh + zl) = erfc(zh) (1 - zl * (-d log erfc/dz)). `scale` multiplies in before the
    two small exponential factors, so gelu's x Phi(x) keeps its digits near underflow.
    """
    xs = np.maximum(x, -60.0)  # Phi(-60) underflows; keeps the exact split finite
    p, err = _two_prod(xs, np.full_like(x, _RSQRT2_HI))
    zh = -p
    zl = -(err + xs * _RSQRT2_LO)
    lower = xs < -2.0 * np.sqrt(2.0)
    mid = (xs < -0.7) & ~lower
    r, e, dlog, sq_hi = _erfc_cf(np.where(lower, zh, 2.0))  # z >= 2 only (and no NaN)
    head = (0.5 * scale) * r * (1.0 - zl * dlog)
    # One exp (0.5 ULP) where e^(-z^2) is normal, the two halves (1 ULP) only beyond.
    tail = np.where(zh < 26.0, head * np.exp(-sq_hi), (head * e) * e)
    zm = np.where(mid, zh, 1.0)
    # erfc itself is off by 2.4 units of 2^-52 at z = 0.94; erfcx by 1, and e^(-z^2) from the
    # exact square adds 0.5.
    ex = special.erfcx(zm)
    sq_hi, sq_lo = _two_prod(zm, zm)
    mid_value = ((0.5 * scale) * ex * (1.0 - sq_lo) * (1.0 - zl * _TWO_OVER_SQRT_PI / ex)
                 * np.exp(-sq_hi))
    return np.where(lower, tail, np.where(mid, mid_value, scale * special.ndtr(x)))


def _gelu_tanh_u2(x):
    """2u = 2 sqrt(2/pi) (x + 0.044715 x^3) as a double-double (value, error).

    sigmoid(-2u) amplifies a relative error in 2u by |2u|: 71 at x = -10 and 650 at x = -20,
    so the naive u costs 100+ ULP there. Both constants are carried as hi + lo too.
    """
    xx, xx_err = _two_prod(x, x)
    x3, x3_err = _two_prod(xx, x)
    x3_err = x3_err + xx_err * x
    cx3, cx3_err = _two_prod(np.full_like(x, _GELU_TANH_C), x3)
    cx3_err = cx3_err + _GELU_TANH_C * x3_err + _GELU_TANH_C_LO * x3
    inner, inner_err = _two_sum(x, cx3)
    inner_err = inner_err + cx3_err
    u2, u2_err = _two_prod(inner, np.full_like(x, _TWO_SQRT_2_OVER_PI))
    return u2, u2_err + _TWO_SQRT_2_OVER_PI * inner_err + _TWO_SQRT_2_OVER_PI_LO * inner


_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split: k ln2_hi exact for |k| < 2^21
_LN2_LO = 1.90821492927058770002e-10


def _mul_sigmoid(m, u, u_err=0.0):
    """m * sigmoid(u + u_err), u + u_err a double-word: e^-u = p 2^k (|u| clamped to 1400),
    m / (1 + p 2^k) for u >= 0 and (m 2^h / (p + 2^-k)) 2^(-k-h) below, no m p product; the sum's
    rounding and u_err's first-order term (e^-(u + err) = e^-u (1 - err): err times the
    exponential's term) leave the denominator before its rounding, and 2^-k is applied by
    ldexp, one rounding even where the result is subnormal. Three roundings in all
    (p's, the denominator's, the quotient's), as the compiled kernels' fa_x_sigmoid_dw: the
    form this replaced, (m e / d)(1 + err / d), reached 3.24 ULP (swish, b = 1.702, x = -5.511)."""
    u = np.asarray(u, dtype=np.float64)
    z = np.clip(-u, -1400.0, 1400.0)  # NaN stays
    k = np.rint(z * 1.4426950408889634)
    p = np.exp((z - k * _LN2_HI) - k * _LN2_LO)
    neg = u < 0
    j = np.where(np.isnan(k), 0.0, np.where(neg, -k, k)).astype(np.int64)
    lead = np.where(neg, p, 1.0)
    rest = np.ldexp(np.where(neg, 1.0, p), j)
    den, den_e = _two_sum(lead, rest)
    den = den + (den_e - u_err * np.where(neg, lead, rest))
    half = j // 2  # m 2^half first (exact unless the result is subnormal): no overflow in m / den
    q = np.where(neg, np.ldexp(m, half), m) / den
    # below u = -1400 the result is 0 (as the compiled kernels': m e^-1400 is under the
    # smallest normal unless |m| > 1e300)
    return np.where(u < -1400.0, np.copysign(0.0, m), np.where(neg, np.ldexp(q, j - half), q))


_GELU_PIECES = np.array(GELU_PIECES_F64)


def _gelu_exact(x):
    """x Phi(x) as x Q(a) (x <= 0) or x - x Q(a) (x > 0), a = min(|x|, 38), Q(a) = e^(-a^2/2) R(a).

    R(a) = Phi(-a) e^(a^2/2) from the C kernels' 11 table pieces (degree 17 in a - t, numbered by
    the bits of a + 1; tools/gen_coeffs.py), here without FMA. a^2/2 = hz + lz exactly; e^-hz
    is reduced to e^r 2^-k with r = (-k ln2_hi - hz) - (k ln2_lo + lz), the first difference
    exact, and x R (1 + expm1(r)) is scaled by ldexp last, so it rounds once more at most where
    the result is subnormal. 2.0 ULP against mpmath on 10,000 points over [-40, 10], where
    erfc through scipy's ndtr/erfcx with the x/sqrt(2) correction reached 6.0 (x = -1.89).
    Below -38 every result is under the smallest normal and is returned as -0.
    """
    a = np.minimum(np.abs(x), GELU_AMAX_F64)  # NaN stays NaN
    piece = ((np.where(np.isnan(a), 0.0, a) + 1.0).view(np.uint64) >> np.uint64(51)) - np.uint64(2046)
    u = a - _GELU_PIECES[0][piece]  # one row at a time: 19 gathered rows at once is 152 B/element
    r_poly = _GELU_PIECES[-1][piece]
    for row in _GELU_PIECES[-2:0:-1]:
        r_poly = r_poly * u + row[piece]
    hz, lz = _two_prod(0.5 * a, a)
    k = np.rint(hz * -1.4426950408889634)
    r = (-k * _LN2_HI - hz) - (k * _LN2_LO + lz)
    v = np.copysign(a, x) * r_poly
    xq = np.ldexp(v + v * np.expm1(r), np.nan_to_num(k).astype(np.int32))  # k in [-1042, 0]
    y = np.where(x > 0, x - xq, xq)
    return np.where(x < -GELU_AMAX_F64, -0.0, y)


def _at_neg_inf_zero(x, y):
    """x * (something -> 0) at x = -inf is -inf * 0 = NaN; the limit is 0."""
    return np.where(x == -np.inf, -0.0, y)


# Forward formulas; each takes float64 arrays and the op's parameters in catalogue order.
def _f_sigmoid(x):
    return _sigmoid(x)


def _f_tanh(x):
    return np.tanh(x)


def _f_relu(x):
    return np.maximum(x, 0.0)


def _f_leaky_relu(x, slope):
    return np.where(x > 0, x, x * slope)


def _f_relu6(x):
    # maximum(0, x), not (x, 0): on a tie NumPy returns the second operand, so -0 stays -0
    # (PyTorch's relu6(-0) is -0)
    return np.minimum(np.maximum(0.0, x), 6.0)


def _f_hardtanh(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def _f_elu(x, alpha, scale=1.0):
    return np.where(x > 0, x * scale, (alpha * scale) * np.expm1(np.minimum(0.0, x)))  # -0 stays


def _f_selu(x):
    return _f_elu(x, SELU_ALPHA, SELU_SCALE)


def _f_celu(x, alpha):
    neg = alpha * np.expm1(np.minimum(0.0, x) / alpha)  # -0 stays -0
    return np.where(x > 0, x, np.where(np.isnan(x), x, neg))


def _f_silu(x):
    return _at_neg_inf_zero(x, _mul_sigmoid(x, x))


def _f_swish(x, beta):
    if beta == 0:
        return 0.5 * x
    # b x rounded costs |b x| eps in sigmoid(b x) (83 ULP at x = -83, b = 1.702): keep its error.
    bx, bx_err = _two_prod(np.full_like(x, beta), x)
    bx_err = np.where(np.abs(x) < 1e290, bx_err, 0.0)  # the split overflows beyond
    y = _mul_sigmoid(x, bx, bx_err)
    return np.where(np.isinf(x) & (bx == -np.inf), 0.0 * np.sign(x), y)


def _f_mish(x):
    # Below x = -40, tanh(softplus(x)) = e^x (1 - O(e^x)) to double precision: x e^x, taken
    # in two halves where e^x is subnormal and x e^x is not (x in [-714, -708]).
    half = np.exp(0.5 * np.maximum(x, -1500.0))
    tail = (x * half) * half
    return _at_neg_inf_zero(x, np.where(x < -40.0, tail, x * np.tanh(_softplus_unit(x))))


def _f_gelu(x, approximate):
    if approximate == "tanh":
        u2, u2_err = _gelu_tanh_u2(x)
        y = _mul_sigmoid(x, u2, u2_err)
        return np.where(np.abs(x) > 1e30, np.where(x > 0, x, -0.0), y)
    return _gelu_exact(x)


def _f_softplus(x, beta, threshold):
    bx = x * beta
    return np.where(bx > threshold, x, _softplus_unit(bx) / beta)


def _f_logsigmoid(x):
    return -_softplus_unit(-x)


def _f_hardsigmoid(x):
    return np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0


def _f_hardswish(x):
    return np.where(x <= -3.0, 0.0, x * (np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0))


def _f_softsign(x):
    return np.where(np.isinf(x), np.sign(x), x / (1.0 + np.abs(x)))


# Derivatives d op/dx, as functions of what backward saves (x or y, per the catalogue).
def _d_sigmoid(y):
    return y * (1.0 - y)


def _d_tanh(y):
    return (1.0 - y) * (1.0 + y)


def _keep_nan(s, d):
    return np.where(np.isnan(s), s, d)


def _d_relu(y):
    return _keep_nan(y, np.where(y > 0, 1.0, 0.0))


def _d_leaky_relu(x, slope):
    return _keep_nan(x, np.where(x > 0, 1.0, slope))


def _d_relu6(x):
    return _keep_nan(x, np.where((x > 0) & (x < 6.0), 1.0, 0.0))


def _d_hardtanh(x, lo, hi):
    return _keep_nan(x, np.where((x > lo) & (x < hi), 1.0, 0.0))


def _d_elu(x, alpha, scale=1.0):
    return np.where(x > 0, scale, (alpha * scale) * np.exp(np.minimum(x, 0.0)))


def _d_selu(x):
    return _d_elu(x, SELU_ALPHA, SELU_SCALE)


def _d_celu(x, alpha):
    return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0) / alpha))


def _d_swish(x, beta):
    # d/dx x s(bx) = s (1 + b x (1 - s)). Beyond |b x| = 800 it is exactly 0 or 1 in float64,
    # so clamping b x there keeps inf * 0 out of the formula at x = +-inf.
    bx = np.clip(beta * x, -800.0, 800.0)
    return _sigmoid(bx) * (1.0 + bx * _sigmoid(-bx))


def _d_silu(x):
    return _d_swish(x, 1.0)


def _d_mish(x):
    xc = np.clip(x, -800.0, 800.0)
    t = np.tanh(_softplus_unit(xc))
    s = _sigmoid(xc)
    return t + xc * s * ((1.0 - t) * (1.0 + t))


def _d_gelu(x, approximate):
    xc = np.clip(x, -50.0, 50.0)
    if approximate == "tanh":
        k = _SQRT_2_OVER_PI
        u = k * (xc + _GELU_TANH_C * xc * xc * xc)
        s = _sigmoid(2.0 * u)  # (1 + tanh u) / 2
        one_minus_t2 = 4.0 * s * _sigmoid(-2.0 * u)
        return s + 0.5 * xc * one_minus_t2 * k * (1.0 + 3.0 * _GELU_TANH_C * xc * xc)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * xc * xc)
    return _phi_cdf(xc) + xc * pdf


def _d_softplus(x, beta, threshold):
    bx = x * beta
    return np.where(bx > threshold, 1.0, _sigmoid(bx))


def _d_logsigmoid(x):
    return _sigmoid(-x)


def _d_hardsigmoid(x):
    return _keep_nan(x, np.where((x > -3.0) & (x < 3.0), 1.0 / 6.0, 0.0))


def _d_hardswish(x):
    return _keep_nan(x, np.where(x <= -3.0, 0.0, np.where(x < 3.0, x / 3.0 + 0.5, 1.0)))


def _d_softsign(x):
    a = 1.0 + np.abs(x)
    return 1.0 / (a * a)


_FORWARD = {name: globals()[f"_f_{name}"] for name in OPS if f"_f_{name}" in globals()}
_DERIVATIVE = {name: globals()[f"_d_{name}"] for name in OPS if f"_d_{name}" in globals()}


def _grad(spec, g, d):
    if spec.piecewise:
        # Select, not multiply: an inf/NaN grad in a flat region gives 0 (PyTorch's choice).
        return np.where(d == 0, 0.0, g * d)
    return g * d


def _wide(a):
    return np.asarray(a, dtype=np.float64)


def _exp_shifted(x, axis):
    """e^(x - max) with the rounding error of x - max put back: rounded, it costs
    |x - max| eps/2 of relative error (9 ULP of a float64 softmax entry at x - max = -20)."""
    m = np.max(x, axis=axis, keepdims=True)  # +-inf or NaN in m give NaN rows, as PyTorch
    d, err = _two_sum(x, -m)
    e = np.exp(d)
    return np.where(np.isfinite(d), e + e * err, e)


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    s = np.sum(np.exp(x - m_safe), axis=axis, keepdims=True)
    return np.log(s) + m_safe


class NumpyBackend(Backend):
    """Reference kernels in float64 NumPy; see the module docstring."""

    name = "numpy"

    def probe(self):
        return True, "always available"

    def has_kernel(self, op_name):
        return True

    # ---- elementwise ------------------------------------------------------------------
    def elementwise(self, spec, x, params, out):
        with np.errstate(all="ignore"):
            out[...] = _FORWARD[spec.name](_wide(x), *params)

    def elementwise_backward(self, spec, grad, saved, params, out):
        with np.errstate(all="ignore"):
            d = _DERIVATIVE[spec.name](_wide(saved), *params)
            out[...] = _grad(spec, _wide(grad), d)

    def elementwise_with_derivative(self, spec, x, params, out_y, out_d):
        with np.errstate(all="ignore"):
            xw = _wide(x)
            y = _FORWARD[spec.name](xw, *params)
            d = _DERIVATIVE[spec.name](y if spec.saved == "y" else xw, *params)
            out_y[...] = y
            out_d[...] = d

    # ---- along an axis -----------------------------------------------------------------
    def softmax(self, x, axis, out):
        with np.errstate(all="ignore"):
            e = _exp_shifted(_wide(x), axis)
            # The sum's rounding reaches every entry: accumulate it in long double.
            s = np.sum(e.astype(np.longdouble), axis=axis, keepdims=True).astype(np.float64)
            out[...] = e / s

    def log_softmax(self, x, axis, out):
        with np.errstate(all="ignore"):
            xw = _wide(x)
            m = np.max(xw, axis=axis, keepdims=True)
            s = np.sum(_exp_shifted(xw, axis).astype(np.longdouble), axis=axis,
                       keepdims=True).astype(np.float64)
            # (x - m) - log s: x - (m + log s) would round m + log s to ulp(m).
            out[...] = (xw - m) - np.log(s)

    def softmax_backward(self, grad, y, axis, out):
        with np.errstate(all="ignore"):
            g, yw = _wide(grad), _wide(y)
            out[...] = yw * (g - np.sum(g * yw, axis=axis, keepdims=True))

    def log_softmax_backward(self, grad, y, axis, out):
        with np.errstate(all="ignore"):
            g, yw = _wide(grad), _wide(y)
            out[...] = g - np.exp(yw) * np.sum(g, axis=axis, keepdims=True)

    def maxout(self, x, pieces, axis, out):
        groups = _grouped(x, pieces, axis)
        # The entry argmax finds, the first NaN or else the first maximum: the one the
        # backward routes to, and of two equal zeros the first one's sign, as the compiled
        # backends give it (np.max's SIMD loop returns either zero).
        first_max = np.expand_dims(np.argmax(groups, axis=axis + 1), axis + 1)
        out[...] = np.squeeze(np.take_along_axis(groups, first_max, axis + 1), axis + 1)

    def maxout_backward(self, grad, x, pieces, axis, out):
        gaxis = axis + 1  # axis is normalised to >= 0 by the front end
        groups = _grouped(x, pieces, axis)
        first_max = np.argmax(groups, axis=gaxis)  # first NaN, or first maximum
        onehot = np.arange(pieces).reshape((-1,) + (1,) * (groups.ndim - gaxis - 1))
        mask = np.expand_dims(first_max, gaxis) == onehot
        g = np.expand_dims(_wide(grad), gaxis)
        out[...] = np.where(mask, g, 0.0).reshape(x.shape)

    # ---- fused -------------------------------------------------------------------------
    def bias_act(self, spec, x, bias, params, out):
        with np.errstate(all="ignore"):
            # x + bias rounded to the compute dtype, exactly as act(x + bias) would see it.
            z = _wide(x + bias)
            out[...] = _FORWARD[spec.name](z, *params) if spec is not None else z

    def bias_act_backward(self, spec, grad, x, bias, params, out_grad_x, out_grad_bias):
        with np.errstate(all="ignore"):
            g = _wide(grad)
            if spec is None:
                gx = g
            else:
                z = _wide(x + bias)
                saved = _FORWARD[spec.name](z, *params) if spec.saved == "y" else z
                gx = _grad(spec, g, _DERIVATIVE[spec.name](saved, *params))
            out_grad_x[...] = gx
            out_grad_bias[...] = gx.reshape(-1, gx.shape[-1]).sum(axis=0)

    def softmax_cross_entropy(self, logits, labels, ignore_index, out_loss, out_grad):
        with np.errstate(all="ignore"):
            z = _wide(logits)
            lse = _logsumexp(z, -1)
            ignored = labels == ignore_index
            safe = np.where(ignored, 0, labels)
            picked = np.take_along_axis(z, safe[..., None], axis=-1)
            loss = (lse - picked)[..., 0]
            grad = np.exp(z - lse)
            np.put_along_axis(grad, safe[..., None],
                              np.take_along_axis(grad, safe[..., None], axis=-1) - 1.0, axis=-1)
            out_loss[...] = np.where(ignored, 0.0, loss)
            out_grad[...] = np.where(ignored[..., None], 0.0, grad)


def _grouped(x, pieces, axis):
    """View x with `axis` split into (n // pieces, pieces)."""
    shape = x.shape[:axis] + (x.shape[axis] // pieces, pieces) + x.shape[axis + 1:]
    return np.reshape(x, shape)
