"""The cuda backend on a real GPU: correctness of every op and its throughput, in one table.

    python bench/gpu_check.py            # ~2-3 minutes on an H100/H200, most of it compiling

Correctness: every op on 1,048,576 float32 elements (the adversarial values, then a sweep of
the op's domain) on the device, against the ``numpy`` backend (float64 inside, rounded once):
the largest error in float32 ULP (forward), or in SPEC's mixed units |err| / (ulp + eps|g|)
(backward); softmax-family ops on (256, 4096), maxout, bias_act and softmax_cross_entropy too.

Throughput: every op forward and backward on 67,108,864 float32 elements (64M), device arrays
in and ``out=`` preallocated; the time of `--repeats` calls queued back to back between two
CUDA events, divided by the count (the GPU, not Python's launch overhead, is then the
bottleneck). "% copy" is bytes moved (forward 1 read + 1 write, backward 2 + 1) over the time,
divided by the bandwidth of a device-to-device copy of the same array measured in the same run.
PyTorch CUDA (``torch.nn.functional`` forward, the aten backward ops) when importable.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np


def ulp32(v):
    v = np.abs(v.astype(np.float64))
    tiny = float(np.finfo(np.float32).tiny)
    return np.maximum(np.spacing(np.maximum(v, tiny).astype(np.float32)).astype(np.float64),
                      float(np.finfo(np.float32).smallest_subnormal))


def ulp_diff(got, want, grad=None):
    """Largest |got - want| in float32 ULP of want (or SPEC's mixed unit when grad is given);
    NaN where the other is not NaN, or an infinity that differs, counts as inf. Below the
    smallest normal an error of up to one smallest normal counts as none (SPEC section 5:
    flush to zero is allowed; the float32 kernels flush e^x under it, as the C ones do)."""
    got, want = got.astype(np.float64), want.astype(np.float64)
    tiny = float(np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        flushed = (np.abs(want) < tiny) & (np.abs(got - want) <= tiny)
    same = (got == want) | (np.isnan(got) & np.isnan(want)) | flushed
    bad_special = ~same & (~np.isfinite(got) | ~np.isfinite(want))
    unit = ulp32(want)
    if grad is not None:
        unit = unit + np.finfo(np.float32).eps * np.abs(grad.astype(np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(same, 0.0, np.abs(got - want) / unit)
    err[bad_special] = np.inf
    return float(err.max()) if err.size else 0.0


def test_values(domain, n, seed=0):
    lo, hi = domain
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1.2e-38, -1.2e-38,
                        3.4e38, -3.4e38, 88.5, -88.5, -104.0, 20.0, 20.5, 3.0, -3.0, 6.0, -6.0,
                        1e-8, -1e-8], np.float32)
    rng = np.random.default_rng(seed)
    half = (n - special.size) // 2
    return np.concatenate([special, np.linspace(lo, hi, half, dtype=np.float32),
                           rng.uniform(lo, hi, n - special.size - half).astype(np.float32)])


class Timer:
    def __init__(self, cuda, torch):
        self.cuda, self.torch = cuda, torch

    def __call__(self, fn, repeats, use_torch=False):
        """Milliseconds a call: `repeats` calls queued between two events of the library that
        launches them (PyTorch's stream for torch, Numba's default stream for fusedact)."""
        fn()
        fn()  # compiled and warm
        if use_torch:
            self.torch.cuda.synchronize()
            start, end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
        else:
            self.cuda.synchronize()
            start, end = self.cuda.event(), self.cuda.event()
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / repeats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-size", type=int, default=1 << 20)
    ap.add_argument("--bench-size", type=int, default=1 << 26)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--ops", nargs="*", default=None, help="elementwise ops (default: all)")
    ap.add_argument("--dry-run-on-simulator", action="store_true",
                    help="let the script run on Numba's CUDA simulator (use tiny sizes): checks "
                         "the script, not the GPU")
    args = ap.parse_args(argv)

    import fusedact
    from fusedact import OPS, ELEMENTWISE_OPS

    ok, why = fusedact._dispatch.backend_status()["cuda"]
    be = fusedact._dispatch._load("cuda")[0]
    if not ok or (be.simulator and not args.dry_run_on_simulator):
        print(f"gpu_check needs a GPU: the cuda backend says: {why}")
        return 2
    from numba import cuda

    try:
        import torch

        from fusedact import _torchref as tref

        have_torch = torch.cuda.is_available()
    except ImportError:
        torch, tref, have_torch = None, None, False
    timer = Timer(cuda, torch)
    print(f"# fusedact {fusedact.__version__} gpu_check: {be.describe()['device']}, "
          f"numba-cuda {be.describe()['numba-cuda']}, torch "
          f"{torch.__version__ if torch else 'absent'}, Python {platform.python_version()}",
          flush=True)

    n_check, n_bench, reps = args.check_size, args.bench_size, args.repeats
    rows = []
    failures = 0

    def row(op, direction, err, limit, t_ms, moved, t_torch):
        nonlocal failures
        good = err <= limit
        failures += not good
        gbs = moved / (t_ms * 1e6) if t_ms else float("nan")
        rows.append((op, direction, err, "ok" if good else "FAIL", t_ms, gbs,
                     100 * gbs / copy_gbs, t_torch, (t_torch / t_ms) if t_torch else None))
        r = rows[-1]
        print(_fmt_row(r), flush=True)

    # The copy the percentages are taken against: device-to-device, 1 read + 1 write.
    xb = cuda.device_array(n_bench, np.float32)
    yb = cuda.device_array(n_bench, np.float32)
    gb = cuda.to_device(np.random.default_rng(1).standard_normal(n_bench).astype(np.float32))
    xb.copy_to_device(gb)
    t_copy = timer(lambda: yb.copy_to_device(xb), reps)
    copy_gbs = 8 * n_bench / (t_copy * 1e6)
    print(f"# device-to-device copy of {n_bench:,} float32: {t_copy:.3f} ms, {copy_gbs:.0f} GB/s "
          f"(read + write)\n", flush=True)
    print(_HEADER, flush=True)

    t0 = time.time()
    for name in args.ops or ELEMENTWISE_OPS:
        spec = OPS[name]
        variants = [spec.defaults()]
        if name == "gelu":
            variants.append({"approximate": "tanh"})
        for p in variants:
            label = name + ("(tanh)" if p.get("approximate") == "tanh" else "")
            fn, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
            x = test_values(spec.domain, n_check)
            dx = cuda.to_device(x)
            y = fn(dx, **p).copy_to_host()
            err_f = ulp_diff(y, fn(x, **p, backend="numpy"))
            saved = y if spec.saved == "y" else x
            g = np.random.default_rng(2).standard_normal(n_check).astype(np.float32)
            gi = bwd(cuda.to_device(g), cuda.to_device(saved), **p).copy_to_host()
            err_b = ulp_diff(gi, bwd(g, saved, **p, backend="numpy"), grad=g)
            # throughput
            t_f = timer(lambda: fn(xb, **p, out=yb), reps)
            t_b = timer(lambda: bwd(gb, xb, **p, out=yb), reps)
            tt_f = tt_b = None
            if have_torch:
                xt, gt = torch.as_tensor(xb, device="cuda"), torch.as_tensor(gb, device="cuda")
                tt_f = timer(lambda: tref.forward(name, xt, p), reps, use_torch=True)
                if name not in ("swish", "softsign"):  # autograd there, not one kernel
                    tt_b = timer(lambda: tref.backward(name, gt, xt, p), reps, use_torch=True)
            row(label, "forward", err_f, 3.0, t_f, 8 * n_bench, tt_f)
            row(label, "backward", err_b, 4.0, t_b, 12 * n_bench, tt_b)

    # Along an axis and fused, on rows of 4096.
    cols = 4096
    r_check, r_bench = max(1, n_check // cols), max(1, n_bench // cols)
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((r_check, cols)) * 4).astype(np.float32)
    gz = rng.standard_normal((r_check, cols)).astype(np.float32)
    zb, yb2, gb2 = (a.reshape(r_bench, cols) for a in (xb, yb, gb))
    for name in ("softmax", "log_softmax"):
        fn, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
        y = fn(cuda.to_device(z)).copy_to_host()
        err_f = ulp_diff(y, fn(z, backend="numpy"))
        gi = bwd(cuda.to_device(gz), cuda.to_device(y)).copy_to_host()
        err_b = ulp_diff(gi, bwd(gz, y, backend="numpy"), grad=gz)
        t_f = timer(lambda: fn(zb, out=yb2), reps)
        ys = fn(zb)
        t_b = timer(lambda: bwd(gb2, ys, out=yb2), reps)
        tt_f = tt_b = None
        if have_torch:
            zt, gt, yt = (torch.as_tensor(a, device="cuda") for a in (zb, gb2, ys))
            tt_f = timer(lambda: tref.forward(name, zt, {}), reps, use_torch=True)
            tt_b = timer(lambda: tref.backward(name, gt, yt, {}), reps, use_torch=True)
        row(f"{name} rows {cols}", "forward", err_f, 3.0, t_f, 8 * n_bench, tt_f)
        row(f"{name} rows {cols}", "backward", err_b, 4.0, t_b, 12 * n_bench, tt_b)

    pieces = 4
    y = fusedact.maxout(cuda.to_device(z), pieces).copy_to_host()
    err = ulp_diff(y, fusedact.maxout(z, pieces, backend="numpy"))
    ym = cuda.device_array((r_bench, cols // pieces), np.float32)
    t_f = timer(lambda: fusedact.maxout(zb, pieces, out=ym), reps)
    tt = None
    if have_torch:
        zt = torch.as_tensor(zb, device="cuda")
        tt = timer(lambda: zt.view(r_bench, cols // pieces, pieces).amax(-1), reps, use_torch=True)
    row(f"maxout pieces={pieces}", "forward", err, 0.0, t_f, 5 * n_bench, tt)

    b = rng.standard_normal(cols).astype(np.float32)
    y = fusedact.bias_act(cuda.to_device(z), b, "gelu").copy_to_host()
    err = ulp_diff(y, fusedact.bias_act(z, b, "gelu", backend="numpy"))
    db = cuda.to_device(b)
    t_f = timer(lambda: fusedact.bias_act(zb, db, "gelu", out=yb2), reps)
    gxd, gbd = fusedact.bias_act_backward(cuda.to_device(gz), cuda.to_device(z), db, "gelu")
    hx, hb = fusedact.bias_act_backward(gz, z, b, "gelu", backend="numpy")
    err_b = ulp_diff(gxd.copy_to_host(), hx, grad=gz)
    gb_rel = float(np.max(np.abs(gbd.copy_to_host() - hb) / np.maximum(np.abs(hb), 1.0)))
    print(f"# bias_act_backward grad_bias: max |err| / max(|sum|, 1) = {gb_rel:.2e} "
          f"(float32 sums of {r_check} rows)", flush=True)
    out_gb = cuda.device_array(cols, np.float32)
    t_b = timer(lambda: fusedact.bias_act_backward(gb2, zb, db, "gelu", out=(yb2, out_gb)), reps)
    tt_f = tt_b = None
    if have_torch:
        zt, bt, gt = (torch.as_tensor(a, device="cuda") for a in (zb, db, gb2))
        tt_f = timer(lambda: torch.nn.functional.gelu(zt + bt), reps, use_torch=True)

        def torch_bias_bwd():
            gx = torch.ops.aten.gelu_backward(gt, zt + bt)
            return gx, gx.sum(0)

        tt_b = timer(torch_bias_bwd, reps, use_torch=True)
    row("bias_act gelu", "forward", err, 3.0, t_f, 8 * n_bench, tt_f)
    row("bias_act gelu", "backward", err_b, 4.0, t_b, 12 * n_bench, tt_b)

    labels = rng.integers(0, cols, r_check)
    loss, grad = fusedact.softmax_cross_entropy(cuda.to_device(z), labels)
    hl, hg = fusedact.softmax_cross_entropy(z, labels, backend="numpy")
    err = max(ulp_diff(loss.copy_to_host(), hl), ulp_diff(grad.copy_to_host(), hg))
    # NumPy labels: each call copies them over (r_bench int64, 1/4096 of the logits' bytes);
    # device labels would be copied back to the host for the range check instead.
    lab_b = rng.integers(0, cols, r_bench)
    out_l = cuda.device_array(r_bench, np.float32)
    t_f = timer(lambda: fusedact.softmax_cross_entropy(zb, lab_b, out=(out_l, yb2)), reps)
    tt = None
    if have_torch:
        zt, lt = torch.as_tensor(zb, device="cuda"), torch.as_tensor(lab_b, device="cuda")

        def torch_xent():
            loss = torch.nn.functional.cross_entropy(zt, lt, reduction="none")
            return loss, torch.softmax(zt, -1)

        tt = timer(torch_xent, reps, use_torch=True)
    row("softmax_cross_entropy", "fused", err, 4.0, t_f, 8 * n_bench, tt)

    print(f"\n# {len(rows)} rows, {failures} over the accuracy limit; "
          f"{time.time() - t0:.0f} s after the copy baseline", flush=True)
    return 1 if failures else 0


_HEADER = ("| op | direction | max err (ULP / mixed units) | accuracy | fusedact ms | GB/s | "
           "% of copy | torch ms | x torch |\n|---|---|---|---|---|---|---|---|---|")


def _fmt_row(r):
    op, direction, err, verdict, t, gbs, pct, tt, ratio = r
    return (f"| {op} | {direction} | {err:.2f} | {verdict} | {t:.3f} | {gbs:.0f} | {pct:.0f}% | "
            f"{'-' if tt is None else f'{tt:.3f}'} | {'-' if ratio is None else f'{ratio:.2f}'} |")


if __name__ == "__main__":
    sys.exit(main())
