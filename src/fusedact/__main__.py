"""Command line: ``python -m fusedact info | bench | accuracy``."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "?")
    except ImportError:
        return "not installed"


def info(stream=sys.stdout) -> int:
    import fusedact
    from fusedact import _dispatch

    w = stream.write
    w(f"fusedact {fusedact.__version__}\n")
    w(f"python {platform.python_version()} on {platform.machine()} ({platform.system()})\n")
    w("backends:\n")
    for name, (ok, reason) in fusedact.backend_status().items():
        w(f"  {name:<6} {'available' if ok else 'unavailable':<12} {reason}\n")
        instance = _dispatch._load(name)[0]
        if instance is not None:
            for key, value in instance.describe().items():
                w(f"         {key}: {value}\n")
    try:
        selected = fusedact.get_backend()
        problem = ""
    except ValueError as exc:
        selected, problem = "invalid", f" ({exc})"
    origin = _dispatch.requested_backend()[1]
    chosen = selected
    if selected == "auto":
        try:
            chosen = f"auto -> {_dispatch.auto_host_choice()} for host arrays"
        except ValueError as exc:
            chosen, problem = "auto", f" ({exc})"
    w(f"selected: {chosen} (from {origin}){problem}\n")
    w(f"FUSEDACT_BACKEND={os.environ.get('FUSEDACT_BACKEND', '')!r} "
      f"FUSEDACT_NUM_THREADS={os.environ.get('FUSEDACT_NUM_THREADS', '')!r} "
      f"FUSEDACT_SIMD={os.environ.get('FUSEDACT_SIMD', '')!r} "
      f"FUSEDACT_STREAM_MIN_MB={os.environ.get('FUSEDACT_STREAM_MIN_MB', '')!r} "
      f"FUSEDACT_OUTPUT_CACHE_MB={os.environ.get('FUSEDACT_OUTPUT_CACHE_MB', '')!r}\n")
    w(f"cpus usable: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}\n")
    w("libraries: " + ", ".join(f"{m} {_version(m)}" for m in
                                 ("numpy", "scipy", "cffi", "numba", "numba_cuda", "dask",
                                  "torch")) + "\n")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # bench and accuracy own their options; hand them the rest untouched.
    if argv and argv[0] == "bench":
        from ._bench import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "accuracy":
        from ._accuracy import main as accuracy_main

        return accuracy_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m fusedact", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends and why not, CPU features, threads")
    sub.add_parser("bench", help="throughput table against NumPy and PyTorch (see bench -h)")
    sub.add_parser("accuracy", help="max error per op, dtype and backend (see accuracy -h)")
    parser.parse_args(argv)
    return info()


if __name__ == "__main__":
    sys.exit(main())
