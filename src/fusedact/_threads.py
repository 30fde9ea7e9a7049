"""How many CPU threads the compiled backends may use.

Default: the CPUs this process may run on (its affinity mask, as a container or taskset
sets it), capped by ``FUSEDACT_NUM_THREADS`` when that is set. Backends read
``get_num_threads()`` at each call, so ``set_num_threads`` takes effect at once.
"""

from __future__ import annotations

import os

try:  # the c backend's C-API entry keeps its own copy of the count
    from . import _fastpath
except ImportError:
    _fastpath = None


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _from_env() -> int:
    cpus = _usable_cpus()
    raw = os.environ.get("FUSEDACT_NUM_THREADS", "").strip()
    if not raw:
        return cpus
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"FUSEDACT_NUM_THREADS={raw!r} is not a positive integer") from None
    if value < 1:
        raise ValueError(f"FUSEDACT_NUM_THREADS={raw!r} is not a positive integer")
    return min(value, cpus)


_num_threads = None


def get_num_threads() -> int:
    global _num_threads
    if _num_threads is None:
        _set(_from_env())
    return _num_threads


def _set(n: int) -> None:
    global _num_threads
    _num_threads = n
    if _fastpath is not None:
        _fastpath.set_threads(n)


def set_num_threads(n: int) -> None:
    """Use at most n threads (at least 1) in the compiled backends from now on."""
    if int(n) < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {n!r}")
    _set(int(n))
