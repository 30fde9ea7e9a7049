"""Benchmarks: one table of contenders per op, used by ``python -m fusedact bench`` and by the
pytest-benchmark suite in ``bench/``.

For each op and direction (forward, backward) the contenders are every available fusedact
backend, the NumPy formula a user would write, the exp-based sigmoid/tanh, NumPy's np.tanh and
SciPy's expit/softmax where they exist, PyTorch CPU when installed (functional forward, aten
backward), and the copy of the same arrays: ``np.copyto`` for a forward (1 read + 1 write),
``np.add(g, s, out)`` for a backward (2 reads + 1 write), the streaming limit of this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

import fusedact
from ._catalogue import ELEMENTWISE_OPS, OPS, SELU_ALPHA, SELU_SCALE

ROW = 1024  # row length for softmax-family and maxout benchmarks
BIAS_ACT = "gelu"  # the activation fused in the bias_act benchmark
COPY = "copy"
NAIVE = "numpy naive"


@dataclass(frozen=True)
class Case:
    op: str
    direction: str  # "forward" or "backward"
    dtype: str  # "float32" or "float64"
    n: int
    data: str = "normal"  # "normal": N(0,1) x 3; "wide": uniform +-100 (overflow paths)

    @property
    def label(self):
        return f"{self.op}-{self.direction}-{self.dtype}-{self.n}-{self.data}"


# Parameter variants benchmarked as ops of their own: gelu's tanh form (GPT-2's and BERT's
# "gelu_new") is its own kernel in every backend, and PyTorch's too.
VARIANTS = {"gelu_tanh": ("gelu", {"approximate": "tanh"})}
_AFTER_GELU = ELEMENTWISE_OPS.index("gelu") + 1
BENCH_OPS = (ELEMENTWISE_OPS[:_AFTER_GELU] + ("gelu_tanh",) + ELEMENTWISE_OPS[_AFTER_GELU:]
             + ("softmax", "log_softmax", "maxout", "bias_act", "softmax_cross_entropy"))


def base_op(op):
    """The catalogue op a bench op runs (gelu for gelu_tanh)."""
    return VARIANTS[op][0] if op in VARIANTS else op


def _params(op):
    if op in VARIANTS:
        base, extra = VARIANTS[op]
        return {**OPS[base].defaults(), **extra}
    return OPS[op].defaults() if op in OPS and op not in ("maxout",) else {}


def make_inputs(case: Case, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    dt = np.dtype(case.dtype)
    n = case.n
    if case.data == "wide":
        x = rng.uniform(-100, 100, n).astype(dt)
    else:
        x = (rng.standard_normal(n) * 3).astype(dt)
    g = rng.standard_normal(n).astype(dt)
    if case.op in ("softmax", "log_softmax", "maxout", "softmax_cross_entropy", "bias_act"):
        rows = max(n // ROW, 1)
        x = x[: rows * ROW].reshape(rows, -1) if n >= ROW else x.reshape(1, -1)
        g = g[: x.size].reshape(x.shape)
    inputs = {"x": x, "g": g}
    spec = OPS.get(base_op(case.op))
    if case.op == "maxout":
        inputs["g"] = g[..., ::2].copy()
    elif case.op == "bias_act":
        inputs["bias"] = rng.standard_normal(x.shape[-1]).astype(dt)
    elif case.op == "softmax_cross_entropy":
        inputs["labels"] = rng.integers(0, x.shape[-1], x.shape[0])
    if spec is not None and case.direction == "backward" and spec.saved == "y":
        inputs["saved"] = getattr(fusedact, base_op(case.op))(x, **_params(case.op),
                                                              backend="numpy")
    else:
        inputs["saved"] = x
    return inputs


# ---- what a user writes in NumPy -----------------------------------------------------------
def _erf(z):
    from scipy.special import erf

    return erf(z)


def _naive_forward(op, x, p):
    e = np.exp
    return {
        "sigmoid": lambda: 1 / (1 + e(-x)),
        "tanh": lambda: np.tanh(x),
        "relu": lambda: np.maximum(x, 0),
        "leaky_relu": lambda: np.where(x > 0, x, p["negative_slope"] * x),
        "relu6": lambda: np.clip(x, 0, 6),
        "hardtanh": lambda: np.clip(x, p["min_val"], p["max_val"]),
        "elu": lambda: np.where(x > 0, x, p["alpha"] * (e(x) - 1)),
        "selu": lambda: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (e(x) - 1)),
        "celu": lambda: np.maximum(0, x) + np.minimum(0, p["alpha"] * (e(x / p["alpha"]) - 1)),
        "silu": lambda: x / (1 + e(-x)),
        "swish": lambda: x / (1 + e(-p["beta"] * x)),
        "mish": lambda: x * np.tanh(np.log1p(e(x))),
        "gelu": lambda: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
        "gelu_tanh": lambda: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                    * (x + 0.044715 * x ** 3))),
        "softplus": lambda: np.where(x * p["beta"] > p["threshold"], x,
                                     np.log1p(e(p["beta"] * x)) / p["beta"]),
        "logsigmoid": lambda: -np.log1p(e(-x)),
        "hardsigmoid": lambda: np.clip(x / 6 + 0.5, 0, 1),
        "hardswish": lambda: x * np.clip(x + 3, 0, 6) / 6,
        "softsign": lambda: x / (1 + np.abs(x)),
    }[op]


def _naive_backward(op, g, s, p):
    e = np.exp
    return {
        "sigmoid": lambda: g * s * (1 - s),
        "tanh": lambda: g * (1 - s * s),
        "relu": lambda: g * (s > 0),
        "leaky_relu": lambda: g * np.where(s > 0, 1, p["negative_slope"]),
        "relu6": lambda: g * ((s > 0) & (s < 6)),
        "hardtanh": lambda: g * ((s > p["min_val"]) & (s < p["max_val"])),
        "elu": lambda: g * np.where(s > 0, 1, p["alpha"] * e(s)),
        "selu": lambda: g * SELU_SCALE * np.where(s > 0, 1, SELU_ALPHA * e(s)),
        "celu": lambda: g * np.where(s > 0, 1, e(s / p["alpha"])),
        "silu": lambda: (lambda sg: g * sg * (1 + s * (1 - sg)))(1 / (1 + e(-s))),
        "swish": lambda: (lambda sg: g * (sg + p["beta"] * s * sg * (1 - sg)))(
            1 / (1 + e(-p["beta"] * s))),
        "mish": lambda: (lambda t, sg: g * (t + s * sg * (1 - t * t)))(
            np.tanh(np.log1p(e(s))), 1 / (1 + e(-s))),
        "gelu": lambda: g * (0.5 * (1 + _erf(s / math.sqrt(2)))
                             + s * e(-0.5 * s * s) / math.sqrt(2 * math.pi)),
        "gelu_tanh": lambda: (lambda k, t: g * (0.5 * (1 + t) + 0.5 * s * (1 - t * t) * k
                                                * (1 + 3 * 0.044715 * s * s)))(
            math.sqrt(2 / math.pi), np.tanh(math.sqrt(2 / math.pi) * (s + 0.044715 * s ** 3))),
        "softplus": lambda: g * np.where(s * p["beta"] > p["threshold"], 1,
                                         1 / (1 + e(-p["beta"] * s))),
        "logsigmoid": lambda: g / (1 + e(s)),
        "hardsigmoid": lambda: g * ((s > -3) & (s < 3)) / 6,
        "hardswish": lambda: g * np.where(s < -3, 0, np.where(s <= 3, s / 3 + 0.5, 1)),
        "softsign": lambda: g / (1 + np.abs(s)) ** 2,
    }[op]


def _naive_axis(case, inp):
    x, g, s = inp["x"], inp["g"], inp["saved"]
    op, fwd = case.op, case.direction == "forward"
    if op == "softmax":
        if fwd:
            return lambda: (lambda ex: ex / ex.sum(-1, keepdims=True))(
                np.exp(x - x.max(-1, keepdims=True)))
        return lambda: s * (g - (g * s).sum(-1, keepdims=True))
    if op == "log_softmax":
        if fwd:
            return lambda: (lambda z: z - np.log(np.exp(z).sum(-1, keepdims=True)))(
                x - x.max(-1, keepdims=True))
        return lambda: g - np.exp(s) * g.sum(-1, keepdims=True)
    if op == "maxout":
        grouped = x.reshape(x.shape[0], -1, 2)
        if fwd:
            return lambda: grouped.max(-1)
        return lambda: (np.repeat(g, 2, axis=-1)
                        * (x == np.repeat(grouped.max(-1), 2, axis=-1)))
    if op == "bias_act":
        b = inp["bias"]
        if fwd:
            return lambda: 0.5 * (x + b) * (1 + _erf((x + b) / math.sqrt(2)))
        def bwd():
            z = x + b
            gx = g * (0.5 * (1 + _erf(z / math.sqrt(2)))
                      + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
            return gx, gx.sum(0)
        return bwd
    if op == "softmax_cross_entropy":
        labels = inp["labels"]
        rows = np.arange(x.shape[0])

        def sce():
            z = x - x.max(-1, keepdims=True)
            ls = z - np.log(np.exp(z).sum(-1, keepdims=True))
            grad = np.exp(ls)
            grad[rows, labels] -= 1
            return -ls[rows, labels], grad
        return sce
    raise KeyError(op)


# ---- the contenders table ------------------------------------------------------------------
def _fusedact(case, inp, backend):
    op, p = case.op, _params(case.op)
    x, g, s = inp["x"], inp["g"], inp["saved"]
    if case.op == "maxout":
        if case.direction == "forward":
            return lambda: fusedact.maxout(x, 2, backend=backend)
        return lambda: fusedact.maxout_backward(g, x, 2, backend=backend)
    if case.op == "bias_act":
        b = inp["bias"]
        if case.direction == "forward":
            return lambda: fusedact.bias_act(x, b, BIAS_ACT, backend=backend)
        return lambda: fusedact.bias_act_backward(g, x, b, BIAS_ACT, backend=backend)
    if case.op == "softmax_cross_entropy":
        return lambda: fusedact.softmax_cross_entropy(x, inp["labels"], backend=backend)
    if case.direction == "forward":
        f = getattr(fusedact, base_op(op))
        return lambda: f(x, **p, backend=backend)
    f = getattr(fusedact, f"{base_op(op)}_backward")
    return lambda: f(g, s, **p, backend=backend)


def _torch(case, inp):
    try:
        import torch

        from . import _torchref
    except ImportError:
        return None
    op, p = case.op, _params(case.op)
    x, g = torch.from_numpy(inp["x"]), torch.from_numpy(inp["g"])
    s = torch.from_numpy(inp["saved"])
    if op == "maxout":
        xg = x.reshape(x.shape[0], -1, 2)
        if case.direction == "forward":
            return lambda: xg.amax(-1)
        return None  # no aten backward for a reshape + max; autograd would time the forward too
    if op == "bias_act":
        b = torch.from_numpy(inp["bias"])
        if case.direction == "forward":
            return lambda: torch.nn.functional.gelu(x + b)
        def bwd():
            gx = torch.ops.aten.gelu_backward(g, x + b)
            return gx, gx.sum(0)
        return bwd
    if op == "softmax_cross_entropy":
        labels = torch.from_numpy(inp["labels"])

        def sce():
            ls = torch.log_softmax(x, -1)
            loss = torch.nn.functional.nll_loss(ls, labels, reduction="none")
            grad = torch.ops.aten._log_softmax_backward_data(
                -torch.nn.functional.one_hot(labels, x.shape[-1]).to(x.dtype), ls, -1, x.dtype)
            return loss, grad
        return sce
    if case.direction == "forward":
        f = _torchref.forward_fn(base_op(op), p)
        return lambda: f(x)
    f = _torchref.backward_fn(base_op(op), p)
    return lambda: f(g, s)


def _quiet(fn):
    def call():
        with np.errstate(all="ignore"):
            return fn()
    return call


def contenders(case: Case, inp: dict, backends=None) -> dict:
    """{label: zero-argument callable} for one case, the copy baseline included."""
    out = {}
    for b in backends or fusedact.available_backends():
        if b == "cuda":
            continue
        instance = fusedact._dispatch._load(b)[0]
        if instance is not None and instance.has_kernel(base_op(case.op)):
            out[f"fusedact[{b}]"] = _fusedact(case, inp, b)
    x, g, s = inp["x"], inp["g"], inp["saved"]
    p = _params(case.op)
    if base_op(case.op) in ELEMENTWISE_OPS:
        if case.direction == "forward":
            out[NAIVE] = _naive_forward(case.op, x, p)
            if case.op == "sigmoid":
                from scipy.special import expit

                out["scipy expit"] = lambda: expit(x)
            if case.op == "tanh":
                out["exp-based tanh"] = lambda: (lambda a, b: (a - b) / (a + b))(np.exp(x), np.exp(-x))
        else:
            out[NAIVE] = _naive_backward(case.op, g, s, p)
    else:
        out[NAIVE] = _naive_axis(case, inp)
        if case.direction == "forward" and case.op in ("softmax", "log_softmax"):
            from scipy import special

            f = getattr(special, case.op)
            out[f"scipy {case.op}"] = lambda: f(x, axis=-1)
    # The naive formulas overflow on the +-100 data, as a user's would: time them without
    # the warnings (np.errstate costs about 1 us a call).
    for label in [k for k in out if not k.startswith("fusedact")]:
        out[label] = _quiet(out[label])
    t = _torch(case, inp)
    if t is not None:
        out["torch"] = t
    out[COPY] = _copy_baseline(case, x, g)
    return out


def _copy_baseline(case, x, g):
    """The streaming limit for the same arrays: a copy (forward: 1 read + 1 write) or an add
    (backward: 2 reads + 1 write), on as many threads as the kernels may use (the C
    extension's pool; NumPy's single-threaded copy where it is not built)."""
    buf = np.empty_like(x)
    two_inputs = not (case.direction == "forward" or case.op == "softmax_cross_entropy")
    gg = g if g.shape == x.shape else np.resize(g, x.shape)
    c = fusedact._dispatch._load("c")[0]
    if c is not None and c.lib is not None:
        from . import _threads

        lib, ffi = c.lib, c.ffi
        ctype = "float[]" if x.dtype == np.float32 else "double[]"
        px, pg = ffi.from_buffer(ctype, x), ffi.from_buffer(ctype, gg)
        pb = ffi.from_buffer(ctype, buf, True)
        add = lib.fa_add_f32 if x.dtype == np.float32 else lib.fa_add_f64
        if two_inputs:
            return lambda: add(pg, px, pb, x.size, _threads.get_num_threads())
        return lambda: lib.fa_copy(px, pb, x.nbytes, _threads.get_num_threads())
    if two_inputs:
        return lambda: np.add(gg, x, out=buf)
    return lambda: np.copyto(buf, x)


def bytes_moved(case: Case, inp: dict) -> int:
    """Bytes a one-pass kernel must move: 1 read + 1 write forward, 2 reads + 1 write back."""
    itemsize = inp["x"].dtype.itemsize
    streams = 2 if case.direction == "forward" or case.op == "softmax_cross_entropy" else 3
    return streams * inp["x"].size * itemsize


# ---- the stand-alone runner ----------------------------------------------------------------
def time_call(fn, min_time=0.02, repeats=5):
    """Median seconds per call over `repeats` rounds of about `min_time` each."""
    fn()  # warm up (JIT, page faults, thread pool start)
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_time / once))
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        rounds.append((time.perf_counter() - t0) / loops)
    return float(np.median(rounds))


def run(ops, dtypes, sizes, directions=("forward", "backward"), backends=None, data="normal",
        repeats=5, min_time=0.02, progress=True):
    cases = [Case(op, d, dt, n, data) for dt in dtypes for op in ops for d in directions
             for n in sizes if not (op == "softmax_cross_entropy" and d == "backward")]
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(cases), desc="benchmarking", unit="case", file=sys.stderr)
        except ImportError:
            bar = None
    results = []
    for i, case in enumerate(cases):
        inp = make_inputs(case)
        moved = bytes_moved(case, inp)
        times = {label: time_call(fn, min_time, repeats)
                 for label, fn in contenders(case, inp, backends).items()}
        elems = inp["x"].size
        for label, t in times.items():
            results.append({
                "op": case.op, "direction": case.direction, "dtype": case.dtype, "n": elems,
                "data": case.data, "contender": label, "median_s": t,
                "gelem_per_s": elems / t / 1e9, "gb_per_s": moved / t / 1e9,
                "pct_copy": 100.0 * times[COPY] / t,
                "vs_naive": times.get(NAIVE, float("nan")) / t,
                "vs_torch": times.get("torch", float("nan")) / t,
            })
        if bar is not None:
            bar.update(1)
        elif progress:
            sys.stderr.write(f"\r[{i + 1}/{len(cases)}] {case.label:<50}")
    if bar is not None:
        bar.close()
    elif progress:
        sys.stderr.write("\n")
    return results


def machine_line(threads) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = [f"numpy {np.__version__}", f"fusedact {fusedact.__version__}"]
    try:
        import torch

        versions.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        versions.append("torch not installed")
    return f"{cpu}, {os.cpu_count()} CPUs, {threads} thread(s); " + ", ".join(versions)


def format_tables(results, only=None) -> str:
    lines = []
    for dtype in sorted({r["dtype"] for r in results}):
        lines.append(f"\n### {dtype}\n")
        lines.append("| op | dir | n | contender | median µs | Gelem/s | GB/s | % copy BW "
                     "| × numpy naive | × torch |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            if r["dtype"] != dtype or (only and r["contender"] not in only):
                continue
            lines.append(
                f"| {r['op']} | {r['direction'][:3]} | {r['n']} | {r['contender']} "
                f"| {r['median_s'] * 1e6:.1f} | {r['gelem_per_s']:.3f} | {r['gb_per_s']:.2f} "
                f"| {r['pct_copy']:.0f} | {r['vs_naive']:.2f} | {_fmt(r['vs_torch'])} |")
    return "\n".join(lines)


def _fmt(v):
    return "-" if v != v else f"{v:.2f}"


# One colour per contender in every panel (the default cycle restarts per axis).
_COLORS = {"fusedact[c]": "tab:blue", "fusedact[numba]": "tab:cyan",
           "fusedact[numpy]": "tab:orange", NAIVE: "tab:green", "torch": "tab:red",
           "scipy expit": "tab:purple", "scipy softmax": "tab:purple",
           "scipy log_softmax": "tab:purple", "exp-based tanh": "tab:brown"}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel per op and direction, for one dtype (float32 when measured): 46 panels
    # already; both dtypes would double the figure.
    dtypes = sorted({r["dtype"] for r in results})
    dtype = "float32" if "float32" in dtypes else dtypes[0]
    results = [r for r in results if r["dtype"] == dtype]
    keys = sorted({(r["op"], r["direction"], r["dtype"]) for r in results})
    cols = 6
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        sel = [r for r in results if (r["op"], r["direction"], r["dtype"]) == key]
        for label in sorted({r["contender"] for r in sel}):
            pts = sorted((r["n"], r["gelem_per_s"]) for r in sel if r["contender"] == label)
            style = dict(color="black", linestyle="--", linewidth=2) if label == COPY else \
                dict(color=_COLORS.get(label, "gray"))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(" ".join(key), fontsize=8)
        ax.tick_params(labelsize=6)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    legend = {}
    for ax in axes.ravel()[:len(keys)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="upper center", ncol=8, fontsize=8)
    fig.supxlabel("elements")
    fig.supylabel("Gelem/s (log)")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=60)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fusedact bench",
        description="Throughput of every op against NumPy, SciPy, PyTorch and the copy "
                    "bandwidth of the same arrays. The default run takes about a minute.")
    parser.add_argument("--ops", nargs="*", default=list(BENCH_OPS), choices=BENCH_OPS,
                        metavar="OP")
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--dtypes", nargs="*", default=["float32", "float64"],
                        choices=["float32", "float64"])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1 << 20])
    parser.add_argument("--directions", nargs="*", default=["forward", "backward"],
                        choices=["forward", "backward"])
    parser.add_argument("--data", default="normal", choices=["normal", "wide"],
                        help="normal: N(0,1) x 3; wide: uniform +-100 (overflow paths)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fusedact and torch (default: all usable CPUs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.01, help="seconds per round")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="throughput vs size per op, with the copy line as the roofline")
    parser.add_argument("--markdown", metavar="FILE.md",
                        help="also write the tables, with the machine and command, as Markdown")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count())
    from . import _threads

    _threads.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    results = run(args.ops, args.dtypes, args.sizes, args.directions, args.backends, args.data,
                  args.repeats, args.min_time, progress=not args.no_progress)
    print(f"fusedact bench: {machine_line(threads)}")
    print("median of", args.repeats, "rounds; % copy BW = copy time / op time for the same "
          "arrays (1 read + 1 write forward, 2 reads + 1 write backward)")
    print(format_tables(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_line(threads), "results": results}, fh, indent=1)
    if args.plot:
        plot(results, args.plot)
        print(f"plot written to {args.plot}")
    if args.markdown:
        command = "python -m fusedact bench " + " ".join(argv if argv is not None else sys.argv[2:])
        with open(args.markdown, "w") as fh:
            fh.write(f"# Benchmarks\n\nMachine: {machine_line(threads)}\n\n"
                     f"Regenerate with `{command.strip()}`.\n\nMedian of {args.repeats} rounds "
                     "per cell; % copy BW = time of a copy of the same arrays on the same number "
                     "of threads (1 read + 1 write forward, 2 reads + 1 write backward) / time "
                     "of the op.\n")
            fh.write(format_tables(results) + "\n")
            if args.plot:
                fh.write(f"\n![throughput vs size]({os.path.basename(args.plot)})\n")
    return 0
