"""The public functions, generated from the catalogue, and the input rules of SPEC section 3.

Every public function does the same four things before a backend sees anything:

1. turn array-likes into ndarrays and pick the dtypes: float32/float64 kept, float16 computed
   in float32 and rounded back, integers and bools widened to float64 (as NumPy's ufuncs do),
   anything else a TypeError naming the dtype;
2. check ``out`` (exact shape and dtype, writable) and decide where the kernel writes: into
   ``out`` itself when it is the input (in place) or shares no memory with the inputs, else
   into a fresh array copied into ``out`` afterwards, so any overlap gives the result a fresh
   array would;
3. pick the backend (``fusedact._dispatch``);
4. return ``out`` (or the new array), a NumPy scalar for a 0-d result as a ufunc does.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import _dispatch

try:  # a dependency of the C backend; without it outputs are plain np.empty_like
    from cffi import FFI as _FFI

    _CFFI = _FFI()
except ImportError:  # pragma: no cover - cffi is in the install requirements
    _CFFI = None
from ._catalogue import AXIS, ELEMENTWISE, OPS, REQUIRED

_SUPPORTED = "float16, float32, float64 (integers and bool are widened to float64)"


# ---- input rules -----------------------------------------------------------------------
_NATIVE_FLOATS = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}


def _result_dtype(dtype: np.dtype, op: str, arg: str) -> np.dtype:
    if dtype in _NATIVE_FLOATS:
        return dtype
    kind = dtype.kind
    if kind == "f" and dtype.itemsize in (2, 4, 8):
        return np.dtype(dtype.type)  # native byte order
    if kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(f"{op}: {arg} has dtype {dtype}, which is not supported; expected {_SUPPORTED}")


_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)


def _compute_dtype(result: np.dtype) -> np.dtype:
    return _FLOAT32 if result == _FLOAT16 else result


def _as_array(a, op: str, arg: str) -> np.ndarray:
    if type(a) is np.ndarray or isinstance(a, np.ndarray):
        return a
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{op}: {arg} is not array-like: {exc}") from None


# float16 <-> float32 by the C extension's conversions (F16C where the CPU has it) when it is
# built, for C-contiguous arrays of this many elements or more: NumPy's casts go an element at
# a time. float16, one thread, NumPy's casts / these: softmax of 8 x 21 x 64 x 64 along axis
# 1 5.5-5.8 / 1.2 ms, bias_act with gelu on 256 x 1024 2.2 / 0.47, log_softmax on 256 x
# 1024 2.1 / 0.44 (the float32 calls: 1.0, 0.26, 0.2). The same values (tests/test_c_backend.py checks every half and the
# midpoints); a NaN stays a NaN of its sign. Below the limit a cast costs less than the call.
_HALF_C_MIN = 4096
_half_c = []  # [(ffi, lib)] once looked up, [None] without the extension


def _half_lib():
    if not _half_c:
        try:
            from . import _fusedact_c

            _fusedact_c.lib.fa_f16_to_f32  # noqa: B018 - an older build may lack them
            _half_c.append((_fusedact_c.ffi, _fusedact_c.lib))
        except (ImportError, AttributeError):
            _half_c.append(None)
    return _half_c[0]


def _half_ready(a: np.ndarray, dtype: np.dtype) -> bool:
    return (a.dtype == dtype and a.size >= _HALF_C_MIN and a.flags.c_contiguous
            and a.flags.aligned and _half_lib() is not None)


def _to_compute(a: np.ndarray, compute: np.dtype) -> np.ndarray:
    """a as a native-endian array of the compute dtype; a copy only if needed."""
    if a.dtype == compute:  # == is False for a byte-swapped dtype
        return a
    if compute == _FLOAT32 and _half_ready(a, _FLOAT16):
        ffi, lib = _half_lib()
        wide = np.empty(a.shape, _FLOAT32)
        lib.fa_f16_to_f32(ffi.from_buffer("uint16_t[]", a.reshape(-1).view(np.uint16)),
                          ffi.from_buffer("float[]", wide, True), a.size)
        return wide
    return a.astype(compute)


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
        and a.dtype == b.dtype
    )


def _check_out(out, shape, dtype: np.dtype, op: str, name: str = "out") -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{op}: {name} is read-only")
    return out


class _Target:
    """Where a kernel writes one result: ``out`` itself or a scratch array."""

    __slots__ = ("out", "buffer")

    def __init__(self, out, shape, result, compute, inputs, like, in_place_ok=True):
        self.out = out
        if out is None:
            self.buffer = _empty(shape, compute, like)
        elif out.dtype == compute and all(
            # Cheapest test first: may_share_memory compares address bounds, _same_view
            # builds __array_interface__ dicts (1024 floats with out=: 8.4 -> 2.9 us a call).
            (out is a and in_place_ok) or not np.may_share_memory(out, a)
            or (in_place_ok and _same_view(out, a))
            for a in inputs
        ):
            self.buffer = out
        else:
            self.buffer = _empty(shape, compute, like)

    def result(self, result_dtype, scalar):
        if self.out is not None:
            if self.buffer is not self.out:
                _copy_rounding(self.out, self.buffer)
            return self.out
        r = self.buffer
        if r.dtype != result_dtype:
            r = np.empty_like(r, dtype=result_dtype)
            _copy_rounding(r, self.buffer)
        return r[()] if scalar else r


def _copy_rounding(dst, src):
    """dst[...] = src; rounding float32 to float16 overflows to inf by design (that is the
    float16 result), so only that copy runs under errstate (which costs ~1 us a call)."""
    if dst.dtype == src.dtype:
        dst[...] = src
    elif (_half_ready(dst, _FLOAT16) and dst.flags.writeable and src.shape == dst.shape
          and _half_ready(src, _FLOAT32)):
        ffi, lib = _half_lib()
        lib.fa_f32_to_f16(ffi.from_buffer("float[]", src.reshape(-1)),
                          ffi.from_buffer("uint16_t[]", dst.reshape(-1).view(np.uint16), True),
                          dst.size)
    else:
        with np.errstate(over="ignore"):
            dst[...] = src


# From this many elements up, a new output is placed at its input's offset from a 64-byte
# boundary (about 2 us of address arithmetic). NumPy aligns to 16 bytes only; the kernels
# peel elements up to the output's next boundary, which then aligns the input's loads too:
# float32 softmax over 256 rows of 1024 took 119 us with both aligned, 143-153 us with
# either 16 or 48 bytes off.
_ALIGN_MIN = 65536


# From this many bytes up a new output comes from the C extension's cache of released large
# outputs (csrc/pyext/fastpath.c, FUSEDACT_OUTPUT_CACHE_MB), when it is built: fresh pages for
# every 32 MiB output cost more than the kernels (4,194,304 float64 elements, one thread:
# numba's sigmoid backward 7.4 -> 4.0 ms a call, c's sigmoid with derivative=True 11.9 -> 4.7,
# c's leaky_relu at slope 0.2 5.7 -> 2.3).
_CACHED_MIN = 4 << 20
try:
    from ._fastpath import empty as _fast_empty
except ImportError:
    _fast_empty = None


def _cacheable(like):
    """Whether fusedact._fastpath.empty takes `like`: a C-contiguous, aligned ndarray of
    native float32 or float64."""
    dt = like.dtype
    return (_fast_empty is not None and dt.char in "fd" and dt.isnative
            and like.flags.c_contiguous and like.flags.aligned)


def _address(a) -> int:
    # cffi's view of the buffer: 0.55 us, where __array_interface__ builds a dict (2 us)
    return int(_CFFI.cast("uintptr_t", _CFFI.from_buffer(a)))


def _empty_like(like, dtype=None):
    """np.empty_like(like, dtype) (memory order kept), at like's offset from a 64-byte
    boundary when like is large, C-contiguous and dtype has its item size."""
    dt = like.dtype if dtype is None else np.dtype(dtype)
    if (like.size < _ALIGN_MIN or dt.itemsize != like.dtype.itemsize
            or not like.flags.c_contiguous or _CFFI is None):
        return np.empty_like(like, dtype=dt)
    if dt == like.dtype and _cacheable(like):
        # the same placement in C (and its cache for large outputs): 262,144 float32
        # elements, 2.8-3.1 -> 0.8 us a call
        return _fast_empty(like, True)
    raw = np.empty(like.nbytes + 64, np.uint8)
    start = (_address(like) - _address(raw)) % 64
    return raw[start:start + like.nbytes].view(dt).reshape(like.shape)


def _new_output(like, backend):
    """A new output for an elementwise call on `like` (a plain float ndarray) by `backend`."""
    placed = getattr(backend, "peels_to_alignment", False)
    if like.nbytes >= _CACHED_MIN and _cacheable(like):
        return _fast_empty(like, placed)
    if like.size < _ALIGN_MIN or not placed:
        return np.empty_like(like)
    return _empty_like(like)


def _empty(shape, dtype, like):
    if like is not None and like.shape == tuple(shape):
        # Keeps the input's memory order (C, Fortran, or the order of its strides), so
        # that a transposed input gives a transposed, still contiguous, output.
        return _empty_like(like, dtype)
    return np.empty(shape, dtype=dtype)


def _unpack_out(out, count: int, op: str):
    if count == 1:
        return (out,)
    if out is None:
        return (None,) * count
    if not isinstance(out, tuple) or len(out) != count:
        raise TypeError(f"{op}: out must be a tuple of {count} arrays (or None), got {out!r}")
    return out


def _pair(grad, saved, op, names):
    """Convert grad_out and the saved array of a backward call; same shape, common dtype."""
    g = _as_array(grad, op, names[0])
    s = _as_array(saved, op, names[1])
    rg = _result_dtype(g.dtype, op, names[0])
    rs = _result_dtype(s.dtype, op, names[1])
    result = np.promote_types(rg, rs)
    return g, s, result


def _route(*arrays):
    """The module that handles a call whose arguments are not all host arrays: ``_dask`` for
    dask arrays, ``_device`` for CUDA device arrays; None for the host path."""
    for a in arrays:
        if type(a) is np.ndarray or a is None:
            continue
        if type(a).__module__.startswith("dask.array"):
            from . import _dask

            return _dask
        if _dispatch._is_device_array(a):
            from . import _device

            return _device
    return None


def _outs(out):
    return out if isinstance(out, tuple) else (out,)


# ---- generic bodies ----------------------------------------------------------------------
_FLOAT64 = np.dtype(np.float64)


def elementwise_forward(spec, x, params, out, derivative, backend):
    if (type(x) is np.ndarray and (x.dtype is _FLOAT32 or x.dtype is _FLOAT64) and x.ndim
            and (not derivative or out is None)):
        # The most common calls (a float32/float64 array, no out= or an out= of its shape
        # and type that is x itself or apart from it), with nothing left to decide: 0.5 us
        # less than the general path below without out=, 1.5 us with it.
        be = _dispatch.resolve(backend, spec.name, x)
        if derivative:  # no out=: numba's sigmoid on 1,024 float32, 9.5 -> 4.5 us a call
            y, dydx = _new_output(x, be), _new_output(x, be)
            if x.size:
                be.elementwise_with_derivative(
                    spec, x, spec.coerce_params(params) if params else (), y, dydx)
            return y, dydx
        if out is None:
            buf = _new_output(x, be)
        elif (type(out) is np.ndarray and out.dtype is x.dtype and out.shape == x.shape
              and out.flags.writeable and (out is x or not np.may_share_memory(out, x))):
            buf = out
        else:
            buf = None
        if buf is not None:
            values = spec.coerce_params(params) if params else ()
            if x.size:
                be.elementwise(spec, x, values, buf)
            return buf
    op = spec.name
    if type(x) is not np.ndarray and (route := _route(x, *_outs(out))):
        return route.elementwise_forward(spec, x, params, out, derivative, backend)
    xa = x if type(x) is np.ndarray else _as_array(x, op, "x")
    result = _result_dtype(xa.dtype, op, "x")
    compute = _compute_dtype(result)
    xc = _to_compute(xa, compute)
    be = _dispatch.resolve(backend, op, xa)
    values = spec.coerce_params(params) if params else ()
    if not derivative and out is None:
        # The common call, kept short (a few microseconds for a small array).
        buf = _empty_like(xc)
        if xc.size:
            be.elementwise(spec, xc, values, buf)
        if buf.dtype != result:
            r = np.empty_like(buf, dtype=result)
            _copy_rounding(r, buf)
            buf = r
        return buf[()] if xa.ndim == 0 else buf
    scalar = out is None and xa.ndim == 0
    if not derivative:
        _check_out(out, xa.shape, result, op)
        t = _Target(out, xa.shape, result, compute, (xa,), xc)
        if xc.size:
            be.elementwise(spec, xc, values, t.buffer)
        return t.result(result, scalar)
    out_y, out_d = _unpack_out(out, 2, op)
    if out_y is not None:
        _check_out(out_y, xa.shape, result, op, "out[0]")
    if out_d is not None:
        _check_out(out_d, xa.shape, result, op, "out[1]")
        if out_y is not None and np.may_share_memory(out_y, out_d):
            raise ValueError(f"{op}: out[0] and out[1] must not overlap")
    ty = _Target(out_y, xa.shape, result, compute, (xa,), xc)
    td = _Target(out_d, xa.shape, result, compute, (xa,), xc)
    if xc.size:
        be.elementwise_with_derivative(spec, xc, values, ty.buffer, td.buffer)
    return ty.result(result, scalar), td.result(result, scalar)


def elementwise_backward(spec, grad, saved, params, out, backend):
    if (type(grad) is np.ndarray and type(saved) is np.ndarray and out is None
            and grad.shape == saved.shape and grad.ndim
            and ((grad.dtype is _FLOAT32 and saved.dtype is _FLOAT32)
                 or (grad.dtype is _FLOAT64 and saved.dtype is _FLOAT64))):
        # The common backward call: 9 us -> 3 us for 1,024 elements.
        values = spec.coerce_params(params) if params else ()
        be = _dispatch.resolve(backend, spec.name, grad)
        buf = _new_output(grad, be)
        if grad.size:
            be.elementwise_backward(spec, grad, saved, values, buf)
        return buf
    op = f"{spec.name}_backward"
    if route := _route(grad, saved, out):
        return route.elementwise_backward(spec, grad, saved, params, out, backend)
    g, s, result = _pair(grad, saved, op, ("grad_out", spec.saved))
    if g.shape != s.shape:
        raise ValueError(
            f"{op}: grad_out has shape {g.shape} but {spec.saved} has shape {s.shape}; "
            "they must be equal (no broadcasting)"
        )
    compute = _compute_dtype(result)
    scalar = out is None and g.ndim == 0
    gc, sc = _to_compute(g, compute), _to_compute(s, compute)
    be = _dispatch.resolve(backend, spec.name, g)
    values = spec.coerce_params(params) if params else ()
    if out is not None:
        _check_out(out, g.shape, result, op)
    t = _Target(out, g.shape, result, compute, (g, s), gc)
    if gc.size:
        be.elementwise_backward(spec, gc, sc, values, t.buffer)
    return t.result(result, scalar)


def _axis_input(x, op, arg, axis):
    xa = _as_array(x, op, arg)
    if xa.ndim == 0:
        raise ValueError(f"{op}: {arg} must have at least one dimension, got a 0-d array")
    return xa, normalize_axis_index(axis, xa.ndim)


def _plain_rows_call(name, first, second, axis, out, backend):
    """(resolved backend, output) for a softmax-family call with nothing left to decide
    (float32 or float64 ndarrays of one dtype and shape, an int axis in range, no out= or an
    out= of their shape and dtype that is one of them or apart from them), else None for the
    general path. `first` is x (forward) or the saved y (backward), `second` None or
    grad_out."""
    dt = first.dtype
    if not ((dt is _FLOAT32 or dt is _FLOAT64) and type(axis) is int
            and -first.ndim <= axis < first.ndim):  # false for 0-d
        return None
    if second is not None and (type(second) is not np.ndarray or second.dtype is not dt
                               or second.shape != first.shape):
        return None
    if out is None:
        be = _dispatch.resolve(backend, name, first)
        return be, _new_output(first, be)  # like x, or the saved y
    if (type(out) is np.ndarray and out.dtype is dt and out.shape == first.shape
            and out.flags.writeable
            and (out is first or not np.may_share_memory(out, first))
            and (second is None or out is second or not np.may_share_memory(out, second))):
        return _dispatch.resolve(backend, name, first), out
    return None


def _plain_maxout_shape(x, pieces, axis):
    """maxout's output shape for a float32/float64 ndarray x with nothing left to check (an
    int axis in range, whole groups of pieces along it), else None for the general path."""
    dt = x.dtype
    if (not (dt is _FLOAT32 or dt is _FLOAT64) or type(axis) is not int
            or not -x.ndim <= axis < x.ndim or pieces < 1):
        return None
    ax = axis % x.ndim
    if x.shape[ax] % pieces:
        return None
    return x.shape[:ax] + (x.shape[ax] // pieces,) + x.shape[ax + 1:]


def axis_forward(name, x, axis, out, backend, pieces=None):
    if (pieces is not None and out is None and type(x) is np.ndarray
            and (shape := _plain_maxout_shape(x, pieces, axis)) is not None):
        # maxout's common call, without the general path's conversions and checks: numba's
        # pairs of 1,024 float32 elements, 6.0 -> 2.6 us a call (its loop: 1.7)
        be = _dispatch.resolve(backend, name, x)
        buf = np.empty(shape, x.dtype)
        if x.size:
            be.maxout(x, pieces, axis % x.ndim, buf)
        return buf
    if (type(x) is np.ndarray and pieces is None
            and (plain := _plain_rows_call(name, x, None, axis, out, backend)) is not None):
        # softmax and log_softmax's common calls, without the general path's conversions
        # and checks (numba's softmax_backward on 16 rows of 1024 float32, one thread:
        # 11.9-12.6 us a call through the general path, 8.1-9.1 through this one)
        be, buf = plain
        if x.size:
            getattr(be, name)(x, axis % x.ndim, buf)
        return buf
    if route := _route(x, out):
        return route.axis_forward(name, x, axis, out, backend, pieces)
    xa, ax = _axis_input(x, name, "x", axis)
    result = _result_dtype(xa.dtype, name, "x")
    compute = _compute_dtype(result)
    shape = xa.shape
    if name == "maxout":
        if pieces < 1:
            raise ValueError(f"maxout: pieces must be >= 1, got {pieces}")
        if xa.shape[ax] % pieces:
            raise ValueError(
                f"maxout: x.shape[{ax}] = {xa.shape[ax]} is not a multiple of pieces = {pieces}"
            )
        shape = xa.shape[:ax] + (xa.shape[ax] // pieces,) + xa.shape[ax + 1:]
    xc = _to_compute(xa, compute)
    be = _dispatch.resolve(backend, name, xa)
    if out is not None:
        _check_out(out, shape, result, name)
    t = _Target(out, shape, result, compute, (xa,), xc, in_place_ok=name != "maxout")
    if xc.size:
        if name == "maxout":
            be.maxout(xc, pieces, ax, t.buffer)
        else:
            getattr(be, name)(xc, ax, t.buffer)
    return t.result(result, False)


def axis_backward(name, grad, saved, axis, out, backend, pieces=None):
    if (pieces is not None and out is None and type(saved) is np.ndarray
            and type(grad) is np.ndarray and grad.dtype is saved.dtype
            and (shape := _plain_maxout_shape(saved, pieces, axis)) is not None
            and grad.shape == shape):
        be = _dispatch.resolve(backend, name, saved)
        buf = _new_output(saved, be)
        if saved.size:
            be.maxout_backward(grad, saved, pieces, axis % saved.ndim, buf)
        return buf
    if (type(saved) is np.ndarray and pieces is None
            and (plain := _plain_rows_call(name, saved, grad, axis, out, backend)) is not None):
        be, buf = plain
        if saved.size:
            getattr(be, f"{name}_backward")(grad, saved, axis % saved.ndim, buf)
        return buf
    if route := _route(grad, saved, out):
        return route.axis_backward(name, grad, saved, axis, out, backend, pieces)
    op = f"{name}_backward"
    saved_name = OPS[name].saved
    g, s, result = _pair(grad, saved, op, ("grad_out", saved_name))
    if s.ndim == 0:
        raise ValueError(f"{op}: {saved_name} must have at least one dimension")
    ax = normalize_axis_index(axis, s.ndim)
    expected = s.shape
    if name == "maxout":
        if pieces < 1 or s.shape[ax] % pieces:
            raise ValueError(
                f"{op}: x.shape[{ax}] = {s.shape[ax]} is not a multiple of pieces = {pieces}"
            )
        expected = s.shape[:ax] + (s.shape[ax] // pieces,) + s.shape[ax + 1:]
    if g.shape != expected:
        raise ValueError(
            f"{op}: grad_out has shape {g.shape}, expected {expected} "
            f"(from {saved_name} of shape {s.shape})"
        )
    compute = _compute_dtype(result)
    gc, sc = _to_compute(g, compute), _to_compute(s, compute)
    be = _dispatch.resolve(backend, name, s)
    if out is not None:
        _check_out(out, s.shape, result, op)
    t = _Target(out, s.shape, result, compute, (g, s), sc, in_place_ok=name != "maxout")
    if sc.size:
        if name == "maxout":
            be.maxout_backward(gc, sc, pieces, ax, t.buffer)
        else:
            getattr(be, op)(gc, sc, ax, t.buffer)
    return t.result(result, False)


# bias_act's activations at their defaults: name (and None, the identity) -> (spec or None,
# the checked default values), for the plain calls
_PLAIN_ACTS = {None: (None, ()), "identity": (None, ())}
_PLAIN_ACTS.update((name, (spec, spec.coerce_params(spec.defaults())))
                   for name, spec in OPS.items() if spec.family == ELEMENTWISE
                   and all(p.default is not REQUIRED for p in spec.params))


def _activation(act, op):
    if act is None or act == "identity":
        return None
    spec = OPS.get(act) if isinstance(act, str) else None
    if spec is None or spec.family != ELEMENTWISE:
        names = ", ".join(n for n, s in OPS.items() if s.family == ELEMENTWISE)
        raise ValueError(f"{op}: act={act!r} is not an elementwise op; expected one of "
                         f"identity, {names}")
    return spec


def _act_params(spec, params, op):
    if spec is None:
        if params:
            raise TypeError(f"{op}: act='identity' takes no parameters, got {sorted(params)}")
        return ()
    unknown = set(params) - set(spec.param_names)
    if unknown:
        raise TypeError(f"{op}: {spec.name} takes no parameter(s) {sorted(unknown)}; "
                        f"its parameters are {list(spec.param_names)}")
    return spec.coerce_params({**spec.defaults(), **params})


def _bias_input(x, bias, op, xname):
    xa = _as_array(x, op, xname)
    ba = _as_array(bias, op, "bias")
    if xa.ndim == 0:
        raise ValueError(f"{op}: {xname} must have at least one dimension")
    if ba.shape != (xa.shape[-1],):
        raise ValueError(f"{op}: bias has shape {ba.shape}, expected ({xa.shape[-1]},) "
                         f"(the last axis of {xname}, shape {xa.shape})")
    return xa, ba


def _plain_bias_call(x, bias, act, params, grad=None):
    """(spec, parameter values) for a bias_act call with nothing left to check: float32 or
    float64 ndarrays of one dtype, x with at least one dimension and grad (the backward's)
    of its shape, a bias along its last axis, an activation named at its defaults; else
    None for the general path."""
    dt = x.dtype
    if (params or type(bias) is not np.ndarray or not (dt is _FLOAT32 or dt is _FLOAT64)
            or bias.dtype is not dt or not x.ndim or bias.shape != x.shape[-1:]):
        return None
    if grad is not None and (type(grad) is not np.ndarray or grad.dtype is not dt
                             or grad.shape != x.shape):
        return None
    return _PLAIN_ACTS.get(act) if (type(act) is str or act is None) else None


def bias_act(x, bias, act, out, backend, params):
    op = "bias_act"
    if (out is None and type(x) is np.ndarray
            and (plain := _plain_bias_call(x, bias, act, params)) is not None):
        # the common call without the general path's conversions and checks: numba's
        # bias_act with gelu on 1 x 1024 float32, 11.5 -> 6.2 us a call
        be = _dispatch.resolve(backend, op, x)
        buf = _new_output(x, be)
        if x.size:
            be.bias_act(plain[0], x, bias, plain[1], buf)
        return buf
    spec = _activation(act, op)
    values = _act_params(spec, params, op)
    if route := _route(x, bias, out):
        return route.bias_act(x, bias, act, out, backend, params, spec, values)
    xa, ba = _bias_input(x, bias, op, "x")
    result = np.promote_types(_result_dtype(xa.dtype, op, "x"), _result_dtype(ba.dtype, op, "bias"))
    compute = _compute_dtype(result)
    xc, bc = _to_compute(xa, compute), _to_compute(ba, compute)
    be = _dispatch.resolve(backend, op, xa)
    if out is not None:
        _check_out(out, xa.shape, result, op)
    t = _Target(out, xa.shape, result, compute, (xa, ba), xc)
    if xc.size:
        be.bias_act(spec, xc, bc, values, t.buffer)
    return t.result(result, False)


def bias_act_backward(grad, x, bias, act, out, backend, params):
    op = "bias_act_backward"
    if (out is None and type(x) is np.ndarray
            and (plain := _plain_bias_call(x, bias, act, params, grad)) is not None):
        be = _dispatch.resolve(backend, "bias_act", x)
        grad_x, grad_bias = _new_output(x, be), np.empty(bias.shape, bias.dtype)
        if x.size:
            be.bias_act_backward(plain[0], grad, x, bias, plain[1], grad_x, grad_bias)
        else:
            grad_bias[...] = 0
        return grad_x, grad_bias
    spec = _activation(act, op)
    values = _act_params(spec, params, op)
    if route := _route(grad, x, bias, *_outs(out)):
        return route.bias_act_backward(grad, x, bias, act, out, backend, params, spec, values)
    xa, ba = _bias_input(x, bias, op, "x")
    g = _as_array(grad, op, "grad_out")
    if g.shape != xa.shape:
        raise ValueError(f"{op}: grad_out has shape {g.shape} but x has shape {xa.shape}; "
                         "they must be equal")
    result = np.promote_types(
        np.promote_types(_result_dtype(g.dtype, op, "grad_out"), _result_dtype(xa.dtype, op, "x")),
        _result_dtype(ba.dtype, op, "bias"),
    )
    compute = _compute_dtype(result)
    gc, xc, bc = (_to_compute(a, compute) for a in (g, xa, ba))
    be = _dispatch.resolve(backend, "bias_act", xa)
    out_gx, out_gb = _unpack_out(out, 2, op)
    if out_gx is not None:
        _check_out(out_gx, xa.shape, result, op, "out[0]")
    if out_gb is not None:
        _check_out(out_gb, ba.shape, result, op, "out[1]")
    inputs = (g, xa, ba)
    tx = _Target(out_gx, xa.shape, result, compute, inputs, xc)
    tb = _Target(out_gb, ba.shape, result, compute, inputs + (tx.buffer,), None, in_place_ok=False)
    if xc.size:
        be.bias_act_backward(spec, gc, xc, bc, values, tx.buffer, tb.buffer)
    else:
        tb.buffer[...] = 0
    return tx.result(result, False), tb.result(result, False)


_INT64 = np.dtype(np.int64)


def _plain_labels(z, labels, ignore_index):
    """Whether a softmax_cross_entropy call has nothing left to check: float32/float64
    logits with classes last, int64 labels of their shape, each a class or the
    ignore_index (a Python int within int64). False sends the call down the general path,
    which words what is wrong."""
    dt = z.dtype
    if not ((dt is _FLOAT32 or dt is _FLOAT64) and z.ndim and type(labels) is np.ndarray
            and labels.dtype is _INT64 and labels.shape == z.shape[:-1]
            and type(ignore_index) is int and -2**63 <= ignore_index < 2**63):
        return False
    n_classes = z.shape[-1]
    if labels.size <= 64:  # a batch's labels: checked one by one, 0.3-1 us
        return all(0 <= v < n_classes or v == ignore_index for v in labels.ravel().tolist())
    # as unsigned, a negative label is beyond every class too: one comparison, and two more
    # only when some label is out of range (the ignored ones, usually)
    out_of_range = labels.view(np.uint64) >= n_classes
    return not out_of_range.any() or not (out_of_range & (labels != ignore_index)).any()


def softmax_cross_entropy(logits, labels, ignore_index, out, backend):
    op = "softmax_cross_entropy"
    if out is None and type(logits) is np.ndarray and _plain_labels(logits, labels,
                                                                    ignore_index):
        # the common call without the general path's conversions and checks: numba's on
        # 16 x 1024 float32, 31.7 -> 17 us a call (its backend method: 14.6)
        be = _dispatch.resolve(backend, op, logits)
        loss = np.empty(labels.shape, logits.dtype)
        grad = _new_output(logits, be)
        if logits.size:
            be.softmax_cross_entropy(logits, labels if labels.flags.c_contiguous
                                     else np.ascontiguousarray(labels), ignore_index, loss,
                                     grad)
        return loss, grad
    if route := _route(logits, labels, *_outs(out)):
        return route.softmax_cross_entropy(logits, labels, ignore_index, out, backend)
    z = _as_array(logits, op, "logits")
    lab = _as_array(labels, op, "labels")
    if z.ndim == 0:
        raise ValueError(f"{op}: logits must have at least one dimension (classes last)")
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class indices, got dtype {lab.dtype}")
    if lab.shape != z.shape[:-1]:
        raise ValueError(f"{op}: labels has shape {lab.shape}, expected {z.shape[:-1]} "
                         f"(logits shape {z.shape} without its last axis)")
    ignore_index = int(ignore_index)
    n_classes = z.shape[-1]
    lab64 = lab.astype(np.int64)
    bad = (lab64 != ignore_index) & ((lab64 < 0) | (lab64 >= n_classes))
    if bad.any():
        first = lab64[bad].flat[0]
        raise ValueError(f"{op}: label {first} is out of range for {n_classes} classes "
                         f"(expected 0..{n_classes - 1}, or ignore_index={ignore_index})")
    result = _result_dtype(z.dtype, op, "logits")
    compute = _compute_dtype(result)
    zc = _to_compute(z, compute)
    be = _dispatch.resolve(backend, op, z)
    out_loss, out_grad = _unpack_out(out, 2, op)
    if out_loss is not None:
        _check_out(out_loss, lab.shape, result, op, "out[0]")
    if out_grad is not None:
        _check_out(out_grad, z.shape, result, op, "out[1]")
    tl = _Target(out_loss, lab.shape, result, compute, (z,), None, in_place_ok=False)
    tg = _Target(out_grad, z.shape, result, compute, (z,), zc)
    if not -2**63 <= ignore_index < 2**63:
        # no int64 label equals it, and every label is a class (checked above): the kernels
        # take a value no class has (a C int64_t cannot hold this one)
        ignore_index = -1
    if zc.size:
        be.softmax_cross_entropy(zc, np.ascontiguousarray(lab64), ignore_index,
                                 tl.buffer, tg.buffer)
    return tl.result(result, False), tg.result(result, False)


# ---- generated public functions -----------------------------------------------------------
try:  # the c backend's C-API entry, built with the C extension
    from ._fastpath import (KEYWORD_BASE, backward as _fast_backward,
                            bias_backward as _fast_bias_backward, bias_forward as _fast_bias,
                            derivative as _fast_derivative, forward as _fast_forward,
                            maxout_backward as _fast_maxout_backward,
                            maxout_forward as _fast_maxout, xent as _fast_xent)
except ImportError:  # not built: every call takes the Python path
    KEYWORD_BASE = 128

    # The generated calls pass parameters and an axis after the listed arguments (*given).
    def _fast_forward(slot, x, out=None, *given):
        return None

    def _fast_backward(slot, grad_out, saved, out=None, *given):
        return None

    def _fast_derivative(slot, x, *given):
        return None

    def _fast_bias(slot, x, bias, out=None, *given):
        return None

    def _fast_bias_backward(slot, grad_out, x, bias, *given):
        return None

    def _fast_xent(slot, logits, labels, ignore_index):
        return None

    def _fast_maxout(slot, x, pieces):
        return None

    def _fast_maxout_backward(slot, grad_out, x, pieces):
        return None


class OpFunction:
    """A public fusedact function: its repr is its public name and it pickles by name."""

    __slots__ = ()
    public_name = "?"
    spec = None

    def __repr__(self):
        return f"fusedact.{self.public_name}"

    def __reduce__(self):
        return (_lookup, (self.public_name,))


def _lookup(name):
    import fusedact

    return getattr(fusedact, name)


def _make(name, source, doc, spec, namespace):
    code = compile(source, f"<fusedact.{name}>", "exec")
    ns = dict(namespace)
    exec(code, ns)  # noqa: S102 - source is generated from the catalogue, not user input
    fn = ns["__call__"]
    if spec is not None and fn.__defaults__:
        # The catalogue's default objects themselves, as the function's defaults and for the
        # fast path's `is` tests (see _build_elementwise), so that spec.defaults() passed
        # back explicitly (as the benchmarks do) is recognised too.
        positional = fn.__code__.co_varnames[:fn.__code__.co_argcount]
        named = positional[len(positional) - len(fn.__defaults__):]
        catalogue = {p.name: p.default for p in spec.params}
        if all(arg in catalogue for arg in named):
            fn.__defaults__ = tuple(catalogue[arg] for arg in named)
            for arg in named:
                ns[f"_default_{arg}"] = catalogue[arg]
    cls = type(name, (OpFunction,), {
        "__call__": fn, "__doc__": doc, "__slots__": (), "public_name": name,
        "spec": spec, "__module__": "fusedact",
    })
    instance = cls()
    return instance


def _param_source(spec):
    parts = []
    for p in spec.params:
        parts.append(p.name if p.default is REQUIRED else f"{p.name}={p.default!r}")
    return parts


def _doc_params(spec):
    lines = []
    for p in spec.params:
        default = "required" if p.default is REQUIRED else f"default {p.default!r}"
        choices = f", one of {list(p.choices)}" if p.choices else ""
        lines.append(f"{p.name} : {p.kind if not p.choices else 'str'}, {default}{choices}"
                     + (f"\n    {p.doc}" if p.doc else ""))
    return "\n".join(lines)


_EW_FORWARD_DOC = """{name}(x{params}, *, out=None, derivative=False, backend=None)

Elementwise {name}: y = {formula}.

NumPy equivalent: ``{numpy}``

Parameters
----------
x : array_like
    float16/float32/float64 keep their dtype (float16 is computed in float32); integers
    and bools give float64.
{param_doc}
out : ndarray, optional
    Where to write y (exact shape and dtype; may be ``x`` itself). With
    ``derivative=True``, a tuple ``(out_y, out_dydx)``.
derivative : bool
    Also return dy/dx = {derivative}, computed in the same pass.
backend : str, optional
    'auto', 'c', 'numba', 'cuda' or 'numpy'; overrides use_backend() and FUSEDACT_BACKEND.

Returns
-------
y, or (y, dy/dx) when ``derivative=True``.
"""

_EW_BACKWARD_DOC = """{name}_backward(grad_out, {saved}{params}, *, out=None, backend=None)

Gradient of {name}: grad_in = grad_out * d{name}/dx = grad_out * ({derivative}),
from the saved {what} ``{saved}`` (as PyTorch's aten backward does).
{param_doc}
"""


# Public ops that the C-API entry (fusedact._fastpath) may run: name -> slot (bias_act's are
# "bias_act:<activation>").
FAST_SLOTS: dict = {}


def _entry_slot(slot):
    """The generated expression for the entry's slot: `slot` serves backend=None (bound by
    the process-wide choice), slot + KEYWORD_BASE backend="c" (bound by the keyword)."""
    return f"({slot} if backend is None else {slot + KEYWORD_BASE})"


def _build_elementwise(spec, ns):
    params = _param_source(spec)
    sig = "".join(f", {p}" for p in params)
    pdict = "{" + ", ".join(f"{p.name!r}: {p.name}" for p in spec.params) + "}"
    fwd_body = (f"    return _elementwise_forward(_spec, x, {pdict}, out, derivative, backend)\n")
    bwd_body = (f"    return _elementwise_backward(_spec, grad_out, {spec.saved}, {pdict}, out, "
                "backend)\n")
    if all(p.default is not REQUIRED for p in spec.params):
        # The C-API entry first (see csrc/pyext/fastpath.c): no out= or one the entry writes
        # directly, no backend= or backend="c" (one-character strings are CPython
        # singletons). It answers None for every call it does not take, and for every op
        # until the dispatcher has chosen the c backend for it: process-wide for
        # backend=None, by the keyword for backend="c" (its own slots, _entry_slot).
        # Parameters left at their defaults (`is` the catalogue's default object: one
        # pointer comparison) take the slot's block; numeric ones given go to the entry as
        # they are (it converts exact ints and floats and declines anything else); a choice
        # (gelu's approximate) names a slot of its own, "<op>:<choice>".
        slot = _entry_slot(FAST_SLOTS.setdefault(spec.name, len(FAST_SLOTS)))
        same = " and ".join(f"{p.name} is _default_{p.name}" for p in spec.params)
        numeric = tuple(p.name for p in spec.params if not p.choices)
        pick = "(backend is None or backend is _C)"

        def entry_calls(slot, given):
            args = "".join(f", {name}" for name in given)
            return (f"(_fast_derivative({slot}, x{args}) if out is None else None) "
                    f"if derivative else _fast_forward({slot}, x, out{args})",
                    f"_fast_backward({slot}, grad_out, {spec.saved}, out{args})")

        fwd_default, bwd_default = entry_calls(slot, ())
        if not spec.params:
            fwd_fast, bwd_fast = (f"    if {pick}:\n        y = {fwd_default}\n",
                                  f"    if {pick}:\n        g = {bwd_default}\n")
        elif numeric == spec.param_names:
            fwd_given, bwd_given = entry_calls(slot, numeric)
            fwd_fast = (f"    if {pick}:\n"
                        f"        y = ({fwd_default}) if {same} else ({fwd_given})\n")
            bwd_fast = (f"    if {pick}:\n"
                        f"        g = ({bwd_default}) if {same} else ({bwd_given})\n")
        else:  # one choice parameter: a slot per other choice
            (choice,) = spec.params
            fwd_fast = f"    if {pick}:\n        if {same}:\n            y = {fwd_default}\n"
            bwd_fast = f"    if {pick}:\n        if {same}:\n            g = {bwd_default}\n"
            for value in choice.choices:
                if value == choice.default:
                    continue
                other = _entry_slot(FAST_SLOTS.setdefault(f"{spec.name}:{value}",
                                                          len(FAST_SLOTS)))
                test = f"{choice.name}.__class__ is str and {choice.name} == {value!r}"
                fwd_other, bwd_other = entry_calls(other, ())
                fwd_fast += f"        elif {test}:\n            y = {fwd_other}\n"
                bwd_fast += f"        elif {test}:\n            g = {bwd_other}\n"
            fwd_fast += "        else:\n            y = None\n"
            bwd_fast += "        else:\n            g = None\n"
        fwd_body = (fwd_fast + "        if y is not None:\n            return y\n" + fwd_body)
        bwd_body = (bwd_fast + "        if g is not None:\n            return g\n" + bwd_body)
    fwd = f"def __call__(self, x{sig}, *, out=None, derivative=False, backend=None):\n" + fwd_body
    bwd = (f"def __call__(self, grad_out, {spec.saved}{sig}, *, out=None, backend=None):\n"
           + bwd_body)
    pdoc = _doc_params(spec)
    doc_f = _EW_FORWARD_DOC.format(name=spec.name, params=sig, formula=spec.formula,
                                   numpy=spec.numpy_equivalent, param_doc=pdoc,
                                   derivative=spec.derivative)
    doc_b = _EW_BACKWARD_DOC.format(
        name=spec.name, saved=spec.saved, params=sig, derivative=spec.derivative,
        what="output" if spec.saved == "y" else "input", param_doc=pdoc)
    env = {**ns, "_spec": spec}
    return (_make(spec.name, fwd, doc_f, spec, env),
            _make(f"{spec.name}_backward", bwd, doc_b, spec, env))


_AXIS_SOURCES = {
    "softmax": ("def __call__(self, x, axis=-1, *, out=None, backend=None):\n"
                "    return _axis_forward('softmax', x, axis, out, backend)\n",
                "def __call__(self, grad_out, y, axis=-1, *, out=None, backend=None):\n"
                "    return _axis_backward('softmax', grad_out, y, axis, out, backend)\n"),
    "log_softmax": ("def __call__(self, x, axis=-1, *, out=None, backend=None):\n"
                    "    return _axis_forward('log_softmax', x, axis, out, backend)\n",
                    "def __call__(self, grad_out, y, axis=-1, *, out=None, backend=None):\n"
                    "    return _axis_backward('log_softmax', grad_out, y, axis, out, backend)\n"),
    "maxout": ("def __call__(self, x, pieces, axis=-1, *, out=None, backend=None):\n"
               "    pieces = _spec.params[0].coerce('maxout', pieces)\n"
               "    axis = _spec.params[1].coerce('maxout', axis)\n"
               "    return _axis_forward('maxout', x, axis, out, backend, pieces)\n",
               "def __call__(self, grad_out, x, pieces, axis=-1, *, out=None, backend=None):\n"
               "    pieces = _spec.params[0].coerce('maxout_backward', pieces)\n"
               "    axis = _spec.params[1].coerce('maxout_backward', axis)\n"
               "    return _axis_backward('maxout', grad_out, x, axis, out, backend, pieces)\n"),
}

_AXIS_DOCS = {
    "softmax": ("softmax(x, axis=-1, *, out=None, backend=None)\n\n"
                "y = exp(x - max) / sum(exp(x - max)) along `axis`.\n\nNumPy equivalent: ``{np}``\n",
                "softmax_backward(grad_out, y, axis=-1, *, out=None, backend=None)\n\n"
                "grad_in = y * (grad_out - sum(grad_out * y, axis)), from the output y.\n"),
    "log_softmax": ("log_softmax(x, axis=-1, *, out=None, backend=None)\n\n"
                    "y = x - logsumexp(x) along `axis`, stable for any finite x.\n\n"
                    "NumPy equivalent: ``{np}``\n",
                    "log_softmax_backward(grad_out, y, axis=-1, *, out=None, backend=None)\n\n"
                    "grad_in = grad_out - exp(y) * sum(grad_out, axis), from the output y.\n"),
    "maxout": ("maxout(x, pieces, axis=-1, *, out=None, backend=None)\n\n"
               "Max over groups of `pieces` consecutive entries along `axis` (whose length must "
               "be a multiple of `pieces`); NaN propagates.\n\nNumPy equivalent: ``{np}``\n",
               "maxout_backward(grad_out, x, pieces, axis=-1, *, out=None, backend=None)\n\n"
               "Routes each grad_out entry to the first maximum of its group in x (a NaN, if the "
               "group has one); the other entries get 0.\n"),
}


# softmax and log_softmax along any axis given as an int, and maxout (without out=) along the
# last axis (the default), go to the C-API entry first, as the elementwise ops do
# (fusedact._fastpath: None for every call it does not take).
_AXIS_FAST = ("    if (backend is None or backend is _C) and {axis_test}:\n"
              "        fast = {call}\n"
              "        if fast is not None:\n"
              "            return fast\n")


def _build_axis(spec, ns):
    fwd, bwd = _AXIS_SOURCES[spec.name]
    slot = _entry_slot(FAST_SLOTS.setdefault(spec.name, len(FAST_SLOTS)))
    head_f, body_f = fwd.split("\n", 1)
    head_b, body_b = bwd.split("\n", 1)
    if spec.name in ("softmax", "log_softmax"):
        # the default axis (-1) as the rows' plain call; an int one passed on (the entry takes
        # exact ints, the last axis or another, and declines the rest)
        fwd_call = (f"_fast_forward({slot}, x, out) if axis is _M1 else "
                    f"_fast_forward({slot}, x, out, axis)")
        bwd_call = (f"_fast_backward({slot}, grad_out, y, out) if axis is _M1 else "
                    f"_fast_backward({slot}, grad_out, y, out, axis)")
        test = "(axis is _M1 or axis.__class__ is int)"
        fwd = head_f + "\n" + _AXIS_FAST.format(axis_test=test, call=fwd_call) + body_f
        bwd = head_b + "\n" + _AXIS_FAST.format(axis_test=test, call=bwd_call) + body_b
    else:  # maxout: no out= (its output is not x's shape), pieces an int
        test = "axis is _M1 and out is None and type(pieces) is int"
        fwd = (head_f + "\n" + _AXIS_FAST.format(
            axis_test=test, call=f"_fast_maxout({slot}, x, pieces)") + body_f)
        bwd = (head_b + "\n" + _AXIS_FAST.format(
            axis_test=test, call=f"_fast_maxout_backward({slot}, grad_out, x, pieces)") + body_b)
    doc_f, doc_b = _AXIS_DOCS[spec.name]
    env = {**ns, "_spec": spec}
    return (_make(spec.name, fwd, doc_f.format(np=spec.numpy_equivalent), spec, env),
            _make(f"{spec.name}_backward", bwd, doc_b, spec, env))


# The fused ops' plain calls go to the C-API entry first, as the elementwise ops' do: an
# activation named by a string (or None), no out= (bias_act: or one the entry writes
# directly), backend=None or "c". bias_act has a slot per activation (and per other choice of
# gelu's approximate); parameters given go to the entry in catalogue order (_bias_given).
_FUSED_FAST = {
    "bias_act": ("    if ((backend is None or backend is _C)\n"
                 "            and (type(act) is str or act is None)):\n"
                 "        slot, given = (_BIAS_SLOTS.get(act), ()) if not params else "
                 "_bias_given(act, params)\n"
                 "        if slot is not None:\n"
                 "            y = _fast_bias(slot if backend is None else slot + _KEYWORD_BASE, "
                 "x, bias, out, *given)\n"
                 "            if y is not None:\n"
                 "                return y\n"),
    "bias_act_backward": ("    if ((backend is None or backend is _C) and out is None\n"
                          "            and (type(act) is str or act is None)):\n"
                          "        slot, given = (_BIAS_SLOTS.get(act), ()) if not params else "
                          "_bias_given(act, params)\n"
                          "        if slot is not None:\n"
                          "            r = _fast_bias_backward(slot if backend is None else "
                          "slot + _KEYWORD_BASE, grad_out, x, bias, *given)\n"
                          "            if r is not None:\n"
                          "                return r\n"),
    "softmax_cross_entropy": ("    if (backend is None or backend is _C) and out is None:\n"
                              "        r = _fast_xent(_XENT_SLOT if backend is None else "
                              "_XENT_SLOT + _KEYWORD_BASE, logits, labels, ignore_index)\n"
                              "        if r is not None:\n"
                              "            return r\n"),
}

_FUSED_SOURCES = {
    "bias_act": (
        "def __call__(self, x, bias, act, *, out=None, backend=None, **params):\n"
        "    return _bias_act(x, bias, act, out, backend, params)\n",
        "bias_act(x, bias, act, *, out=None, backend=None, **params)\n\n"
        "act(x + bias) in one pass, bias broadcast along the last axis (a Linear layer's "
        "epilogue).\n`act` names any elementwise op (or 'identity'); `params` are its "
        "parameters, e.g. ``bias_act(x, b, 'leaky_relu', negative_slope=0.2)``.\n",
    ),
    "bias_act_backward": (
        "def __call__(self, grad_out, x, bias, act, *, out=None, backend=None, **params):\n"
        "    return _bias_act_backward(grad_out, x, bias, act, out, backend, params)\n",
        "bias_act_backward(grad_out, x, bias, act, *, out=None, backend=None, **params)\n\n"
        "Returns (grad_x, grad_bias): grad_x = grad_out * act'(x + bias), and grad_bias, the "
        "sum of grad_x over all leading axes, accumulated in the same pass. `x` is the "
        "pre-bias input; `out` is an optional tuple (out_grad_x, out_grad_bias).\n",
    ),
    "softmax_cross_entropy": (
        "def __call__(self, logits, labels, *, ignore_index=-100, out=None, backend=None):\n"
        "    return _softmax_cross_entropy(logits, labels, ignore_index, out, backend)\n",
        "softmax_cross_entropy(logits, labels, *, ignore_index=-100, out=None, backend=None)\n\n"
        "Returns (loss, grad_logits) from one pass per row: loss[i] = logsumexp(logits[i]) - "
        "logits[i, labels[i]] and grad_logits = softmax(logits) - onehot(labels), the gradient "
        "of loss.sum(). Classes are the last axis; labels equal to ignore_index give loss 0 and "
        "a zero gradient row (PyTorch's reduction='none'). Stable for logits of +-1e4.\n",
    ),
}


# bias_act's activations that take parameters: act -> (slot, names, set of names, defaults)
# for numeric ones, (name, {choice: slot}) for gelu's approximate
_BIAS_GIVEN: dict = {}


def _bias_given(act, params):
    """(slot, values in catalogue order) of a bias_act call that names parameters of act,
    or (None, ()) to leave it to the Python path (a name act does not take, which that path
    reports). Through the Python path bias_act(x, b, "leaky_relu", negative_slope=0.2) on
    1 x 1024 float32 cost 14.3 us (the defaults 0.6 through the entry, PyTorch 4.6)."""
    known = _BIAS_GIVEN.get(act)
    if known is None:
        return None, ()
    if len(known) == 2:
        name, choices = known
        value = params.get(name) if len(params) == 1 else None
        return (choices.get(value) if value.__class__ is str else None), ()
    slot, names, known_names, defaults = known
    if not params.keys() <= known_names:
        return None, ()
    if len(names) == 1:  # most activations: 0.1 us, against 0.36 for the map below
        return slot, (params.get(names[0], defaults[0]),)
    return slot, tuple(map(params.get, names, defaults))  # a generator cost 1 us more


def build_public_functions() -> dict:
    """{public name: function} for every op of the catalogue."""
    ns = {
        "_C": "c",
        "_M1": -1,  # axis=-1, the softmax default: `is` holds (CPython caches small ints)
        "_fast_forward": _fast_forward,
        "_fast_backward": _fast_backward,
        "_fast_derivative": _fast_derivative,
        "_fast_bias": _fast_bias,
        "_fast_bias_backward": _fast_bias_backward,
        "_fast_xent": _fast_xent,
        "_fast_maxout": _fast_maxout,
        "_fast_maxout_backward": _fast_maxout_backward,
        "_elementwise_forward": elementwise_forward,
        "_elementwise_backward": elementwise_backward,
        "_axis_forward": axis_forward,
        "_axis_backward": axis_backward,
        "_bias_act": bias_act,
        "_bias_act_backward": bias_act_backward,
        "_softmax_cross_entropy": softmax_cross_entropy,
        "_bias_given": _bias_given,
    }
    functions = {}
    for spec in OPS.values():
        if spec.family == ELEMENTWISE:
            fwd, bwd = _build_elementwise(spec, ns)
        elif spec.family == AXIS:
            fwd, bwd = _build_axis(spec, ns)
        else:
            continue
        functions[fwd.public_name] = fwd
        functions[bwd.public_name] = bwd
    # the entry's slots for the fused ops: bias_act's per activation whose parameters all
    # have defaults (and the identity, also act=None; and "gelu:tanh", for the activation's
    # other choice), then the cross-entropy's
    bias_slots = {}
    for act in ("identity", *(n for n in FAST_SLOTS if OPS.get(n.partition(":")[0]) and
                              OPS[n.partition(":")[0]].family == ELEMENTWISE)):
        bias_slots[act] = FAST_SLOTS.setdefault(f"bias_act:{act}", len(FAST_SLOTS))
    bias_slots[None] = bias_slots["identity"]
    _BIAS_GIVEN.clear()
    for act, slot in bias_slots.items():
        spec = OPS.get(act) if act else None
        if spec is None or not spec.params:
            continue
        if any(p.choices for p in spec.params):  # one choice: a slot per value
            (choice,) = spec.params
            _BIAS_GIVEN[act] = (choice.name, {value: bias_slots[act if value == choice.default
                                                                 else f"{act}:{value}"]
                                              for value in choice.choices})
        else:
            _BIAS_GIVEN[act] = (slot, spec.param_names, frozenset(spec.param_names),
                                tuple(spec.defaults().values()))
    ns.update(_BIAS_SLOTS=bias_slots, _KEYWORD_BASE=KEYWORD_BASE,
              _XENT_SLOT=FAST_SLOTS.setdefault("softmax_cross_entropy", len(FAST_SLOTS)))
    assert len(FAST_SLOTS) <= KEYWORD_BASE
    for name, (source, doc) in _FUSED_SOURCES.items():
        base = OPS[name.replace("_backward", "")]
        head, body = source.split("\n", 1)
        functions[name] = _make(name, head + "\n" + _FUSED_FAST[name] + body, doc, base, ns)
    return functions
