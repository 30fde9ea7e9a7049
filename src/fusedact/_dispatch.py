"""Which backend runs a call.

Selection, highest first (SPEC section 4):

1. the ``backend=`` keyword of the call;
2. ``fusedact.use_backend(name)``, a thread-local context manager;
3. the environment variable ``FUSEDACT_BACKEND``, read once at import;
4. ``auto``: device arrays go to ``cuda``; host arrays to ``c``, else ``numba``, else ``numpy``
   (per operation: the first of these that is available and has that kernel).

An explicit request (keyword, context manager or env var) for a backend that is unknown,
unavailable or lacks the kernel raises; it never falls back silently. An unknown value of
``FUSEDACT_BACKEND`` is reported at the first call rather than at import, so that
``import fusedact`` and ``python -m fusedact info`` still work and can show what is wrong.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading

from numpy import ndarray

from .backends._base import Backend, BackendUnavailable

try:  # the c backend's C-API entry (csrc/pyext/fastpath.c)
    from . import _fastpath
except ImportError:  # built without it: nothing to route
    _fastpath = None

AUTO = "auto"
# Order matters: it is auto's order of preference for host arrays.
_FACTORIES = {
    "c": ("fusedact.backends.c_backend", "CBackend"),
    "numba": ("fusedact.backends.numba_backend", "NumbaBackend"),
    "cuda": ("fusedact.backends.cuda_backend", "CudaBackend"),
    "numpy": ("fusedact.backends.numpy_backend", "NumpyBackend"),
}
_HOST_PREFERENCE = ("c", "numba", "numpy")

_lock = threading.Lock()
_instances: dict[str, Backend] = {}
_status: dict[str, tuple] = {}
# Backends whose probe found a bad setting (an environment variable it reads): `auto` stops
# at them with that message instead of passing over them to the next backend.
_config_errors: dict[str, str] = {}


class BackendConfigError(ValueError):
    """Raised by a backend's probe for a setting it cannot use (FUSEDACT_SIMD=sse9)."""


class _ThreadState(threading.local):
    # A class attribute, so a thread that never entered use_backend() reads () at once:
    # getattr(local, name, default) on a missing name costs ~0.4 us through AttributeError.
    stack = ()


_local = _ThreadState()

ENV_BACKEND = os.environ.get("FUSEDACT_BACKEND", "").strip().lower() or AUTO


def register_backend(name: str, module: str, cls: str, *, host_preference: int | None = None):
    """Plug a backend in: ``module.cls()`` is built on first use and probed once."""
    global _HOST_PREFERENCE
    with _lock:
        _FACTORIES[name] = (module, cls)
        _instances.pop(name, None)
        _status.pop(name, None)
        _config_errors.pop(name, None)
        _auto_host_cache.clear()
        _env_cache.clear()
        _keyword_cache.clear()
        if _fastpath is not None:
            _fastpath.unbind_all()  # the choices it was given may not hold any more
        if host_preference is not None:
            order = [n for n in _HOST_PREFERENCE if n != name]
            order.insert(host_preference, name)
            _HOST_PREFERENCE = tuple(order)


def backend_names() -> tuple:
    return tuple(_FACTORIES)


def _load(name: str):
    """Build and probe a backend once; return (instance or None, available, reason)."""
    if name in _status:
        return _instances.get(name), *_status[name]
    with _lock:
        if name in _status:
            return _instances.get(name), *_status[name]
        module, cls = _FACTORIES[name]
        instance = None
        try:
            instance = getattr(importlib.import_module(module), cls)()
            available, reason = instance.probe()
        except ImportError as exc:
            instance, available, reason = None, False, f"cannot import: {exc}"
        except BackendConfigError as exc:
            available, reason = False, str(exc)
            _config_errors[name] = reason
        if instance is not None:
            _instances[name] = instance
        _status[name] = (available, reason)
        return instance, available, reason


def backend_status() -> dict:
    """{name: (available, reason)} for every registered backend (probing each once)."""
    return {name: _load(name)[1:] for name in _FACTORIES}


def available_backends() -> list:
    """Names of the backends that can run in this process."""
    return [name for name, (ok, _) in backend_status().items() if ok]


def _check_name(name: str, origin: str) -> str:
    name = str(name).strip().lower()
    if name != AUTO and name not in _FACTORIES:
        raise ValueError(
            f"unknown backend {name!r} ({origin}); valid names: "
            f"{', '.join((AUTO,) + tuple(_FACTORIES))}"
        )
    return name


def requested_backend() -> tuple:
    """(name, origin) of the selection in force for this thread, keyword aside."""
    stack = _local.stack
    if stack:
        return stack[-1], "use_backend()"
    return ENV_BACKEND, "FUSEDACT_BACKEND" if ENV_BACKEND != AUTO else "default"


def get_backend() -> str:
    """The backend name in force for this thread: a name, or 'auto'."""
    name, origin = requested_backend()
    return _check_name(name, origin)


@contextlib.contextmanager
def use_backend(name: str):
    """Run the calls of this thread inside the ``with`` block on backend ``name``.

    >>> with fusedact.use_backend("numpy"):
    ...     y = fusedact.gelu(x)
    """
    name = _check_name(name, "use_backend()")
    if name != AUTO:
        _require(name, None, "use_backend()")
    stack = _local.stack
    if stack == ():
        stack = _local.stack = []
    stack.append(name)
    # The C-API entry routes calls without asking this module, so it stands aside
    # while any thread is inside a use_backend() block.
    if _fastpath is not None:
        _fastpath.suspend(1)
    try:
        yield name
    finally:
        stack.pop()
        if _fastpath is not None:
            _fastpath.suspend(-1)


def _require(name: str, op_name, origin: str) -> Backend:
    instance, available, reason = _load(name)
    if not available:
        raise BackendUnavailable(
            f"backend {name!r} ({origin}) is not available: {reason}. "
            f"Available: {', '.join(available_backends())}"
        )
    if op_name is not None and not instance.has_kernel(op_name):
        raise BackendUnavailable(
            f"backend {name!r} ({origin}) has no kernel for {op_name!r} yet; "
            f"backends that do: {', '.join(n for n in available_backends() if _load(n)[0].has_kernel(op_name))}"
        )
    return instance


def _is_device_array(a) -> bool:
    if type(a) is ndarray:  # the common case: hasattr on a missing name costs ~0.3 us
        return False
    # __cuda_ndarray__ marks Numba's device arrays, including the simulator's, which wrap a
    # NumPy array and so also answer to __array_interface__.
    return getattr(a, "__cuda_ndarray__", False) or (
        hasattr(a, "__cuda_array_interface__") and not hasattr(a, "__array_interface__"))


_auto_host_cache: dict = {}  # op -> auto's backend for host arrays
_env_cache: dict = {}  # (FUSEDACT_BACKEND, op) -> its backend, for host arrays
_keyword_cache: dict = {}  # (backend= name, op) -> an available host backend


def resolve(keyword, op_name: str, probe_array) -> Backend:
    """The backend that runs op_name for this call."""
    if keyword is None and not _local.stack:
        # The common case, kept short: a small call costs a few microseconds in all. Under
        # FUSEDACT_BACKEND the name is checked, loaded and asked for the op once too (1.7 ->
        # 0.1 us a call: numba's sigmoid on 1,024 float32 took 6.0 us in all).
        cached = (_auto_host_cache.get(op_name) if ENV_BACKEND == AUTO
                  else _env_cache.get((ENV_BACKEND, op_name)))
        if cached is not None and not _is_device_array(probe_array):
            return cached
    if keyword is not None:
        if type(keyword) is str:  # backend="c" on a host array: 0.4 us of checks saved
            hit = _keyword_cache.get((keyword, op_name))
            if hit is not None and not _is_device_array(probe_array):
                return hit
        name, origin = _check_name(keyword, "backend= keyword"), "backend= keyword"
        if name not in (AUTO, "cuda"):
            instance = _require(name, op_name, origin)
            _keyword_cache[(keyword, op_name)] = instance
            _route_to_entry(instance, op_name, keyword=True)
            return instance
    else:
        name, origin = requested_backend()
        name = _check_name(name, origin)
    # The process-wide choice (FUSEDACT_BACKEND or auto), not this call's or this thread's:
    # only that may be handed to the C-API entry.
    process_wide = keyword is None and not _local.stack
    if name != AUTO:
        instance = _require(name, op_name, origin)
        if process_wide:
            if not _is_device_array(probe_array):
                _env_cache[(name, op_name)] = instance
            _route_to_entry(instance, op_name)
        return instance
    if _is_device_array(probe_array):
        return _require("cuda", op_name, "auto, for a device array")
    for candidate in _HOST_PREFERENCE:
        instance, available, _ = _load(candidate)
        _check_config(candidate)
        if available and instance.has_kernel(op_name):
            if process_wide:  # the only case that reads the cache back
                _auto_host_cache[op_name] = instance
                _route_to_entry(instance, op_name)
            return instance
    raise BackendUnavailable(f"no backend has a kernel for {op_name!r}")  # numpy has all


def _route_to_entry(instance, op_name, keyword=False):
    bind = getattr(instance, "bind_entry", None)  # the c backend has it
    if bind is not None:
        bind(op_name, keyword)


def _check_config(candidate):
    """auto stops at a backend with a bad setting rather than pass over it silently."""
    if candidate in _config_errors:
        raise BackendConfigError(
            f"{_config_errors[candidate]} (auto would otherwise pass over the {candidate} "
            "backend: fix or unset the variable)")


def auto_host_choice(op_name: str = "sigmoid") -> str:
    for candidate in _HOST_PREFERENCE:
        instance, available, _ = _load(candidate)
        _check_config(candidate)
        if available and instance.has_kernel(op_name):
            return candidate
    return "numpy"
