"""Scalar math and op formulas for the ``numba`` backend, the C kernels' float64 path
(csrc/fa_math.inc, csrc/fa_ops.inc) in Numba: the same algorithms and the same generated
coefficients (``fusedact._coeffs``), so the two compiled backends agree.

Every function evaluates in float64 (float32 inputs are widened by the loops, so float32
results carry only the final rounding). Bit manipulation goes through two LLVM bitcast
intrinsics, which the loop vectoriser handles like any other instruction. Import this module
only through the backend: importing it compiles nothing, but it imports Numba.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .._catalogue import SELU_ALPHA, SELU_SCALE
from .._coeffs import (ERFC_CHEB_F64, ERFC_K, EXP_F64_POLY, GELU_AMAX_F64, GELU_PIECES_F64,
                       LOG1P_P_F64)
from ._numba_simd import available as simd_available, scalef, table_reader

# fastmath only for contraction (a*b+c -> fma): it cannot change NaN/inf behaviour.
jit = njit(inline="always", fastmath={"contract"}, error_model="numpy")

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
MAGIC = 6755399441055744.0  # 1.5 * 2**52
MAGIC_BITS = np.uint64(0x4338000000000000)
EXP_LO = -1400.0
EXP_HI = 710.0
EXP_LITE_LO = -708.39641853226408
INF = math.inf
U1023 = np.uint64(1023)
U52 = np.uint64(52)
ERFC_C = tuple(ERFC_CHEB_F64)
L0, L1, L2, L3, L4, L5, L6 = LOG1P_P_F64  # C's log1p set (fa_coeffs.h)
E2, E3, E4, E5, E6, E7, E8, E9, E10, E11 = EXP_F64_POLY  # C's double e^r set (fa_coeffs.h)
# Clenshaw and Horner walk the coefficients from the top.
ERFC_C_REVERSED = tuple(reversed(ERFC_C[1:]))
ERF_TAYLOR = (1.0, -1.0 / 3, 1.0 / 10, -1.0 / 42, 1.0 / 216, -1.0 / 1320, 1.0 / 9360,
              -1.0 / 75600, 1.0 / 685440, -1.0 / 6894720, 1.0 / 76204800, -1.0 / 918086400,
              1.0 / 11975040000.0, -1.0 / 168129561600.0)
ERF_TAYLOR_REVERSED = tuple(reversed(ERF_TAYLOR[:13]))
RSQRT2_HI = 0.7071067811865476
RSQRT2_LO = -4.833646656726457e-17
TWO_K = 1.5957691216057308  # 2 sqrt(2/pi)
TWO_K_LO = -9.96930880911092e-17
GELU_C = 0.044715
GELU_C_LO = 2.1960211427085595e-18
INV_SQRT_2PI = 0.3989422804014327


@intrinsic
def _bits(typingctx, x):
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, b):
    if b != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@jit
def fmin(a, b):  # NaN in a stays
    return b if b < a else a


@jit
def fmax(a, b):
    return b if b > a else a


@jit
def clamp(x, lo, hi):
    return fmin(fmax(x, lo), hi)


@jit
def exp_tail(r):
    """e^r = 1 + r + r^2 tail(r) on |r| <= ln2/2 (Taylor to r^13/13!, truncation 6e-18)."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    return p * r + 0.5


@jit
def exp_poly(r):
    """e^r on |r| <= ln2/2: the degree-11 minimax set (3.8e-18), two FMAs fewer than the
    Taylor tail, which expm1 keeps."""
    p = E11
    p = p * r + E10
    p = p * r + E9
    p = p * r + E8
    p = p * r + E7
    p = p * r + E6
    p = p * r + E5
    p = p * r + E4
    p = p * r + E3
    p = p * r + E2
    return (p * r + 1.0) * r + 1.0


@jit
def pow2_from_t(t):
    """2^k from t = x log2e + 1.5*2^52, whose low mantissa bits hold k."""
    return _from_bits((_bits(t) + U1023) << U52)


@jit
def pow2(k):
    return pow2_from_t(k + MAGIC)


@jit
def exp_lite_neg(x):
    """e^x for x <= 0 or NaN, flushing results under the smallest normal to 0."""
    under = x < EXP_LITE_LO
    xc = EXP_LITE_LO if under else x
    t = xc * LOG2E + MAGIC
    k = t - MAGIC
    r = (xc - k * LN2_HI) - k * LN2_LO
    e = exp_poly(r) * pow2_from_t(t)
    return 0.0 if under else e


@jit
def exp_lite(x):
    xc = clamp(x, EXP_LITE_LO, EXP_HI)
    t = xc * LOG2E + MAGIC
    k = t - MAGIC
    r = (xc - k * LN2_HI) - k * LN2_LO
    e = exp_poly(r) * pow2_from_t(t)
    return 0.0 if x < EXP_LITE_LO else e


@jit
def exp_parts(x):
    """(p, s1, s2) with e^x = (p s1) s2, both scales normal, for x clamped to [-1400, 710]."""
    xc = clamp(x, EXP_LO, EXP_HI)
    t = xc * LOG2E + MAGIC
    k = t - MAGIC
    r = (xc - k * LN2_HI) - k * LN2_LO
    k1 = (k * 0.5 + MAGIC) - MAGIC
    return exp_poly(r), pow2(k1), pow2(k - k1)


@jit
def exp(x):
    p, s1, s2 = exp_parts(x)
    return (p * s1) * s2


@jit
def expm1(x):
    """e^x - 1 for x <= 44, accurate near 0: 2^k q + (2^k - 1), q = e^r - 1."""
    xc = clamp(x, -60.0, 44.0)
    t = xc * LOG2E + MAGIC
    k = t - MAGIC
    r = (xc - k * LN2_HI) - k * LN2_LO
    q = r + (r * r) * exp_tail(r)
    s = pow2_from_t(t)
    return math.copysign(s * q + (s - 1.0), xc)  # expm1(-0) = -0 (elu(-0) too)


@jit
def log1p_unit(u):
    """log(1 + u) for u in [0, 1] (fdlibm's method; see csrc/fa_math.inc)."""
    w = 1.0 + u
    big = w > 1.41421356237309504880
    m = w * 0.5 if big else w
    k = 1.0 if big else 0.0
    c = (u - (w - 1.0)) / w
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    R = L6
    R = R * z + L5
    R = R * z + L4
    R = R * z + L3
    R = R * z + L2
    R = R * z + L1
    R = R * z + L0
    # these products round apart from the sums that take them, as C's do (k's are exact: k is
    # 0 or 1); with the whole function contracted, 0.14-0.16 % of softplus' and logsigmoid's
    # results differed from C's
    R = mul_unfused(R, z)
    hfsq = mul_unfused(0.5 * f, f)
    return k * LN2_HI - ((hfsq - (mul_unfused(s, hfsq + R) + (k * LN2_LO + c))) - f)


MANTISSA_BITS = np.uint64(0x000FFFFFFFFFFFFF)
ONE_BITS = np.uint64(0x3FF0000000000000)


@jit
def log_ge1(s):
    """log s for s >= 1 (a sum of exponentials, one of them 1), branch-free: C's
    fa_log_ge1_d, s = 2^e w with w in [1, 2), e ln2 + log1p_unit(w - 1); NaN stays NaN."""
    bits = _bits(s)
    e = np.float64(np.int64(bits >> U52) - np.int64(1023))
    w = _from_bits((bits & MANTISSA_BITS) | ONE_BITS)
    r = e * LN2_HI + (e * LN2_LO + log1p_unit(w - 1.0))
    return r if s == s else s


@jit
def tanh(x):
    a = fmin(abs(x) * 2.0, 44.0)
    e = expm1(a)
    return math.copysign(e / (e + 2.0), x)


def two_prod_err_dekker(a, b, p):
    """a * b - p exactly, p = a * b rounded (Dekker with Veltkamp halves), for a CPU without
    FMA, where llvm.fma is a call into libm."""
    ca = a * 134217729.0
    cb = b * 134217729.0
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al = a - ah
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@jit
def two_sum_err(a, b, s):
    bb = s - a
    return (a - (s - bb)) + (b - bb)


@jit
def nan_or(s, v):
    return s if s != s else v


# ---- the ops: fwd(x, p0, p1, p3) and der(saved, p0, p1, p3); p3 is unused in float64 ----
@jit
def sigmoid_fwd(x, p0, p1, p3):
    e = exp_lite_neg(-abs(x))
    num = 1.0 if x >= 0.0 else e
    return num / (1.0 + e)


@jit
def sigmoid_der(y, p0, p1, p3):
    return y * (1.0 - y)


@jit
def tanh_fwd(x, p0, p1, p3):
    return tanh(x)


@jit
def tanh_der(y, p0, p1, p3):
    return (1.0 - y) * (1.0 + y)


@jit
def relu_fwd(x, p0, p1, p3):
    return 0.0 if x <= 0.0 else x


@jit
def relu_der(y, p0, p1, p3):
    return nan_or(y, 1.0 if y > 0.0 else 0.0)


@jit
def leaky_relu_fwd(x, p0, p1, p3):
    return x if x > 0.0 else x * p0


@jit
def leaky_relu_der(x, p0, p1, p3):
    return nan_or(x, 1.0 if x > 0.0 else p0)


@jit
def relu6_fwd(x, p0, p1, p3):
    t = 0.0 if x < 0.0 else x  # relu6(-0) = -0, as PyTorch's
    return 6.0 if t > 6.0 else t


@jit
def relu6_der(x, p0, p1, p3):
    return nan_or(x, 1.0 if (x > 0.0 and x < 6.0) else 0.0)


@jit
def hardtanh_fwd(x, p0, p1, p3):
    return clamp(x, p0, p1)


@jit
def hardtanh_der(x, p0, p1, p3):
    return nan_or(x, 1.0 if (x > p0 and x < p1) else 0.0)


@jit
def elu_fwd(x, p0, p1, p3):
    return x if x > 0.0 else p0 * expm1(fmin(x, 0.0))


@jit
def elu_der(x, p0, p1, p3):
    return 1.0 if x > 0.0 else p0 * exp_lite_neg(fmin(x, 0.0))


@jit
def selu_fwd(x, p0, p1, p3):
    return SELU_SCALE * x if x > 0.0 else (SELU_SCALE * SELU_ALPHA) * expm1(fmin(x, 0.0))


@jit
def selu_der(x, p0, p1, p3):
    return SELU_SCALE if x > 0.0 else (SELU_SCALE * SELU_ALPHA) * exp_lite_neg(fmin(x, 0.0))


@jit
def celu_fwd(x, p0, p1, p3):
    return x if x > 0.0 else p0 * expm1(fmin(x, 0.0) / p0)


@jit
def celu_der(x, p0, p1, p3):
    return 1.0 if x > 0.0 else exp_lite(fmin(x, 0.0) / p0)


@jit
def silu_fwd_portable(x, p0, p1, p3):
    p, s1, s2 = exp_parts(-abs(x))
    e = (p * s1) * s2
    num = x if x >= 0.0 else ((x * p) * s1) * s2
    y = num / (1.0 + e)
    return math.copysign(0.0, x) if x < EXP_LO else y


@jit
def silu_fwd_scalef(x, p0, p1, p3):
    """The same arithmetic with 2^k by vscalefpd, as C's fa512d_silu (one rounding, as the
    portable (p s1) s2, so the same bits); the portable form's integer-built halves kept
    numba's float64 silu at 0.66-0.72x c. 262,144 doubles, one thread, side by side with c:
    300 -> 227-267 us (c 218-250)."""
    z = -abs(x)
    z = EXP_LO if z < EXP_LO else z  # NaN stays
    t = z * LOG2E + MAGIC
    k = t - MAGIC
    p = exp_poly((z - k * LN2_HI) - k * LN2_LO)
    num = x if x >= 0.0 else scalef(x * p, k)
    y = num / (1.0 + scalef(p, k))
    return math.copysign(0.0, x) if x < EXP_LO else y


silu_fwd = silu_fwd_scalef if simd_available() else silu_fwd_portable


@jit
def x_sigmoid_dw(x, u, err):
    """x sigmoid(u + err), as the C kernels' fa_x_sigmoid_dw: e^-u = p 2^k whole for either
    sign, x / (1 + p 2^k) or ((x s1) / (p + 2^-k)) s2, the denominator's rounding and err's
    first-order term put back before it rounds."""
    z = clamp(-u, -1400.0, 1400.0)
    t = z * LOG2E + MAGIC
    k = t - MAGIC
    p = exp_poly((z - k * LN2_HI) - k * LN2_LO)
    neg = u < 0.0
    j = -k if neg else k
    j1 = (j * 0.5 + MAGIC) - MAGIC
    s1 = pow2(j1)
    s2 = pow2(j - j1)
    lead = p if neg else 1.0
    rest = s1 * s2 if neg else (p * s1) * s2
    den = lead + rest
    den = den + mul_add(-err, lead if neg else rest, two_sum_err(lead, rest, den))
    q = (x * s1 if neg else x) / den  # x s1: no overflow in the quotient
    return q * s2 if neg else q


@jit
def swish_fwd(x, p0, p1, p3):
    beta = p0
    bx = beta * x
    xs = clamp(x, -1e300, 1e300)
    err = two_prod_err(beta, xs, beta * xs)
    err = err if abs(xs) < 1e290 else 0.0
    y = x_sigmoid_dw(x, bx, err)
    y = 0.5 * x if beta == 0.0 else y
    return math.copysign(0.0, x) if bx < EXP_LO else y


@jit
def swish_der(x, p0, p1, p3):
    """s (1 + b x (1 - s)), s and 1 - s as 1 / d and e (1 / d): one division, not two, and
    the C kernels' roundings (b x (1 - s) apart from the sum), so their bits."""
    bx = 0.0 if p0 == 0.0 else p0 * x
    e = exp_lite_neg(-abs(bx))
    inv = 1.0 / (1.0 + e)
    ed = e * inv
    s = inv if bx >= 0.0 else ed
    oms = ed if bx >= 0.0 else inv
    bxc = clamp(bx, EXP_LO, -EXP_LO)
    return s * (1.0 + mul_unfused(bxc, oms))


@jit
def silu_der(x, p0, p1, p3):
    return swish_der(x, 1.0, p1, p3)


@jit
def mish_fwd(x, p0, p1, p3):
    """x e (e + 2) / (e (e + 2) + 2) with the roundings put back, as the C kernel's."""
    xe = fmin(x, 40.0)
    p, s1, s2 = exp_parts(xe)
    e = (p * s1) * s2
    ep2 = e + 2.0
    lo = two_sum_err(e, 2.0, ep2)
    xp = xe * p
    xp_lo = two_prod_err(xe, p, xp)
    nh = xp * ep2
    num = nh + mul_add(xp_lo, ep2, mul_add(xp, lo, two_prod_err(xp, ep2, nh)))
    dh = e * ep2
    ds = dh + 2.0
    den = ds + (two_sum_err(dh, 2.0, ds) + mul_add(e, lo, two_prod_err(e, ep2, dh)))
    y = math.copysign(((num * s1) * s2) / den, x)  # x's sign: num would turn -0 into +0
    y = x if x > 40.0 else y
    return math.copysign(0.0, x) if x < EXP_LO else y


@jit
def mish_der(x, p0, p1, p3):
    xc = clamp(x, EXP_LO, 40.0)
    e = exp_lite(xc)
    n = e * (e + 2.0)
    np2 = n + 2.0
    t = n / np2
    s = e / (1.0 + e)
    return t + mul_unfused(xc * s, (2.0 / np2) * (1.0 + t))  # C rounds the product apart


def _straight_line(name, body_lines):
    """A jitted function from generated straight-line code: a loop over a coefficient tuple
    (indexed or literal_unroll'ed) kept the gelu loop scalar, 0.02 Gelem/s."""
    namespace = {}
    exec("def %s(t):\n    " % name + "\n    ".join(body_lines), namespace)  # noqa: S102
    return njit(inline="always", fastmath={"contract"}, error_model="numpy")(namespace[name])


_lines = ["t2 = t + t", "b1 = 0.0", "b2 = 0.0"]
for _c in ERFC_C_REVERSED:
    _lines += [f"b0 = t2 * b1 - b2 + {_c!r}", "b2 = b1", "b1 = b0"]
_lines.append(f"return t * b1 - b2 + {ERFC_C[0]!r}")
_clenshaw_erfc = _straight_line("_clenshaw_erfc", _lines)
_lines = [f"q = {ERF_TAYLOR[13]!r}"] + [f"q = q * t + {_c!r}" for _c in ERF_TAYLOR_REVERSED]
_lines.append("return q")
_erf_series = _straight_line("_erf_series", _lines)


@jit
def erfc_parts(z):
    """erfc(z), z >= 0, as (head, p, s1, s2, dlog): erfc = ((head p) s1) s2 (fa_ops.inc)."""
    t = (z - ERFC_K) / (z + ERFC_K)
    y = _clenshaw_erfc(t)
    sq_hi = z * z
    sq_lo = two_prod_err(z, z, sq_hi)
    opz = 1.0 + 2.0 * z
    head = (y / opz) * (1.0 - sq_lo)
    p, s1, s2 = exp_parts(-sq_hi)
    dlog = 2.0 * opz / (y * 1.7724538509055160273)
    return head, p, s1, s2, dlog


@jit
def gelu_parts(x):
    xs = clamp(x, -60.0, 60.0)
    zh = xs * RSQRT2_HI
    zl = two_prod_err(xs, RSQRT2_HI, zh) + xs * RSQRT2_LO
    az = fmin(abs(zh), 40.0)
    h, p, s1, s2, dlog = erfc_parts(az)
    delta = -zl if zh < 0.0 else zl
    return 0.5 * h * (1.0 - delta * dlog), p, s1, s2


@jit
def erf_small(z):
    return (z * 1.1283791670955126) * _erf_series(z * z)


@jit
def gelu_fwd_series(x, p0, p1, p3):
    head, p, s1, s2 = gelu_parts(x)
    lower = ((head * p) * s1) * s2
    y = (((x * head) * p) * s1) * s2 if x < 0.0 else x * (1.0 - lower)
    hx = 0.5 * x
    small = math.copysign(hx * erf_small(x * RSQRT2_HI) + hx, x)  # gelu(-0) = -0, not -0 + 0
    y = small if abs(x) < 0.7 else y
    return math.copysign(0.0, x) if x < -56.0 else y


@jit
def gelu_der_series(x, p0, p1, p3):
    head, p, s1, s2 = gelu_parts(x)
    lower = ((head * p) * s1) * s2
    xc = clamp(x, -60.0, 60.0)
    cdf = lower if x < 0.0 else 1.0 - lower
    return cdf + ((xc * INV_SQRT_2PI * p) * s1) * s2


# gelu for the CPU: the C kernels' float64 algorithm (csrc/fa_ops.inc explains it), R(a) on 11
# table pieces of [0, 38] numbered by the bits of a + 1, e^(-a^2/2) with a^2/2 split exactly:
# 2.0 ULP against mpmath where the series above reaches 4.0 (x = -27.2), and the same bits as
# the C backend's AVX2 and AVX-512 loops. Each coefficient row is a _numba_simd table: on
# AVX-512 targets one vpermt2pd a row, as in C, elsewhere a gather. 262,144 doubles, one
# thread, median of 41, side by side with c (us): forward 2061-2067 with gathers -> 698-717
# (c 638-657), backward 2201-2220 -> 721-725 (c 668). The cuda backend keeps the series
# (gelu_fwd_series): it reads no array, and the permutes are x86 code.
_namespace = {f"_gelu_row{j}": table_reader(f"gelu_f64_row{j}", row, np.float64)
              for j, row in enumerate(GELU_PIECES_F64)}
_last = len(GELU_PIECES_F64) - 1
_lines = ["u = a - _gelu_row0(i)", f"r = _gelu_row{_last}(i)"]
_lines += [f"r = r * u + _gelu_row{j}(i)" for j in range(_last - 1, 0, -1)]
_lines.append("return r")
exec("def _gelu_piece_r(a, i):\n    " + "\n    ".join(_lines), _namespace)  # noqa: S102
_gelu_piece_r = njit(inline="always", fastmath={"contract"}, error_model="numpy")(
    _namespace["_gelu_piece_r"])
_U51 = np.uint64(51)
_U2046 = np.uint64(2046)
_U15 = np.uint64(15)


@jit
def gelu_piece_parts(a):
    """(R(a), q, s1, s2) with e^(-a^2/2) = (1 + q) s1 s2, for a = min(|x|, 38) or NaN."""
    piece = ((_bits(a + 1.0) >> _U51) - _U2046) & _U15  # NaN: garbage, masked; u carries NaN
    big_r = _gelu_piece_r(a, piece)
    ha = 0.5 * a
    hz = ha * a
    lz = two_prod_err(ha, a, hz)
    k = (hz * -LOG2E + MAGIC) - MAGIC
    r = (-k * LN2_HI - hz) - (k * LN2_LO + lz)
    q = (r * r) * exp_tail(r) + r
    k1 = (k * 0.5 + MAGIC) - MAGIC
    return big_r, q, pow2(k1), pow2(k - k1)


@jit
def gelu_fwd(x, p0, p1, p3):
    a = fmin(abs(x), GELU_AMAX_F64)  # NaN stays NaN
    big_r, q, s1, s2 = gelu_piece_parts(a)
    v = math.copysign(a, x) * big_r  # a beyond 38: x = inf gives inf - (finite)
    xq = ((v * q + v) * s1) * s2
    y = x - xq if x > 0.0 else xq  # -0 and NaN: x Q
    return -0.0 if x < -GELU_AMAX_F64 else y


@jit
def gelu_der(x, p0, p1, p3):
    a = fmin(abs(x), GELU_AMAX_F64)
    big_r, q, s1, s2 = gelu_piece_parts(a)
    w = math.copysign(a, x) * INV_SQRT_2PI + (big_r if x < 0.0 else -big_r)
    ew = ((w * q + w) * s1) * s2
    ew = -0.0 if x < -GELU_AMAX_F64 else ew  # -inf: 0
    return ew if x < 0.0 else 1.0 + ew


@jit
def gelu_tanh_fwd(x, p0, p1, p3):
    xc = clamp(x, -30.0, 30.0)
    xx = xc * xc
    xx_e = two_prod_err(xc, xc, xx)
    x3 = xx * xc
    x3_e = two_prod_err(xx, xc, x3) + xx_e * xc
    cx3 = GELU_C * x3
    cx3_e = two_prod_err(GELU_C, x3, cx3) + GELU_C * x3_e + GELU_C_LO * x3
    inner = xc + cx3
    in_e = two_sum_err(xc, cx3, inner) + cx3_e
    u2 = inner * TWO_K
    err = two_prod_err(inner, TWO_K, u2) + TWO_K * in_e + TWO_K_LO * inner
    y = x_sigmoid_dw(x, u2, err)
    y = x if x > 30.0 else y
    return math.copysign(0.0, x) if x < -30.0 else y


@jit
def gelu_tanh_der(x, p0, p1, p3):
    xc = clamp(x, -30.0, 30.0)
    # the C kernel's roundings: its products round apart from the sums that take them
    u2 = TWO_K * (xc + mul_unfused(GELU_C * xc * xc, xc))
    e = exp_lite_neg(-abs(u2))
    d = 1.0 + e
    s = 1.0 / d if u2 >= 0.0 else e / d
    oms = e / d if u2 >= 0.0 else 1.0 / d
    return s + mul_unfused(xc * s * oms * TWO_K, 1.0 + mul_unfused(3.0 * GELU_C * xc, xc))


@jit
def softplus_fwd(x, p0, p1, p3):
    beta = p0
    bx = x * beta
    xs = clamp(x, -1e300, 1e300)
    err = two_prod_err(xs, beta, xs * beta)
    err = err if abs(xs) < 1e290 else 0.0
    e = exp(-abs(bx))
    sig = 1.0 / (1.0 + e) if bx >= 0.0 else e / (1.0 + e)
    sp = fmax(bx, 0.0) + (log1p_unit(e) + err * sig)
    return x if bx > p1 else sp / beta


@jit
def softplus_der(x, p0, p1, p3):
    bx = x * p0
    e = exp_lite_neg(-abs(bx))
    sig = 1.0 / (1.0 + e) if bx >= 0.0 else e / (1.0 + e)
    return 1.0 if bx > p1 else sig


@jit
def softplus1_fwd(x, p0, p1, p3):
    """softplus_fwd at beta = 1, PyTorch's default, as C's softplus1_fwd: beta x = x exactly,
    so the rounding term err * sig is 0 and the division by beta is by 1. Without them two of
    softplus_fwd's four divisions go, and the bits stay (numba_backend picks this kernel)."""
    sp = fmax(x, 0.0) + log1p_unit(exp(-abs(x)))
    return x if x > p1 else sp


softplus1_der = softplus_der  # the derivative has no beta term to drop


@jit
def logsigmoid_fwd(x, p0, p1, p3):
    return fmin(x, 0.0) - log1p_unit(exp(-abs(x)))


@jit
def logsigmoid_der(x, p0, p1, p3):
    return sigmoid_fwd(-x, p0, p1, p3)


def _llvm_min_or_max(llvm_name):
    def typer(typingctx, a, b):
        if not (a == b and a in (types.float64, types.float32)):
            return None

        def codegen(context, builder, signature, args):
            t = args[0].type
            fn = builder.module.declare_intrinsic(llvm_name, [t], ir.FunctionType(t, [t, t]))
            return builder.call(fn, args)

        return a(a, b), codegen

    typer.__name__ = typer.__qualname__ = llvm_name.replace(".", "_")  # Numba names it so
    return typer


# llvm.maxnum(a, b) / llvm.minnum(a, b): the larger / smaller, a NaN passed over (NaN only if
# both are); float64 or float32. Unlike a select on a comparison, LLVM vectorizes reductions
# of them without fastmath's no-NaN promise, and a clamp by them is vmaxpd/vminpd, where
# the selects became compare-and-mask logic.
maxnum = intrinsic(_llvm_min_or_max("llvm.maxnum"))
minnum = intrinsic(_llvm_min_or_max("llvm.minnum"))


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma), which the contraction flag allows but does not
    promise; float64 or float32 (the float32 module uses it too)."""
    if not (a == b == c and a in (types.float64, types.float32)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, a, a), codegen


@intrinsic
def mul_unfused(typingctx, a, b):
    """a * b rounded on its own: an fmul without the contraction flag, which LLVM never fuses
    into the addition that takes it (the C kernels, built with -ffp-contract=off, round such
    pairs apart: where they do, this keeps numba's bits equal to theirs)."""
    if not (a == b and a in (types.float64, types.float32)):
        return None

    def codegen(context, builder, signature, args):
        # Numba's fastmath pass gives "contract" to every float instruction that has no flags
        # yet; arcp (reciprocals may replace divisions) means nothing to a multiplication and
        # keeps that pass off this one.
        return builder.fmul(*args, flags=("arcp",))

    return a(a, a), codegen


def two_prod_err_fma(a, b, p):
    """a * b - p exactly, one FMA (float64 or float32)."""
    return _fma(a, b, -p)


def _target_has_fma():
    """Whether Numba compiles for a CPU with FMA: the host's features, unless NUMBA_CPU_NAME
    names another target (a portable cache), which is then taken to lack it."""
    import numba
    from llvmlite import binding

    if numba.config.CPU_NAME not in (None, "host"):
        return "+fma" in (numba.config.CPU_FEATURES or "")
    try:
        return bool(binding.get_host_cpu_features().get("fma", False))
    except RuntimeError:  # the host's features unknown
        return False


# a * b - p exactly, as the C kernels' fa_two_prod_err: one FMA where the target has it, else
# Dekker's ten operations; both exact, so the same bits either way (callers clamp the inputs
# whose split would overflow). 262,144 elements, one thread, best of 41, two alternating runs
# each: gelu forward float64 2280 -> 2029-2058 us, float32 243 -> 226; swish float64 within
# the noise (488-551 either way).
two_prod_err = jit(two_prod_err_fma if _target_has_fma() else two_prod_err_dekker)


def _mul_add_plain(a, b, c):
    return a * b + c


# a * b + c as the C kernels' FMA(): fused where the target has FMA, two roundings elsewhere
mul_add = _fma if _target_has_fma() else jit(_mul_add_plain)


@jit
def div_const(v, c, inv):
    """v / c rounded once, as the C kernels' fa512d_div_const: q = v inv, then
    q + (v - q c) inv with the remainder exact (Markstein's correction; inv = RN(1/c)).
    vdivpd bounded hardsigmoid and hardswish: float64, 262,144, one thread, through Python,
    96 -> 61 us and 93 -> 81 us; equal to the c and numpy backends on 5.4e6 doubles.
    Type-generic: float32 hardsigmoid takes it too (_numba_math32)."""
    q = v * inv
    return _fma(_fma(-q, c, v), inv, q)


def _divide(v, c, inv):
    return v / c


# v / c for a c used many times (softmax's row sum), inv = 1 / c: div_const where FMA makes
# its remainder one instruction, the division elsewhere (as csrc/fa_loops.inc). A subnormal
# quotient may differ from v / c by one unit in the last place, which SPEC 5 allows.
divide_by = div_const if _target_has_fma() else jit(_divide)


@jit
def hardsigmoid_fwd(x, p0, p1, p3):
    return div_const(relu6_fwd(x + 3.0, p0, p1, p3), 6.0, 1.0 / 6.0)


@jit
def hardsigmoid_der(x, p0, p1, p3):
    return nan_or(x, 1.0 / 6.0 if (x > -3.0 and x < 3.0) else 0.0)


@jit
def hardswish_fwd(x, p0, p1, p3):
    # x + 3 clamped by minnum/maxnum (vmaxpd/vminpd), which pass a NaN over: x's NaN comes
    # back through the product. relu6's selects became compare, kxor and masked moves here:
    # the loop alone, 262,144 doubles, one thread, eight interleaved medians: 80 -> 62 us,
    # where hardsigmoid's loop took 60 (the memory's pace) in the same run.
    t = minnum(maxnum(x + 3.0, 0.0), 6.0)
    return 0.0 if x <= -3.0 else x * div_const(t, 6.0, 1.0 / 6.0)


@jit
def hardswish_der(x, p0, p1, p3):
    d = 0.0 if x <= -3.0 else (div_const(x, 3.0, 1.0 / 3.0) + 0.5 if x < 3.0 else 1.0)
    return nan_or(x, d)


@jit
def softsign_fwd(x, p0, p1, p3):
    a = abs(x)
    return math.copysign(1.0, x) if a == INF else x / (1.0 + a)


@jit
def softsign_der(x, p0, p1, p3):
    a = 1.0 + abs(x)
    return 1.0 / (a * a)


@jit
def pw(g, d):
    """Piecewise-linear backward: select, so an inf/NaN grad in a flat region gives 0."""
    return 0.0 if d == 0.0 else g * d


@jit
def exp_shifted(x, m):
    """e^(x - m) with the rounding error of x - m applied to first order."""
    d = x - m
    err = two_sum_err(x, -m, d)
    err = err if abs(d) < INF else 0.0
    e = exp_lite_neg(d)
    return e * err + e
