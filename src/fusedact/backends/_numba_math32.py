"""float32 scalar math for the numba backend: the C kernels' float path (csrc/fa_math.inc and
csrc/fa_ops.inc with T = float), op by op: the same algorithms, constants and order of
operations, so the numba and C results agree and share their measured accuracy.

The float64 module (``_numba_math``) widens float32 data and so runs at half the SIMD width:
0.34-0.45x the C kernels for sigmoid, tanh, silu and elu on 1M float32 elements. These
functions keep float32 throughout. Every constant is a ``np.float32`` global (Numba types a
Python float as float64, which would widen the whole expression again), and 2^k comes from
the bits of the float32 rounding trick, through two LLVM bitcasts like the float64 module's.
swish and mish follow the C float path's own mix of float and double; swish and softplus
take p3 = beta - float32(beta), the rounding residual the C kernels carry in P[3]. gelu
follows the C AVX-512 float loop on AVX-512 targets (R(a) on 16 pieces, read by permutes)
and the C float path elsewhere (its exponential in float, its rational function in double).
gelu's tanh form follows the C AVX-512 float loop (2u as a float pair, silu's quotient), and
tanh, there, its table of pieces.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .._catalogue import SELU_ALPHA, SELU_SCALE
from .._coeffs import (EXP_F32_POLY, GELU_AMAX, GELU_DEN, GELU_NUM, GELU_PIECES_F32, LOG1P_P_F32,
                       TANH_AMAX_F32, TANH_PIECES_F32)
from . import _numba_math
from ._numba_simd import available as simd_available, scalef, table_reader
# Type-generic (no constants inside), so the float64 module's serve float32 as they are.
from ._numba_math import (_fma, clamp, div_const, fmax, fmin, mul_unfused, nan_or,  # noqa: F401
                           two_sum_err)

jit = njit(inline="always", fastmath={"contract"}, error_model="numpy")

F = np.float32
ZERO, ONE, TWO, THREE, SIX, HALF = F(0), F(1), F(2), F(3), F(6), F(0.5)
SIXTH, THIRD = F(1) / F(6), F(1) / F(3)
INF32 = F(np.inf)
LOG2E = F(1.44269502)
LN2_HI = F(0.693359375)  # 9 significant bits: k * LN2_HI is exact for |k| < 2^15
LN2_LO = F(-2.12194440e-4)
MAGIC = F(12582912.0)  # 1.5 * 2^23
MAGIC_BITS = np.uint32(0x4B400000)
EXP_LO = F(-170.0)
EXP_HI = F(89.0)
EXP_LITE_LO = F(-87.336544750553102)
EXPM1_LO, EXPM1_HI = F(-30.0), F(44.0)
SQRT2 = F(1.41421356237309504880)
SPLIT = F(4097.0)  # 2^12 + 1: Veltkamp's split of a 24-bit significand
BIG = F(1e30)  # keeps the split finite (C clamps the same way)
MISH_HI = F(20.0)  # above, x tanh(softplus(x)) = x in float
U127 = np.uint32(127)
U23 = np.uint32(23)
SELU_S = F(SELU_SCALE)
SELU_SA = F(SELU_SCALE) * F(SELU_ALPHA)
TAIL = tuple(F(c) for c in (1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5))
T0, T1, T2, T3, T4, T5 = TAIL
E2, E3, E4, E5, E6 = (F(c) for c in EXP_F32_POLY)  # C's float e^r set (fa_coeffs.h)
L0, L1, L2 = (F(c) for c in LOG1P_P_F32)  # C's float log1p set (fa_coeffs.h)


@intrinsic
def _bits(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _from_bits(typingctx, b):
    if b != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _from_ibits(typingctx, b):
    if b != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@jit
def exp_tail(r):
    """e^r = 1 + r + r^2 tail(r) on |r| <= ln2/2, Taylor to r^7/7! (truncation 0.13 ULP)."""
    p = T0
    p = p * r + T1
    p = p * r + T2
    p = p * r + T3
    p = p * r + T4
    return p * r + T5


@jit
def exp_poly(r):
    """e^r on |r| <= ln2/2: the degree-6 minimax set (5.2e-9), one FMA fewer than the
    Taylor tail, which expm1 keeps."""
    p = E6
    p = p * r + E5
    p = p * r + E4
    p = p * r + E3
    p = p * r + E2
    return (p * r + ONE) * r + ONE


@jit
def reduce(xc):
    """(e^r, t): r = xc - k ln2, t = xc log2e + 1.5 * 2^23 holding k in its low bits."""
    t = xc * LOG2E + MAGIC
    k = t - MAGIC
    r = (xc - k * LN2_HI) - k * LN2_LO
    return exp_poly(r), t


@jit
def scale_of(t):
    # Numba widens uint32 arithmetic to 64 bits: the cast keeps the low 32, the float's bits.
    return _from_bits(np.uint32((_bits(t) + U127) << U23))


@jit
def exp_lite(x):
    xc = clamp(x, EXP_LITE_LO, EXP_HI)
    p, t = reduce(xc)
    e = p * scale_of(t)
    return ZERO if x < EXP_LITE_LO else e


@jit
def exp_lite_neg(x):
    """e^x for x <= 0 or NaN, flushing results under the smallest normal to 0."""
    under = x < EXP_LITE_LO
    xc = EXP_LITE_LO if under else x
    p, t = reduce(xc)
    e = p * scale_of(t)
    return ZERO if under else e


@jit
def exp_shifted(x, m):
    """e^(x - m) with the rounding error of x - m applied to first order (x - m rounded costs
    |x - m| eps/2 of relative error: 10 ULP at x - m = -20)."""
    d = x - m
    err = two_sum_err(x, -m, d)
    err = err if abs(d) < INF32 else ZERO
    e = exp_lite_neg(d)
    return e * err + e


@jit
def exp_parts(x):
    """(p, s1, s2), e^x = (p s1) s2 with both scales normal, x clamped to [-170, 89]."""
    xc = clamp(x, EXP_LO, EXP_HI)
    p, t = reduce(xc)
    k = np.int32(np.int64(_bits(t)) - np.int64(MAGIC_BITS))  # k itself, from the low bits
    k1 = k >> 1  # arithmetic shift of a signed integer: floor(k / 2)
    s1 = _from_ibits(np.int32((k1 + 127) << 23))
    s2 = _from_ibits(np.int32((k - k1 + 127) << 23))
    return p, s1, s2


@jit
def exp(x):
    p, s1, s2 = exp_parts(x)
    return (p * s1) * s2


@jit
def expm1(x):
    xc = clamp(x, EXPM1_LO, EXPM1_HI)
    t = xc * LOG2E + MAGIC
    k = t - MAGIC
    r = (xc - k * LN2_HI) - k * LN2_LO
    q = (r * r) * exp_tail(r) + r
    s = scale_of(t)
    return math.copysign(s * q + (s - ONE), xc)  # expm1(-0) = -0 (elu(-0) too)


@jit
def log1p_unit(u):
    """log(1 + u) for u in [0, 1] (fdlibm's method; see csrc/fa_math.inc)."""
    w = ONE + u
    big = w > SQRT2
    m = w * HALF if big else w
    k = ONE if big else ZERO
    c = (u - (w - ONE)) / w
    f = m - ONE
    s = f / (TWO + f)
    z = s * s
    R = L2
    R = R * z + L1
    R = R * z + L0
    # these products round apart from the sums that take them, as C's do (k's are exact: k is
    # 0 or 1); with the whole function contracted, 0.14-0.16 % of softplus' and logsigmoid's
    # results differed from C's
    R = mul_unfused(R, z)
    hfsq = mul_unfused(HALF * f, f)
    return k * LN2_HI - ((hfsq - (mul_unfused(s, hfsq + R) + (k * LN2_LO + c))) - f)


@jit
def tanh(x):
    a = fmin(abs(x) * TWO, EXPM1_HI)
    e = expm1(a)
    return math.copysign(e / (e + TWO), x)


# ---- the ops: fwd(x, p0, p1, p3) and der(saved, p0, p1, p3), all float32 ------------------
@jit
def sigmoid_fwd_portable(x, p0, p1, p3):
    e = exp_lite_neg(-abs(x))
    num = ONE if x >= ZERO else e
    return num / (ONE + e)


@jit
def sigmoid_der(y, p0, p1, p3):
    return y * (ONE - y)


@jit
def tanh_fwd_portable(x, p0, p1, p3):
    return tanh(x)


@jit
def tanh_der(y, p0, p1, p3):
    return (ONE - y) * (ONE + y)


@jit
def relu_fwd(x, p0, p1, p3):
    return ZERO if x <= ZERO else x


@jit
def relu_der(y, p0, p1, p3):
    return nan_or(y, ONE if y > ZERO else ZERO)


@jit
def leaky_relu_fwd(x, p0, p1, p3):
    return x if x > ZERO else x * p0


@jit
def leaky_relu_der(x, p0, p1, p3):
    return nan_or(x, ONE if x > ZERO else p0)


@jit
def relu6_fwd(x, p0, p1, p3):
    t = ZERO if x < ZERO else x  # relu6(-0) = -0, as PyTorch's
    return SIX if t > SIX else t


@jit
def relu6_der(x, p0, p1, p3):
    return nan_or(x, ONE if (x > ZERO) & (x < SIX) else ZERO)


@jit
def hardtanh_fwd(x, p0, p1, p3):
    return clamp(x, p0, p1)


@jit
def hardtanh_der(x, p0, p1, p3):
    return nan_or(x, ONE if (x > p0) & (x < p1) else ZERO)


@jit
def elu_fwd(x, p0, p1, p3):
    return x if x > ZERO else p0 * expm1(fmin(x, ZERO))


@jit
def elu_der(x, p0, p1, p3):
    return ONE if x > ZERO else p0 * exp_lite_neg(fmin(x, ZERO))


@jit
def selu_fwd(x, p0, p1, p3):
    return SELU_S * x if x > ZERO else SELU_SA * expm1(fmin(x, ZERO))


@jit
def selu_der(x, p0, p1, p3):
    return SELU_S if x > ZERO else SELU_SA * exp_lite_neg(fmin(x, ZERO))


@jit
def celu_fwd(x, p0, p1, p3):
    return x if x > ZERO else p0 * expm1(fmin(x, ZERO) / p0)


@jit
def celu_der(x, p0, p1, p3):
    return ONE if x > ZERO else exp_lite(fmin(x, ZERO) / p0)


SILU_LO = F(-150.0)  # silu(-150) is under half the smallest subnormal


@jit
def silu_fwd(x, p0, p1, p3):
    """C's AVX-512 form (fa512_silu): e^-x = p 2^k taken whole for either sign; x >= 0:
    x / (1 + p 2^k); x < 0: (x / (p + 2^-k)) 2^-k, with 2^k and 2^-k as two normal halves
    each (k reaches 217 at x = -150), so the quotient underflows gradually in the last
    product. Three roundings, none of x e^x's."""
    xc = SILU_LO if x < SILU_LO else x  # NaN stays
    z = -xc
    z = SILU_LO if z < SILU_LO else z
    neg = x < ZERO
    term, one, scale = one_plus_exp_parts(z, neg)
    return unscale(xc / (term + one), neg, scale)


# 1 + e^z for |z| <= 150 as (term + one) / 2^-k when neg (z >= 0), term + one when not
# (z <= 0), every part in range: e^z = p 2^k and
#   not neg: term = p 2^k, one = 1;
#   neg:     term = p,     one = 2^-k,
# term always e^z's part (gelu_tanh's first-order correction multiplies it), and
# unscale(q, neg, scale) = q 2^-k when neg, q otherwise, rounded once, so the caller's
# quotient x / (term + one) underflows gradually (silu, gelu_tanh). Two forms, the same bits:
# the portable one scales by two normal halves of 2^k (k reaches 217 at z = 150; the first
# product is exact), the AVX-512 one by vscalefps (_numba_simd.scalef), as C's fa512_silu:
# 262,144 floats, one thread, median of 41, side by side with c: silu forward 109 -> 93 us
# (c 81), gelu_tanh 257 -> 225 us (c 203).
@jit
def one_plus_exp_parts_portable(z, neg):
    p, t = reduce(z)
    k = np.int32(np.int64(_bits(t)) - np.int64(MAGIC_BITS))
    k1 = k >> 1
    k2 = k - k1
    # one pair of selects rather than branches, which kept the loop from vectorising
    j1 = -k1 if neg else k1
    j2 = -k2 if neg else k2
    s1 = _from_ibits(np.int32((j1 + 127) << 23))
    s2 = _from_ibits(np.int32((j2 + 127) << 23))
    term = p if neg else (p * s1) * s2
    one = s1 * s2 if neg else ONE
    return term, one, (s1, s2)


@jit
def unscale_portable(q, neg, scale):
    return (q * scale[0]) * scale[1] if neg else q


# The AVX-512 form selects the exponents, not the terms: term = p 2^kp and one = 2^kq with
# (kp, kq) = (k, 0) or (0, -k), and unscale is q 2^kq, exact for kq = 0: no select is left
# around the quotient. With the terms selected, LLVM moved silu's division into both arms of
# the select (fdiv of a select becomes a select of two fdivs): two vdivps per 16 floats where
# C has one; gelu_tanh kept one but still paid the selects. 262,144 floats,
# one thread, the old and new loops in one process, 12 alternating rounds (best of 30
# each), the same bits: silu forward 148.7 -> 116.2 us, gelu_tanh 351.2 -> 316.7 (medians;
# faster in 12 of 12 rounds each).
@jit
def one_plus_exp_parts_scalef(z, neg):
    p, t = reduce(z)
    k = t - MAGIC
    kp = ZERO if neg else k
    kq = -k if neg else ZERO
    return scalef(p, kp), scalef(ONE, kq), kq


@jit
def unscale_scalef(q, neg, kq):
    return scalef(q, kq)


if simd_available():
    one_plus_exp_parts, unscale = one_plus_exp_parts_scalef, unscale_scalef
else:
    one_plus_exp_parts, unscale = one_plus_exp_parts_portable, unscale_portable


@jit
def silu_der_portable(x, p0, p1, p3):
    """s (1 + x (1 - s)), s = sigmoid(x), both s and 1 - s from one exp (C's swish' at 1)."""
    e = exp_lite_neg(-abs(x))
    d = ONE + e
    s = ONE / d if x >= ZERO else e / d
    oms = e / d if x >= ZERO else ONE / d
    xc = clamp(x, EXP_LO, -EXP_LO)
    return s * (ONE + xc * oms)


def two_prod_err_dekker(a, b, p):
    """a * b - p exactly, p = a * b rounded (Dekker with Veltkamp halves, split 2^12 + 1), for
    a CPU without FMA; _numba_math.two_prod_err picks."""
    ca = a * SPLIT
    cb = b * SPLIT
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al = a - ah
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


two_prod_err = jit(_numba_math.two_prod_err_fma if _numba_math._target_has_fma()
                   else two_prod_err_dekker)


@jit
def swish_fwd_double(x, p0, p1, p3):
    """x sigmoid(b x); b x, the quotient and the product in double (b carried to double
    precision through p3 = b - float(b)), only e^-|b x| in float (C's float path)."""
    bd = np.float64(p0) + np.float64(p3)
    bxd = bd * np.float64(x)
    a = -bxd if bxd < 0.0 else bxd
    a = 200.0 if a > 200.0 else a
    a_hi = np.float32(a)
    a_lo = a - np.float64(a_hi)
    p, s1, s2 = exp_parts(-a_hi)
    pd = np.float64(p) * (1.0 - a_lo)
    e = np.float64((p * s1) * s2) * (1.0 - a_lo)
    d = 1.0 + e
    # one division of either arm's numerator: the two quotients written apart were both
    # computed (2 vdivpd per 8 lanes); beta = 1.702, 262,144 floats, one thread, the old and
    # new loops in one process, 12 alternating rounds: median 709.7 -> 582.8 us, same bits
    q = np.float32((np.float64(x) if bxd >= 0.0 else np.float64(x) * pd) / d)
    y = q if bxd >= 0.0 else (q * s1) * s2
    y = HALF * x if p0 == ZERO else y
    return math.copysign(ZERO, x) if p0 * x < EXP_LO else y


@jit
def swish_der(x, p0, p1, p3):
    """C's portable swish' (the float64 module's swish_der): one division, its roundings."""
    bx = ZERO if p0 == ZERO else p0 * x
    e = exp_lite_neg(-abs(bx))
    inv = ONE / (ONE + e)
    ed = e * inv
    s = inv if bx >= ZERO else ed
    oms = ed if bx >= ZERO else inv
    bxc = clamp(bx, EXP_LO, -EXP_LO)
    return s * (ONE + mul_unfused(bxc, oms))


@jit
def mish_fwd(x, p0, p1, p3):
    """x n / (n + 2), n = e (e + 2): the ratio in double (C's float path: the float chain
    measured 3.8 ULP at x = -2.07)."""
    xe = fmin(x, MISH_HI)
    p, s1, s2 = exp_parts(xe)
    e = np.float64((p * s1) * s2)
    ep2 = e + 2.0
    ratio = ep2 / (e * ep2 + 2.0)
    y = (np.float32(np.float64(xe) * np.float64(p) * ratio) * s1) * s2
    y = x if x > MISH_HI else y
    return math.copysign(ZERO, x) if x < EXP_LO else y


@jit
def mish_der(x, p0, p1, p3):
    xc = clamp(x, EXP_LO, MISH_HI)
    e = exp_lite(xc)
    n = e * (e + TWO)
    np2 = n + TWO
    t = n / np2
    s = e / (ONE + e)
    return t + mul_unfused(xc * s, (TWO / np2) * (ONE + t))  # C rounds the product apart


@jit
def softplus_fwd(x, p0, p1, p3):
    bx = x * p0
    xs = clamp(x, -BIG, BIG)
    err = two_prod_err(xs, p0, xs * p0) + p3 * xs
    e = exp(-abs(bx))
    sig = ONE / (ONE + e) if bx >= ZERO else e / (ONE + e)
    sp = fmax(bx, ZERO) + (log1p_unit(e) + err * sig)
    return x if bx > p1 else sp / p0


@jit
def softplus_der(x, p0, p1, p3):
    bx = x * p0
    e = exp_lite_neg(-abs(bx))
    sig = ONE / (ONE + e) if bx >= ZERO else e / (ONE + e)
    return ONE if bx > p1 else sig


@jit
def softplus1_fwd(x, p0, p1, p3):
    """softplus_fwd at beta = 1 (the float64 module's softplus1_fwd; C's softplus1_fwd)."""
    sp = fmax(x, ZERO) + log1p_unit(exp(-abs(x)))
    return x if x > p1 else sp


softplus1_der = softplus_der


@jit
def logsigmoid_fwd(x, p0, p1, p3):
    return fmin(x, ZERO) - log1p_unit(exp(-abs(x)))


@jit
def logsigmoid_der(x, p0, p1, p3):
    return sigmoid_fwd(-x, p0, p1, p3)  # vscalefps on AVX-512 targets, as C's


@jit
def logsigmoid_der_portable(x, p0, p1, p3):
    return sigmoid_fwd_portable(-x, p0, p1, p3)


@jit
def hardsigmoid_fwd(x, p0, p1, p3):
    # without vdivps (div_const): 262,144, one thread, out=, best of 40 interleaved, 32.1 ->
    # 28.1 us, relu's speed, the same bits as the c backend over all 2^32 floats. hardswish
    # slowed that way (32.7 -> 37.5 us forward, 43.8 -> 47.4 backward) and keeps its divisions.
    return div_const(relu6_fwd(x + THREE, p0, p1, p3), SIX, SIXTH)


@jit
def hardsigmoid_der(x, p0, p1, p3):
    return nan_or(x, SIXTH if (x > -THREE) & (x < THREE) else ZERO)


@jit
def hardswish_fwd(x, p0, p1, p3):
    return ZERO if x <= -THREE else x * (relu6_fwd(x + THREE, p0, p1, p3) / SIX)


@jit
def hardswish_der(x, p0, p1, p3):
    d = ZERO if x <= -THREE else (x / THREE + HALF if x < THREE else ONE)
    return nan_or(x, d)


@jit
def softsign_fwd(x, p0, p1, p3):
    a = abs(x)
    return math.copysign(ONE, x) if a == INF32 else x / (ONE + a)


@jit
def softsign_der(x, p0, p1, p3):
    a = ONE + abs(x)
    return ONE / (a * a)


@jit
def pw(g, d):
    return ZERO if d == ZERO else g * d


# ---- gelu (exact form): the C kernels' float path (csrc/fa_ops.inc explains it): x Q(|x|)
# with Q(a) = e^(-a^2/2) N(a)/D(a), the exponential in float with a^2 split exactly, N, D and
# x N / D in double (in float their roundings alone reached 5 units of 2^-24) ----
GELU_AMAX32 = F(GELU_AMAX)
INV_SQRT_2PI = F(0.3989422804014327)
TWO_POW_M64 = F(2.0 ** -64)
U191 = np.uint32(127 + 64)
N0, N1, N2, N3, N4 = GELU_NUM
D0, D1, D2, D3, D4, D5 = GELU_DEN


@jit
def gelu_parts(a):
    """(N/D as double, r, p1, s): e^(-a^2/2) w = ((w + (w r) p1) s) 2^-64 for any w."""
    h = a * a
    lo = two_prod_err(a, a, h)
    hz = HALF * h
    lz = HALF * lo
    tk = hz * -LOG2E + MAGIC
    k = tk - MAGIC  # rint(-hz log2 e), in [-132, 0]
    r = (-k * LN2_HI - hz)  # exact (Cody-Waite)
    r = (-k * LN2_LO + r) - lz
    p1 = exp_tail(r) * r + ONE
    s = _from_bits(np.uint32((_bits(tk) + U191) << U23))
    ad = np.float64(a)
    num = (((N4 * ad + N3) * ad + N2) * ad + N1) * ad + N0
    den = ((((D5 * ad + D4) * ad + D3) * ad + D2) * ad + D1) * ad + D0
    return num / den, r, p1, s


@jit
def gelu_fwd_rational(x, p0, p1, p3):
    a = fmin(abs(x), GELU_AMAX32)  # NaN stays NaN
    rat, r, q1, s = gelu_parts(a)
    v = np.float32(np.float64(math.copysign(a, x)) * rat)  # x R(a)
    xq = (((v * r) * q1 + v) * s) * TWO_POW_M64  # x Q(a)
    y = xq if x <= ZERO else x - xq  # <=: -0 keeps its sign
    return -ZERO if x < -GELU_AMAX32 else y


@jit
def gelu_der_rational(x, p0, p1, p3):
    a = fmin(abs(x), GELU_AMAX32)
    rat, r, q1, s = gelu_parts(a)
    big_r = np.float32(rat)
    w = math.copysign(a, x) * INV_SQRT_2PI + (big_r if x < ZERO else -big_r)
    ew = (((w * r) * q1 + w) * s) * TWO_POW_M64
    ew = -ZERO if x < -GELU_AMAX32 else ew  # -inf: 0, not e^-91 R
    return ew if x < ZERO else ONE + ew


# ---- gelu (exact form) on AVX-512 targets: the C kernels' AVX-512 float loop (fa512_gelu,
# csrc/fa_avx512_f32.inc explains it), float only: R(a) a degree-6 polynomial on 16 pieces of
# [0, 13.5] read by _numba_simd's permutes, e^(-a^2/2) with a^2/2 split exactly, 2^k applied
# last as one rounding (2^(k+64), then 2^-64): the same bits as that loop. Without AVX-512 a
# table read is a gather, and the rational form above runs instead (as the C portable float
# loop does). 262,144 floats, one thread, median of 41, side by side with c (us): forward
# 226-227 -> 146-147 (c 136), backward 231-240 -> 165-166 (c 153) ----
GELU_PIECE_A32 = F(13.5)
U4X127 = np.uint32(4 * 127)
U21 = np.uint32(21)
INV_SQRT_2PI32 = F(0.398942280)  # the C loop's constant, rounded as it is there


def piece_polynomial(name, rows):
    """A jitted p(a, i): the polynomial of piece i at a, from a table of gen_coeffs' layout (row
    0: each piece's t; rows 1..: the coefficients from degree 0 up), each row read by a
    permute, Horner's steps in straight-line code (as _numba_math's float64 gelu)."""
    ns = {f"_row{j}": table_reader(f"{name}_row{j}", row, np.float32)
          for j, row in enumerate(rows)}
    last = len(rows) - 1
    lines = ["u = a - _row0(i)", f"r = _row{last}(i)"]
    lines += [f"r = r * u + _row{j}(i)" for j in range(last - 1, 0, -1)]
    exec("def poly(a, i):\n    " + "\n    ".join(lines + ["return r"]), ns)  # noqa: S102
    return jit(ns["poly"])


@jit
def quarter_octave(a):
    """C's fa512_quarter_octave: the piece of a >= 0, four per octave of a + 1 (NaN: garbage,
    read modulo 16; u = a - t carries the NaN)."""
    return (_bits(a + ONE) >> U21) - U4X127


_gelu_r32 = piece_polynomial("gelu_f32", GELU_PIECES_F32)


@jit
def gelu_piece_parts(a):
    """(R(a), q, s) with e^(-a^2/2) w = ((w q + w) s) 2^-64 for any w; a = min(|x|, 13.5)."""
    big_r = _gelu_r32(a, quarter_octave(a))
    ha = HALF * a
    hz = ha * a
    lz = _fma(ha, a, -hz)  # a^2/2 = hz + lz exactly
    tk = hz * -LOG2E + MAGIC
    k = tk - MAGIC  # rint(-hz log2 e), in [-132, 0]
    r = (-k * LN2_HI - hz) - (k * LN2_LO + lz)
    p = E6
    p = p * r + E5
    p = p * r + E4
    p = p * r + E3
    p = p * r + E2
    q = (r * r) * p + r
    s = _from_bits(np.uint32((_bits(tk) + U191) << U23))  # 2^(k + 64)
    return big_r, q, s


@jit
def gelu_fwd_pieces(x, p0, p1, p3):
    a = fmin(abs(x), GELU_PIECE_A32)  # NaN stays NaN
    big_r, q, s = gelu_piece_parts(a)
    v = math.copysign(a, x) * big_r  # a in place of x beyond 13.5: x = inf gives inf - finite
    xq = ((v * q + v) * s) * TWO_POW_M64  # x Q(a)
    y = x - xq if x > ZERO else xq  # -0 and NaN: x Q
    return -ZERO if x < -GELU_PIECE_A32 else y


@jit
def gelu_der_pieces(x, p0, p1, p3):
    a = fmin(abs(x), GELU_PIECE_A32)
    big_r, q, s = gelu_piece_parts(a)
    neg = x < ZERO
    w = math.copysign(a, x) * INV_SQRT_2PI32 + (big_r if neg else -big_r)
    ew = ((w * q + w) * s) * TWO_POW_M64
    ew = -ZERO if x < -GELU_PIECE_A32 else ew  # -inf: 0, not e^-91 R
    return ew if neg else ONE + ew


if simd_available():
    gelu_fwd, gelu_der = gelu_fwd_pieces, gelu_der_pieces
else:
    gelu_fwd, gelu_der = gelu_fwd_rational, gelu_der_rational


# ---- tanh on AVX-512 targets: C's fa512_tanh, tanh(a) itself a degree-6 polynomial on 14
# pieces of [0, 9.5] (no division; 1.10 ULP over every float32), the same bits. Elsewhere the
# exp-based form above, as C's portable float loop ----
TANH_A32 = F(TANH_AMAX_F32)
_tanh_t32 = piece_polynomial("tanh_f32", TANH_PIECES_F32)


@jit
def tanh_fwd_pieces(x, p0, p1, p3):
    a = fmin(abs(x), TANH_A32)  # NaN stays NaN
    return math.copysign(_tanh_t32(a, quarter_octave(a)), x)


tanh_fwd = tanh_fwd_pieces if simd_available() else tanh_fwd_portable


# ---- gelu, tanh form: the C kernels' AVX-512 float loop (fa512_gelu_tanh), float only: 2u as
# a float pair (every product split exactly, both constants split in two floats), sigmoid as
# silu's one quotient (silu_fwd above) with z = -2u, and 2u's error folded into the
# denominator before its rounding (2Sum). 262,144 floats, one thread, side by side with c:
# 434 -> 285 us (2u and the quotient in double, the C portable loop's former form); the same
# bits as c's AVX-512 loop on 44M floats, 2.44 ULP at most ----
GELU_TANH_X32 = F(12.0)  # gelu(-12) in float is 0; above 12 it is x
TWO_K32 = F(1.5957691216057308)  # 2 sqrt(2/pi)
TWO_K32_LO = F(1.5957691216057308 - float(TWO_K32))
GELU_C32 = F(0.044715)
GELU_C32_LO = F(0.044715 - float(GELU_C32))


@jit
def gelu_tanh_fwd(x, p0, p1, p3):
    xc = clamp(x, -GELU_TANH_X32, GELU_TANH_X32)
    xx = xc * xc
    xx_e = two_prod_err(xc, xc, xx)
    x3 = xx * xc
    x3_e = two_prod_err(xx, xc, x3) + xx_e * xc
    cx3 = GELU_C32 * x3
    cx3_e = two_prod_err(GELU_C32, x3, cx3) + GELU_C32 * x3_e + GELU_C32_LO * x3
    inner = xc + cx3
    in_e = two_sum_err(xc, cx3, inner) + cx3_e
    u2 = inner * TWO_K32
    err = two_prod_err(inner, TWO_K32, u2) + TWO_K32 * in_e + TWO_K32_LO * inner
    # 1 + e^-u2 (|u2| <= 143): u2 >= 0: x / (1 + p 2^k); below: (x / (p + 2^-k)) 2^-k
    y = x_sigmoid_pair(xc, u2, err)
    y = x if x > GELU_TANH_X32 else y
    return -ZERO if x < -GELU_TANH_X32 else y


@jit
def x_sigmoid_pair(xc, u2, err):
    """x sigmoid(u2 + err), |u2| <= 4000 (C's fa512_x_sigmoid_dw): e^-u2 = p 2^k for either
    sign, x / (1 + p 2^k) or (x / (p + 2^-k)) 2^-k, err applied to first order in the
    denominator before it rounds. gelu_tanh's and (on AVX-512 targets) swish's tail."""
    neg = u2 < ZERO
    term, one, scale = one_plus_exp_parts(-u2, neg)
    # x sigmoid(u2 + err) = x / (den - err term) to first order, term the exponential's part
    den = term + one
    den_e = two_sum_err(term, one, den)
    den = den + (den_e - err * term)
    return unscale(xc / den, neg, scale)


SWISH_U_MAX = F(4000.0)  # beyond, x sigmoid(u) is x or +-0 for every float x
HUGE32 = F(2.0**127)


@jit
def swish_fwd_pair(x, p0, p1, p3):
    """C's AVX-512 swish (fa512_swish): b x = u2 + err as a float pair (b's residual p3
    included), x sigmoid(u2 + err) by x_sigmoid_pair, u2 clamped to +-4000 (+-0 with x's sign
    below), x from 2^127 up halved before the division and doubled after; b = 0 gives x / 2.
    c's bits."""
    u2 = x * p0
    err = two_prod_err(x, p0, u2) + p3 * x
    err = err if abs(u2) < SWISH_U_MAX else ZERO
    gone = u2 <= -SWISH_U_MAX
    u2 = clamp(u2, -SWISH_U_MAX, SWISH_U_MAX)
    huge = abs(x) >= HUGE32
    y = x_sigmoid_pair(x * HALF if huge else x, u2, err)
    y = y + y if huge else y
    y = math.copysign(ZERO, x) if gone else y
    return HALF * x if p0 == ZERO else y


@jit
def gelu_tanh_der(x, p0, p1, p3):
    """s + 2 x s (1 - s) k (1 + 3 c x^2), s = sigmoid(2u): the C AVX-512 loop's form
    (fa512_gelu_tanh_der), s and 1 - s from one division."""
    xc = clamp(x, -GELU_TANH_X32, GELU_TANH_X32)
    xx = xc * xc
    u2 = TWO_K32 * ((GELU_C32 * xx) * xc + xc)
    e = exp_lite_neg(-abs(u2))
    i = ONE / (ONE + e)
    t = e * i
    pos = u2 >= ZERO
    s = i if pos else t
    oms = t if pos else i
    slope = (THREE * GELU_C32) * xx + ONE
    return s * (((xc * oms) * TWO_K32) * slope + ONE)


EXP_NEG_RAISE = F(-104.0)  # e^-104 is under half float's smallest subnormal


@jit
def silu_der_scalef(x, p0, p1, p3):
    """C's AVX-512 form (fa512_silu_der): e = e^-|x| by vscalefps (underflowing gradually),
    i = 1 / (1 + e) and t = e i, s and 1 - s as (i, t) for x >= 0 and (t, i) below: one
    division where the portable form takes two, and c's AVX-512 bits (the portable form's
    differ by its rounding of e / d and its flush of e below 2^-126). 262,144 floats, one
    thread, side by side with c: backward 121 -> 119 us (c 94)."""
    xc = clamp(x, EXP_LO, -EXP_LO)
    z = -abs(xc)
    z = EXP_NEG_RAISE if z < EXP_NEG_RAISE else z  # NaN stays
    p, t = reduce(z)
    e = scalef(p, t - MAGIC)
    i = ONE / (ONE + e)
    t_ = e * i
    pos = xc >= ZERO
    s = i if pos else t_
    oms = t_ if pos else i
    return s * (xc * oms + ONE)


silu_der = silu_der_scalef if simd_available() else silu_der_portable


@jit
def sigmoid_fwd_scalef(x, p0, p1, p3):
    """C's AVX-512 sigmoid (fa512_sigmoid): e = e^-|x| raised to e^-104 and scaled by
    vscalefps, so it underflows gradually where exp_lite_neg flushes below 2^-126 and takes
    an integer add, shift and multiply to build 2^k; c's bits. 262,144 floats, one thread,
    the two loops timed in one process, 12 alternating rounds (best of 30 each): median
    93.4 -> 80.3 us, faster in 12 of 12."""
    z = -abs(x)
    z = EXP_NEG_RAISE if z < EXP_NEG_RAISE else z  # NaN stays
    p, t = reduce(z)
    e = scalef(p, t - MAGIC)
    num = ONE if x >= ZERO else e
    return num / (ONE + e)


sigmoid_fwd = sigmoid_fwd_scalef if simd_available() else sigmoid_fwd_portable
# swish: C's AVX-512 float-pair loop on AVX-512 targets, its portable double form elsewhere
# (and on the GPU: swish_fwd_portable)
swish_fwd = swish_fwd_pair if simd_available() else swish_fwd_double
swish_fwd_portable = swish_fwd_double


@jit
def exp_lite_scalef(x):
    """e^x as C's AVX-512 log_softmax backward rows take it: x clamped to [-104, 100] and
    2^k by vscalefps (gradual underflow where exp_lite flushes under 2^-126). 256 rows of
    1024, six interleaved rounds with c: numba x c 0.69 -> 0.77 on one thread, 0.65 -> 0.75
    on two."""
    z = F(100.0) if x > F(100.0) else x
    z = EXP_NEG_RAISE if z < EXP_NEG_RAISE else z  # NaN stays
    p, t = reduce(z)
    return scalef(p, t - MAGIC)


# the log_softmax backward rows' exponential (numba_backend builds those rows through the
# inlining caller where it is vscalefps)
exp_rows = exp_lite_scalef if simd_available() else exp_lite


# ---- the portable forms of the kernels above that take AVX-512 instructions on AVX-512
# targets: the cuda backend's (the same algorithms, the same bits) ----
def _with_portable_scaling(fn, **more):
    f = fn.py_func
    namespace = {**f.__globals__, "one_plus_exp_parts": one_plus_exp_parts_portable,
                 "unscale": unscale_portable, **more}
    return jit(type(f)(f.__code__, namespace, f.__name__ + "_portable"))


silu_fwd_portable = _with_portable_scaling(silu_fwd)
# silu_der_portable: above
# gelu_tanh's tail is a function of its own: its portable copy has to be passed down too, or
# the GPU's gelu_tanh would inline the AVX-512 one (a test compiles every portable form and
# looks for vscalefps)
x_sigmoid_pair_portable = _with_portable_scaling(x_sigmoid_pair)
gelu_tanh_fwd_portable = _with_portable_scaling(gelu_tanh_fwd,
                                                x_sigmoid_pair=x_sigmoid_pair_portable)
gelu_fwd_portable, gelu_der_portable = gelu_fwd_rational, gelu_der_rational
# sigmoid_fwd_portable, logsigmoid_der_portable: above


# The kernels this module serves for float32 data (numba_backend._F32_KERNELS names the same;
# a test keeps them equal).
KERNELS = ("sigmoid", "tanh", "relu", "leaky_relu", "relu6", "hardtanh", "elu", "selu", "celu",
           "silu", "logsigmoid", "hardsigmoid", "hardswish", "softsign", "gelu", "swish",
           "softplus", "mish", "gelu_tanh", "softplus1")
