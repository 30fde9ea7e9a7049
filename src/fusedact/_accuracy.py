"""``python -m fusedact accuracy``: max error per op, dtype and backend (SPEC section 5).

float32 results are measured against the ``numpy`` backend evaluated in float64 on the same
inputs (a dense sweep over each op's domain, or every float32 there with ``--exhaustive``);
float64 results against mpmath at 40 digits on a smaller sweep. Forward errors are in ULPs of
the true result; backward errors in SPEC's mixed units |err| / (ulp(true) + eps |grad|), with
grad_out = 1 and the saved input the kernel would see. Results below the smallest normal
count as exact when within one smallest normal (flush to zero is allowed).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import fusedact
from ._catalogue import ELEMENTWISE_OPS, EXTRA_PARAMS, OPS


def _param_sets(name):
    spec = OPS[name]
    return [spec.defaults()] + [{**spec.defaults(), **e} for e in EXTRA_PARAMS.get(name, ())]


def _ulps(got, want, dtype, grad=None):
    finfo = np.finfo(dtype)
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    with np.errstate(all="ignore"):
        if finfo.bits < 64:
            limit = float(finfo.max) * (1 + 2.0 ** -(finfo.nmant + 2))
            want = np.where(np.abs(want) >= limit, np.sign(want) * np.inf, want)
        err = np.abs(got - want)
        unit = np.exp2(np.floor(np.log2(np.maximum(np.abs(want), float(finfo.tiny)))) - finfo.nmant)
        if grad is not None:
            unit = unit + float(finfo.eps) * np.abs(grad)
        u = err / unit
        if grad is None:
            u = np.where((np.abs(want) < float(finfo.tiny)) & (err <= float(finfo.tiny)), 0.0, u)
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        u = np.where(same, 0.0, u)
        u = np.where(np.isnan(u) | (np.isnan(got) != np.isnan(want)), np.inf, u)
    return u


CHUNK = 1 << 22  # points per pass: --exhaustive's ~2e9 floats at once needed over 24 GiB


def _float32_chunks(domain, dense, exhaustive):
    """The float32 points of an op's domain, CHUNK at a time: a dense linspace, or every
    float32 in [lo, hi] (the bit patterns of each sign walked in order)."""
    lo, hi = domain
    if not exhaustive:
        yield np.linspace(lo, hi, dense).astype(np.float32)
        return

    def span(a, b, sign):
        ia = int(np.float32(a).view(np.int32))
        ib = int(np.float32(b).view(np.int32))
        for start in range(min(ia, ib), max(ia, ib) + 1, CHUNK):
            stop = min(start + CHUNK, max(ia, ib) + 1)
            yield sign * np.arange(start, stop, dtype=np.int32).view(np.float32)

    if hi > 0:
        yield from span(max(lo, 0.0), hi, np.float32(1))
    if lo < 0:
        yield from span(0.0, -lo, np.float32(-1))


def _float64_truth(name, x, params):
    """mpmath values for the smooth ops; None for piecewise-linear ones (exact in float64)."""
    import mpmath

    mp = mpmath.mp
    mp.dps = 40
    from ._catalogue import SELU_ALPHA, SELU_SCALE

    def f(v):
        a = params
        if name == "sigmoid":
            return 1 / (1 + mp.exp(-v))
        if name == "tanh":
            return mp.tanh(v)
        if name in ("elu", "selu", "celu"):
            if v > 0:
                return v * (SELU_SCALE if name == "selu" else 1)
            if name == "selu":
                return SELU_SCALE * SELU_ALPHA * mp.expm1(v)
            if name == "celu":
                return a["alpha"] * mp.expm1(v / a["alpha"])
            return a["alpha"] * mp.expm1(v)
        if name in ("silu", "swish"):
            return v / (1 + mp.exp(-a.get("beta", 1.0) * v))
        if name == "mish":
            return v * mp.tanh(mp.log1p(mp.exp(v)))
        if name == "gelu":
            if a["approximate"] == "tanh":
                u = mp.sqrt(2 / mp.pi) * (v + mp.mpf("0.044715") * v ** 3)
                return v / (1 + mp.exp(-2 * u))
            return v * mp.ncdf(v)
        if name == "softplus":
            return v if a["beta"] * v > a["threshold"] else mp.log1p(mp.exp(a["beta"] * v)) / a["beta"]
        if name == "logsigmoid":
            return -mp.log1p(mp.exp(-v))
        if name == "softsign":
            return v / (1 + abs(v))
        return None

    truths = [f(mpmath.mpf(float(v))) for v in x]
    if truths and truths[0] is None:
        return None
    return truths


def _mp_ulps(got, truths):
    import mpmath

    tiny = mpmath.mpf(float(np.finfo(np.float64).tiny))
    out = []
    for g, t in zip(np.asarray(got, np.float64), truths):
        if not np.isfinite(g):
            out.append(0.0 if t is None else float("inf"))
            continue
        e = abs(mpmath.mpf(float(g)) - t)
        if abs(t) < tiny:
            out.append(0.0 if e <= tiny else float("inf"))
            continue
        ulp = mpmath.mpf(2) ** (int(mpmath.floor(mpmath.log(abs(t), 2))) - 52)
        out.append(float(e / ulp))
    return np.array(out)


def measure(ops, backends, dense=100_000, dense64=600, exhaustive=False):
    rows = []
    for name in ops:
        spec = OPS[name]
        fwd, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
        for params in _param_sets(name):
            label = name + "".join(f" {k}={v}" for k, v in params.items()
                                   if v != spec.defaults()[k])
            x64 = np.linspace(*spec.domain, dense64)
            truths64 = _float64_truth(name, x64, params)
            rows_here = [{"op": label, "backend": b, "f32_fwd": -1.0, "f32_fwd_at": 0.0,
                          "f32_bwd": 0.0} for b in backends]
            for x32 in _float32_chunks(spec.domain, dense, exhaustive):
                truth_y = fwd(x32.astype(np.float64), **params, backend="numpy")
                for row in rows_here:
                    backend = row["backend"]
                    y32 = fwd(x32, **params, backend=backend)
                    u = _ulps(y32, truth_y, np.float32)
                    if u.max() > row["f32_fwd"]:
                        row["f32_fwd"] = float(u.max())
                        row["f32_fwd_at"] = float(x32[int(np.argmax(u))])
                    saved32 = y32 if spec.saved == "y" else x32
                    d32 = bwd(np.ones_like(x32), saved32, **params, backend=backend)
                    truth_d = bwd(np.ones(x32.shape), saved32.astype(np.float64), **params,
                                  backend="numpy")
                    row["f32_bwd"] = max(row["f32_bwd"],
                                         float(_ulps(d32, truth_d, np.float32, grad=1.0).max()))
            for row in rows_here:
                backend = row["backend"]
                if truths64 is not None:
                    row["f64_fwd"] = float(_mp_ulps(fwd(x64, **params, backend=backend),
                                                    truths64).max())
                else:
                    exact = fwd(x64, **params, backend="numpy")
                    row["f64_fwd"] = float(_ulps(fwd(x64, **params, backend=backend), exact,
                                                 np.float64).max())
                rows.append(row)
    return rows


def format_table(rows) -> str:
    lines = ["| op | backend | f32 fwd max ULP (at x) | f32 bwd max units | f64 fwd max ULP |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['backend']} | {r['f32_fwd']:.2f} ({r['f32_fwd_at']:.4g}) "
                     f"| {r['f32_bwd']:.2f} | {r['f64_fwd']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusedact accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="*", default=list(ELEMENTWISE_OPS))
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--dense", type=int, default=100_000, help="float32 points per op")
    parser.add_argument("--dense64", type=int, default=600, help="float64 points per op (mpmath)")
    parser.add_argument("--exhaustive", action="store_true",
                        help="every float32 in each op's domain (slow: ~2e9 points per op)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    backends = args.backends or [b for b in ("numpy", "c", "numba")
                                 if b in fusedact.available_backends()]
    rows = measure(args.ops, backends, args.dense, args.dense64, args.exhaustive)
    sys.stdout.write((json.dumps(rows, indent=1) if args.json else format_table(rows)) + "\n")
    return 0
