"""Independent references for the tests: float64 formulas written apart from the backends
(scipy.special where it has the function) and mpmath at 40 digits for float64 results.

Nothing here imports fusedact's kernels, so a mistake in the numpy backend cannot hide by
being copied into its own oracle.
"""

from __future__ import annotations

import mpmath
import numpy as np
from scipy import special

from fusedact._catalogue import SELU_ALPHA, SELU_SCALE

K_TANH = np.sqrt(2.0 / np.pi)


# ---- float64 forward formulas (good to ~1e-15 relative: an oracle for float32 results) -----
def _f64_forward(name, x, p):
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            return special.expit(x)
        if name == "tanh":
            return np.tanh(x)
        if name == "relu":
            return np.where(np.isnan(x), x, np.where(x > 0, x, 0.0))
        if name == "leaky_relu":
            return np.where(x > 0, x, p["negative_slope"] * x)
        if name == "relu6":
            return np.where(np.isnan(x), x, np.clip(x, 0.0, 6.0))
        if name == "hardtanh":
            return np.where(np.isnan(x), x, np.clip(x, p["min_val"], p["max_val"]))
        if name == "elu":
            return np.where(x > 0, x, p["alpha"] * np.expm1(np.where(x > 0, 0.0, x)))
        if name == "selu":
            return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.where(x > 0, 0.0, x)))
        if name == "celu":
            a = p["alpha"]
            return np.where(x > 0, x, a * np.expm1(np.where(x > 0, 0.0, x) / a))
        if name == "silu":
            return np.where(x == -np.inf, 0.0, x * special.expit(x))
        if name == "swish":
            return np.where(x == -np.inf, 0.0, x * special.expit(p["beta"] * x))
        if name == "mish":
            return np.where(x == -np.inf, 0.0, x * np.tanh(np.logaddexp(0.0, x)))
        if name == "gelu":
            if p["approximate"] == "tanh":
                u = K_TANH * (x + 0.044715 * x ** 3)
                # x e^(2u) with e^(2u) subnormal but the product normal: two half factors.
                half = np.exp(np.minimum(u, 0.0))
                tail = (x * half / (1 + half * half)) * half
                return np.where(x == -np.inf, 0.0, np.where(u < -300, tail, x * special.expit(2.0 * u)))
            return np.where(x == -np.inf, 0.0, x * special.ndtr(x))
        if name == "softplus":
            b, t = p["beta"], p["threshold"]
            return np.where(b * x > t, x, np.logaddexp(0.0, b * x) / b)
        if name == "logsigmoid":
            return special.log_expit(x)
        if name == "hardsigmoid":
            return np.where(np.isnan(x), x, np.clip(x / 6.0 + 0.5, 0.0, 1.0))
        if name == "hardswish":
            return np.where(x <= -3, 0.0, x * np.clip(x / 6.0 + 0.5, 0.0, 1.0))
        if name == "softsign":
            return np.where(np.isinf(x), np.sign(x), x / (1.0 + np.abs(x)))
    raise KeyError(name)


def _f64_derivative(name, x, p):
    """d op/dx as a function of the input x (backward tests convert to y where needed)."""
    with np.errstate(all="ignore"):
        s = special.expit(x)
        if name == "sigmoid":
            return s * special.expit(-x)
        if name == "tanh":
            return 1.0 / np.cosh(x) ** 2
        if name == "relu":
            return np.where(np.isnan(x), x, (x > 0).astype(float))
        if name == "leaky_relu":
            return np.where(np.isnan(x), x, np.where(x > 0, 1.0, p["negative_slope"]))
        if name == "relu6":
            return np.where(np.isnan(x), x, ((x > 0) & (x < 6)).astype(float))
        if name == "hardtanh":
            return np.where(np.isnan(x), x, ((x > p["min_val"]) & (x < p["max_val"])).astype(float))
        if name == "elu":
            return np.where(x > 0, 1.0, p["alpha"] * np.exp(np.minimum(x, 0)))
        if name == "selu":
            return SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0)))
        if name == "celu":
            return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0) / p["alpha"]))
        if name in ("silu", "swish"):
            b = p.get("beta", 1.0)
            sb = special.expit(b * x)
            return np.where(np.abs(b * x) > 700, np.where(b * x > 0, 1.0, 0.0),
                            sb + b * x * sb * special.expit(-b * x))
        if name == "mish":
            sp = np.logaddexp(0.0, x)
            t = np.tanh(sp)
            return np.where(np.isinf(x), np.where(x > 0, 1.0, 0.0), t + x * s / np.cosh(sp) ** 2)
        if name == "gelu":
            if p["approximate"] == "tanh":
                u = K_TANH * (x + 0.044715 * x ** 3)
                du = K_TANH * (1 + 3 * 0.044715 * x ** 2)
                s2 = special.expit(2 * u)
                d = s2 + x * du * 2 * s2 * special.expit(-2 * u)
            else:
                d = special.ndtr(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
            return np.where(np.abs(x) > 50, np.where(x > 0, 1.0, 0.0), d)
        if name == "softplus":
            b, t = p["beta"], p["threshold"]
            return np.where(b * x > t, 1.0, special.expit(b * x))
        if name == "logsigmoid":
            return special.expit(-x)
        if name == "hardsigmoid":
            return np.where(np.isnan(x), x, np.where((x > -3) & (x < 3), 1 / 6, 0.0))
        if name == "hardswish":
            return np.where(np.isnan(x), x, np.where(x <= -3, 0.0, np.where(x < 3, x / 3 + 0.5, 1.0)))
        if name == "softsign":
            return 1.0 / (1.0 + np.abs(x)) ** 2
    raise KeyError(name)


def forward(name, x, params):
    """float64 reference of op `name` at x (any float array)."""
    return _f64_forward(name, np.asarray(x, dtype=np.float64), params)


def derivative(name, x, params):
    return _f64_derivative(name, np.asarray(x, dtype=np.float64), params)


# ---- mpmath: the truth for float64 results -----------------------------------------------
mpmath.mp.dps = 40


def _mp_forward(name, x, p):
    mp = mpmath.mp
    if name == "sigmoid":
        return 1 / (1 + mp.exp(-x))
    if name == "tanh":
        return mp.tanh(x)
    if name == "elu":
        return x if x > 0 else p["alpha"] * mp.expm1(x)
    if name == "selu":
        return SELU_SCALE * (x if x > 0 else SELU_ALPHA * mp.expm1(x))
    if name == "celu":
        return x if x > 0 else p["alpha"] * mp.expm1(x / p["alpha"])
    if name == "silu":
        return x / (1 + mp.exp(-x))
    if name == "swish":
        return x / (1 + mp.exp(-p["beta"] * x))
    if name == "mish":
        return x * mp.tanh(mp.log1p(mp.exp(x)))
    if name == "gelu":
        if p["approximate"] == "tanh":
            u = mp.sqrt(2 / mp.pi) * (x + mp.mpf("0.044715") * x ** 3)
            return x / (1 + mp.exp(-2 * u))
        return x * mp.ncdf(x)
    if name == "softplus":
        b, t = p["beta"], p["threshold"]
        return x if b * x > t else mp.log1p(mp.exp(b * x)) / b
    if name == "logsigmoid":
        return -mp.log1p(mp.exp(-x))
    if name == "softsign":
        return x / (1 + abs(x))
    return None  # piecewise-linear ops: the float64 formula is exact enough


def mp_forward(name, x, params):
    """Forward at each finite x with 40 digits, as mpf values (None where not needed)."""
    out = []
    for v in np.asarray(x, dtype=np.float64).ravel():
        out.append(_mp_forward(name, mpmath.mpf(float(v)), params))
    return out


def ulp_error_mp(got, truths, dtype):
    """Errors in ULPs of the true result; results below the smallest normal measure 0
    when within one smallest normal of the truth (SPEC section 5)."""
    finfo = np.finfo(dtype)
    tiny = mpmath.mpf(float(finfo.tiny))
    errs = []
    for g, t in zip(np.asarray(got, dtype=np.float64).ravel(), truths):
        if t is None or not np.isfinite(g):
            errs.append(0.0)
            continue
        e = abs(mpmath.mpf(float(g)) - t)
        if abs(t) < tiny:
            errs.append(0.0 if e <= tiny else float(e / mpmath.mpf(float(finfo.smallest_subnormal))))
            continue
        exponent = int(mpmath.floor(mpmath.log(abs(t), 2)))
        ulp = mpmath.mpf(2) ** (exponent - finfo.nmant)
        errs.append(float(e / ulp))
    return np.array(errs)


def ulp_error(got, want, dtype):
    """|got - want| in ULPs of want (want a float64 truth for a float32/float16 result).

    Where want is below the smallest normal of dtype, an error up to one smallest normal
    counts as 0 (flush to zero is allowed). Matching infinities and NaNs count 0; any other
    mismatch of non-finite values is inf.
    """
    finfo = np.finfo(dtype)
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    with np.errstate(all="ignore"):
        # A truth beyond the dtype's largest finite value rounds to +-inf.
        if finfo.bits < 64:
            limit = float(finfo.max) * (1 + 2.0 ** -(finfo.nmant + 2))
            want = np.where(np.abs(want) >= limit, np.sign(want) * np.inf, want)
        err = np.abs(got - want)
        exponent = np.floor(np.log2(np.maximum(np.abs(want), float(finfo.tiny))))
        ulp = np.exp2(exponent - finfo.nmant)
        u = err / ulp
        u = np.where((np.abs(want) < float(finfo.tiny)) & (err <= float(finfo.tiny)), 0.0, u)
        same_special = (got == want) | (np.isnan(got) & np.isnan(want))
        u = np.where(same_special, 0.0, u)
        u = np.where(~np.isfinite(want) & ~same_special, np.inf, u)
        u = np.where(np.isnan(u) | (np.isnan(got) != np.isnan(want)), np.inf, u)
    return u


def mixed_error(got, want, grad, dtype):
    """Backward error in SPEC section 5's units: |err| / (ulp(want) + eps |grad|)."""
    finfo = np.finfo(dtype)
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    with np.errstate(all="ignore"):
        exponent = np.floor(np.log2(np.maximum(np.abs(want), float(finfo.tiny))))
        scale = np.exp2(exponent - finfo.nmant) + float(finfo.eps) * np.abs(grad)
        u = np.abs(got - want) / scale
        same_special = (got == want) | (np.isnan(got) & np.isnan(want))
        u = np.where(same_special, 0.0, u)
        u = np.where(np.isnan(u) | (np.isnan(got) != np.isnan(want)), np.inf, u)
    return u
