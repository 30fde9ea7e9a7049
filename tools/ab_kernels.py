"""Paired A/B timing of two builds of the C extension, in one process.

    cp src/fusedact/_fusedact_c.abi3.so /tmp/before.so   # before a change
    pip install --no-build-isolation -e .                # rebuild with the change
    python tools/ab_kernels.py /tmp/before.so src/fusedact/_fusedact_c.abi3.so

This machine's speed swings by 2x between runs and even between processes (the same build
timed 87 and 143 us for float32 sigmoid in two processes a minute apart), so comparing two
builds by swapping the .so between processes needed many alternations to say anything. Here
both builds are loaded with ctypes into one process (each .so under its own path, so the
loader keeps them apart), and every round times each case on both, back to back, through
the C API on one thread, the order alternating: a slow moment hits both sides of a pair. Reported per case: the
best and median of the rounds' best-of-`--calls` times, and in how many rounds B won.

Its floor: one build against a copy of itself (two paths) differed here by up to 3 % at the
median, B winning 1 of 10 rounds for softmax and 2 of 10 for sigmoid (where each .so's code
lands in the caches matters), so a change that moves a median by less than about 4 % is not
shown by this tool on this machine. Run the self-comparison first.
"""

from __future__ import annotations

import argparse
import ctypes
import time

import numpy as np

ROW_KINDS = {"softmax": 0, "log_softmax": 1, "softmax_bwd": 2, "log_softmax_bwd": 3}
MODES = {"fwd": 0, "bwd": 1, "der": 2}  # fa_elementwise's modes (fusedact.h)


def _pointer(a: np.ndarray) -> ctypes.c_void_p:
    return a.ctypes.data_as(ctypes.c_void_p)


class Build:
    """One built extension, loaded by path, with its kernels as zero-argument calls."""

    def __init__(self, path: str, dtype: np.dtype, n: int, cols: int, params=(0.0,) * 4,
                 seed: int = 0):
        self.lib = ctypes.CDLL(path)
        self.lib.fa_op_name.restype = ctypes.c_char_p
        self.ops = {self.lib.fa_op_name(i).decode(): i for i in range(self.lib.fa_op_count())}
        self.suffix = "f32" if dtype == np.float32 else "f64"
        rng = np.random.default_rng(seed)
        # N(0, 3): the benchmarks' inputs, reaching every branch of the exp-based kernels
        self.x = (rng.standard_normal(n) * 3).astype(dtype)
        self.g = rng.standard_normal(n).astype(dtype)
        self.y = np.empty_like(self.x)
        self.y2 = np.empty_like(self.x)
        self.n, self.cols = n, cols
        self.params = (ctypes.c_double * 4)(*params)

    def call(self, case: str):
        name, _, kind = case.partition(":")
        if name in ROW_KINDS:
            f = getattr(self.lib, "fa_rows_" + self.suffix)
            k = ROW_KINDS[name]
            g = _pointer(self.g) if k >= 2 else None
            x, y = _pointer(self.x), _pointer(self.y)
            rows = ctypes.c_int64(self.n // self.cols)
            cols = ctypes.c_int64(self.cols)
            return lambda: f(k, x, g, y, rows, cols, 1)
        if name not in self.ops:
            raise SystemExit(f"unknown op {name!r}: expected one of {sorted(self.ops)} "
                             f"or {sorted(ROW_KINDS)}")
        f = getattr(self.lib, "fa_elementwise_" + self.suffix)
        mode = MODES[kind or "fwd"]
        a, b = (self.g, self.x) if mode == 1 else (self.x, None)
        args = (self.ops[name], mode, _pointer(a), _pointer(b) if b is not None else None,
                _pointer(self.y), _pointer(self.y2), ctypes.c_int64(self.n), self.params, 1)
        return lambda: f(*args)


def best_of(f, calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e6


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="the .so before (a copy: the build overwrites the original)")
    p.add_argument("b", help="the .so after")
    p.add_argument("--cases", nargs="+",
                   default=["sigmoid", "tanh", "silu", "gelu", "gelu_tanh", "silu:bwd",
                            "sigmoid:der", "softmax", "log_softmax"],
                   help="op[:fwd|bwd|der] of the elementwise catalogue, or a row kind "
                        f"({', '.join(ROW_KINDS)})")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--n", type=int, default=262144)
    p.add_argument("--cols", type=int, default=1024, help="row length of the row kinds")
    p.add_argument("--params", type=float, nargs=4, default=[0.0] * 4,
                   help="the elementwise ops' parameter block, in catalogue order (e.g. swish's "
                        "beta first); zeros by default")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=30, help="calls per timing (best of)")
    args = p.parse_args(argv)
    if args.n % args.cols:
        raise SystemExit(f"--n ({args.n}) must be a multiple of --cols ({args.cols})")
    dtype = np.dtype(args.dtype)
    builds = [Build(path, dtype, args.n, args.cols, args.params) for path in (args.a, args.b)]
    calls = {case: [bd.call(case) for bd in builds] for case in args.cases}
    times = {case: ([], []) for case in args.cases}
    for r in range(args.rounds):
        for case, (fa, fb) in calls.items():
            if r % 2:  # alternate which build goes first: a drift within a pair cancels
                tb = best_of(fb, args.calls)
                times[case][0].append(best_of(fa, args.calls))
                times[case][1].append(tb)
            else:
                times[case][0].append(best_of(fa, args.calls))
                times[case][1].append(best_of(fb, args.calls))
    print(f"{args.dtype}, n = {args.n}, one thread, {args.rounds} rounds of best-of-{args.calls} "
          f"(us); A = {args.a}, B = {args.b}")
    for case, (ta, tb) in times.items():
        wins = sum(b < a for a, b in zip(ta, tb))
        print(f"{case:16s} A min {min(ta):8.1f} med {np.median(ta):8.1f} | "
              f"B min {min(tb):8.1f} med {np.median(tb):8.1f} | B/A med "
              f"{np.median(tb) / np.median(ta):5.3f} | B faster in {wins}/{args.rounds}")


if __name__ == "__main__":
    main()
