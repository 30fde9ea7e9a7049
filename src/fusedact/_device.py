"""Calls with device arrays: the SPEC section 3 rules for objects with
``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, PyTorch CUDA tensors).

What differs from the host path (``fusedact._api``):
- results are Numba device arrays (C-contiguous), or the caller's own ``out`` object;
- ``out`` must be a device array of exactly the result's shape and dtype; it may be the input
  itself (in place), and any other overlap is computed into scratch and copied, as on the host;
- the kernels read any input dtype and evaluate in float64, so float16, integer and mixed
  inputs need no conversion pass: the result dtype follows the host rules;
- host arrays mixed into a device call (a NumPy bias, say) are copied to the device;
- non-contiguous inputs (views, transposes, negative strides) are gathered into a contiguous
  scratch first; a reduction axis other than the last is moved there the same way.
Kernels run on the default stream and return without synchronising, as CuPy and PyTorch do.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import _dispatch
from ._api import _result_dtype
from ._catalogue import OPS
from .backends import _layout


def is_device(*arrays) -> bool:
    return any(_dispatch._is_device_array(a) for a in arrays if a is not None)


def _backend(keyword, op):
    be = _dispatch.resolve(keyword, op, _DeviceProbe)
    if be.name != "cuda":
        raise TypeError(f"{op}: device arrays run on the 'cuda' backend, not {be.name!r}; "
                        "copy to the host first (e.g. .copy_to_host()) for that backend")
    return be


class _DeviceProbe:
    """Stands for 'a device array' when asking the dispatcher which backend runs."""

    __cuda_array_interface__ = {}


# ---- arrays ------------------------------------------------------------------------------
def _dev(be, a, op, arg):
    """A Numba device array view of a (zero-copy for device arrays; host arrays copied)."""
    if getattr(a, "__cuda_ndarray__", False):
        d = a
    elif _dispatch._is_device_array(a):
        if be.simulator:
            raise TypeError(f"{op}: {arg} is a {type(a).__name__} device array, which Numba's "
                            "CUDA simulator cannot read; it takes its own device arrays only")
        d = be.cuda.as_cuda_array(a)
    else:
        try:
            h = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{op}: {arg} is not array-like: {exc}") from None
        _result_dtype(h.dtype, op, arg)
        d = be.cuda.to_device(h if h.flags.c_contiguous else h.copy())  # 0-d stays 0-d
    _result_dtype(np.dtype(d.dtype), op, arg)  # complex, object, ...: TypeError
    return d


def _span(d):
    """[first byte, last byte] that a device array touches."""
    ptr = _address(d)
    if d.size == 0:
        return ptr, ptr - 1
    lo = hi = ptr
    for n, s in zip(d.shape, d.strides):
        if s > 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi + d.dtype.itemsize - 1


def _address(d):
    cai = getattr(d, "__cuda_array_interface__", None)
    if cai is None:  # the simulator's arrays wrap host memory
        return d.__array_interface__["data"][0]
    return cai["data"][0]


def _read_only(d):
    cai = getattr(d, "__cuda_array_interface__", None)
    if cai is None:
        return not d.flags.writeable
    return bool(cai["data"][1])


def _overlaps(a, b):
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a0 <= b1 and b0 <= a1


def _same_view(a, b):
    return (_span(a) == _span(b) and tuple(a.shape) == tuple(b.shape)
            and tuple(a.strides) == tuple(b.strides) and a.dtype == b.dtype)


def _is_c_contiguous(d):
    expected = d.dtype.itemsize
    for n, s in zip(reversed(d.shape), reversed(d.strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _permute(be, d, axes):
    if be.simulator:
        return d.transpose(axes)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(tuple(d.shape[i] for i in axes), tuple(d.strides[i] for i in axes),
                         d.dtype, gpu_data=d.gpu_data)


def _c_view(be, d, shape):
    """d (C-contiguous) reshaped, or a C-contiguous gathered copy of d, as `shape`."""
    if _is_c_contiguous(d):
        return d.reshape(shape) if tuple(d.shape) != tuple(shape) else d
    flat = be.cuda.device_array(d.size, d.dtype)
    be.gather(d if d.ndim else d.reshape(1), flat)
    return flat.reshape(shape)


def _rows(be, d, axis):
    """d with `axis` last, as C-contiguous (rows, n)."""
    n = d.shape[axis]
    rows = d.size // n if n else 0
    if axis != d.ndim - 1:
        order = [i for i in range(d.ndim) if i != axis] + [axis]
        d = _permute(be, d, order)
    return _c_view(be, d, (rows, n))


class _Out:
    """Where a kernel writes one result on the device: the caller's out, or scratch."""

    def __init__(self, be, out, shape, dtype, inputs, op, name="out", in_place_ok=True):
        self.be, self.shape = be, tuple(shape)
        self.user = out
        if out is None:
            self.target = be.cuda.device_array(self.shape, dtype)
            self.direct = True
            return
        if not _dispatch._is_device_array(out):
            raise TypeError(f"{op}: {name} must be a device array (like the inputs), "
                            f"got {type(out).__name__}")
        d = out if getattr(out, "__cuda_ndarray__", False) else be.cuda.as_cuda_array(out)
        if tuple(d.shape) != self.shape:
            raise ValueError(f"{op}: {name} has shape {tuple(d.shape)}, expected {self.shape}")
        if np.dtype(d.dtype) != dtype:
            raise TypeError(f"{op}: {name} has dtype {d.dtype}, expected {dtype}")
        if _read_only(d):
            raise ValueError(f"{op}: {name} is read-only")
        self.direct = _is_c_contiguous(d) and all(
            (in_place_ok and _same_view(d, a)) or not _overlaps(d, a) for a in inputs)
        self.out_view = d
        self.target = d if self.direct else be.cuda.device_array(self.shape, dtype)

    def view(self, shape):
        return self.target.reshape(shape) if tuple(self.target.shape) != tuple(shape) else self.target

    def finish(self):
        if not self.direct:
            flat = self.target.reshape(self.target.size) if self.target.ndim else self.target.reshape(1)
            dst = self.out_view if self.out_view.ndim else self.out_view.reshape(1)
            self.be.scatter(flat, dst)
        return self.user if self.user is not None else self.target


def _unpack(out, count, op):
    if out is None:
        return (None,) * count
    if not isinstance(out, tuple) or len(out) != count:
        raise TypeError(f"{op}: out must be a tuple of {count} device arrays (or None)")
    return out


def _flat_size(shape):
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


# ---- the operations ---------------------------------------------------------------------------
def elementwise_forward(spec, x, params, out, derivative, backend):
    op = spec.name
    be = _backend(backend, op)
    d = _dev(be, x, op, "x")
    result = _result_dtype(np.dtype(d.dtype), op, "x")
    values = spec.coerce_params(params) if params else ()
    kernel = _layout.kernel_name(spec, values)
    n = _flat_size(d.shape)
    outs = [_Out(be, o, d.shape, result, (d,), op, name)
            for o, name in zip(_unpack(out, 2, op) if derivative else (out,),
                               ("out[0]", "out[1]") if derivative else ("out",))]
    if derivative and all(o.user is not None for o in outs) and _overlaps(
            outs[0].out_view, outs[1].out_view):
        raise ValueError(f"{op}: out[0] and out[1] must not overlap")
    if d.size:
        flat_in = _c_view(be, d, (n,))
        be.run_elementwise(2 if derivative else 0, kernel, values,
                           [o.view((n,)) for o in outs], [flat_in])
    results = [o.finish() for o in outs]
    return tuple(results) if derivative else results[0]


def elementwise_backward(spec, grad, saved, params, out, backend):
    op = f"{spec.name}_backward"
    be = _backend(backend, spec.name)
    g, s = _dev(be, grad, op, "grad_out"), _dev(be, saved, op, spec.saved)
    if tuple(g.shape) != tuple(s.shape):
        raise ValueError(f"{op}: grad_out has shape {tuple(g.shape)} but {spec.saved} has shape "
                         f"{tuple(s.shape)}; they must be equal (no broadcasting)")
    result = np.promote_types(_result_dtype(np.dtype(g.dtype), op, "grad_out"),
                              _result_dtype(np.dtype(s.dtype), op, spec.saved))
    values = spec.coerce_params(params) if params else ()
    n = _flat_size(g.shape)
    o = _Out(be, out, g.shape, result, (g, s), op)
    if g.size:
        be.run_elementwise(1, _layout.kernel_name(spec, values), values, [o.view((n,))],
                           [_c_view(be, g, (n,)), _c_view(be, s, (n,))])
    return o.finish()


def _axis_of(d, axis, op):
    if d.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension, got a 0-d array")
    return normalize_axis_index(axis, d.ndim)


def _rows_result(be, o, shape, axis, rows_shape):
    """(2-D C target for the kernel, function that puts it into o)."""
    if axis == len(shape) - 1 and o.direct:
        return o.view(rows_shape), o.finish
    scratch = be.cuda.device_array(rows_shape, o.target.dtype)

    def finish():
        moved = [i for i in range(len(shape)) if i != axis] + [axis]
        be.scatter(scratch.reshape(scratch.size), _permute(be, o.target, moved))
        return o.finish()

    return scratch, finish


def axis_forward(name, x, axis, out, backend, pieces=None):
    be = _backend(backend, name)
    d = _dev(be, x, name, "x")
    ax = _axis_of(d, axis, name)
    result = _result_dtype(np.dtype(d.dtype), name, "x")
    shape = tuple(d.shape)
    if name == "maxout":
        if pieces < 1:
            raise ValueError(f"maxout: pieces must be >= 1, got {pieces}")
        if shape[ax] % pieces:
            raise ValueError(f"maxout: x.shape[{ax}] = {shape[ax]} is not a multiple of "
                             f"pieces = {pieces}")
        shape = shape[:ax] + (shape[ax] // pieces,) + shape[ax + 1:]
    o = _Out(be, out, shape, result, (d,), name, in_place_ok=name != "maxout")
    if d.size:
        x2 = _rows(be, d, ax)
        target, finish = _rows_result(be, o, shape, ax, (x2.shape[0], shape[ax]))
        if name == "maxout":
            be.run_maxout(False, [x2], target, pieces)
        else:
            be.run_rows(name, [x2], target)
        return finish()
    return o.finish()


def axis_backward(name, grad, saved, axis, out, backend, pieces=None):
    op = f"{name}_backward"
    saved_name = OPS[name].saved
    be = _backend(backend, name)
    g, s = _dev(be, grad, op, "grad_out"), _dev(be, saved, op, saved_name)
    ax = _axis_of(s, axis, op)
    expected = tuple(s.shape)
    if name == "maxout":
        if pieces < 1 or s.shape[ax] % pieces:
            raise ValueError(f"{op}: x.shape[{ax}] = {s.shape[ax]} is not a multiple of "
                             f"pieces = {pieces}")
        expected = expected[:ax] + (s.shape[ax] // pieces,) + expected[ax + 1:]
    if tuple(g.shape) != expected:
        raise ValueError(f"{op}: grad_out has shape {tuple(g.shape)}, expected {expected} "
                         f"(from {saved_name} of shape {tuple(s.shape)})")
    result = np.promote_types(_result_dtype(np.dtype(g.dtype), op, "grad_out"),
                              _result_dtype(np.dtype(s.dtype), op, saved_name))
    shape = tuple(s.shape)
    o = _Out(be, out, shape, result, (g, s), op, in_place_ok=name != "maxout")
    if s.size:
        s2, g2 = _rows(be, s, ax), _rows(be, g, ax)
        target, finish = _rows_result(be, o, shape, ax, s2.shape)
        if name == "maxout":
            be.run_maxout(True, [g2, s2], target, pieces)
        else:
            be.run_rows(op, [g2, s2], target)
        return finish()
    return o.finish()


def _bias_inputs(be, x, bias, op):
    d, b = _dev(be, x, op, "x"), _dev(be, bias, op, "bias")
    if d.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension")
    if tuple(b.shape) != (tuple(d.shape)[-1],):
        raise ValueError(f"{op}: bias has shape {tuple(b.shape)}, expected ({tuple(d.shape)[-1]},) "
                         f"(the last axis of x, shape {tuple(d.shape)})")
    return d, b


def _compute(result):
    """The dtype x + bias is rounded to before the activation (float16 computes in float32)."""
    return np.dtype(np.float32) if result == np.float16 else result


def bias_act(x, bias, act, out, backend, params, spec, values):
    op = "bias_act"
    be = _backend(backend, op)
    d, b = _bias_inputs(be, x, bias, op)
    result = np.promote_types(_result_dtype(np.dtype(d.dtype), op, "x"),
                              _result_dtype(np.dtype(b.dtype), op, "bias"))
    kernel = "identity" if spec is None else _layout.kernel_name(spec, values)
    o = _Out(be, out, d.shape, result, (d, b), op)
    if d.size:
        rows2 = (d.size // tuple(d.shape)[-1], tuple(d.shape)[-1])
        be.run_bias(kernel, values, _c_view(be, d, rows2), _c_view(be, b, (tuple(d.shape)[-1],)),
                    o.view(rows2), _compute(result))
    return o.finish()


def bias_act_backward(grad, x, bias, act, out, backend, params, spec, values):
    op = "bias_act_backward"
    be = _backend(backend, "bias_act")
    d, b = _bias_inputs(be, x, bias, op)
    g = _dev(be, grad, op, "grad_out")
    if tuple(g.shape) != tuple(d.shape):
        raise ValueError(f"{op}: grad_out has shape {tuple(g.shape)} but x has shape "
                         f"{tuple(d.shape)}; they must be equal")
    result = np.promote_types(np.promote_types(
        _result_dtype(np.dtype(g.dtype), op, "grad_out"), _result_dtype(np.dtype(d.dtype), op, "x")),
        _result_dtype(np.dtype(b.dtype), op, "bias"))
    kernel = "identity" if spec is None else _layout.kernel_name(spec, values)
    out_gx, out_gb = _unpack(out, 2, op)
    ox = _Out(be, out_gx, d.shape, result, (g, d, b), op, "out[0]")
    ob = _Out(be, out_gb, b.shape, result, (g, d, b, ox.target), op, "out[1]", in_place_ok=False)
    cols = tuple(d.shape)[-1]
    if d.size:
        rows2 = (d.size // cols, cols)
        be.run_bias_backward(kernel, values, _c_view(be, g, rows2), _c_view(be, d, rows2),
                             _c_view(be, b, (cols,)), ox.view(rows2), ob.view((cols,)),
                             _compute(result))
    elif cols:
        ob.target.copy_to_device(np.zeros(cols, result))  # no rows: the sum is 0
    return ox.finish(), ob.finish()


def _labels_on_host(be, labels):
    if _dispatch._is_device_array(labels):
        d = labels if getattr(labels, "__cuda_ndarray__", False) else be.cuda.as_cuda_array(labels)
        return _c_view(be, d, tuple(d.shape)).copy_to_host() if d.size else np.empty(
            tuple(d.shape), d.dtype)
    return np.asarray(labels)


def softmax_cross_entropy(logits, labels, ignore_index, out, backend):
    op = "softmax_cross_entropy"
    be = _backend(backend, op)
    z = _dev(be, logits, op, "logits")
    if z.ndim == 0:
        raise ValueError(f"{op}: logits must have at least one dimension (classes last)")
    lab = _labels_on_host(be, labels)  # checked here; 1/classes of the logits' bytes
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class indices, got dtype {lab.dtype}")
    if lab.shape != tuple(tuple(z.shape)[:-1]):
        raise ValueError(f"{op}: labels has shape {lab.shape}, expected {tuple(tuple(z.shape)[:-1])} "
                         f"(logits shape {tuple(z.shape)} without its last axis)")
    n_classes = tuple(z.shape)[-1]
    lab64 = lab.astype(np.int64)
    ignore_index = int(ignore_index)
    bad = (lab64 != ignore_index) & ((lab64 < 0) | (lab64 >= n_classes))
    if bad.any():
        raise ValueError(f"{op}: label {lab64[bad].flat[0]} is out of range for {n_classes} "
                         f"classes (expected 0..{n_classes - 1}, or ignore_index={ignore_index})")
    result = _result_dtype(np.dtype(z.dtype), op, "logits")
    out_loss, out_grad = _unpack(out, 2, op)
    ol = _Out(be, out_loss, lab.shape, result, (z,), op, "out[0]", in_place_ok=False)
    # Not in place: a row's loss reads logits[label] while other threads write the gradient.
    og = _Out(be, out_grad, z.shape, result, (z,), op, "out[1]", in_place_ok=False)
    if z.size:
        rows = z.size // n_classes
        be.run_xent(_c_view(be, z, (rows, n_classes)),
                    be.cuda.to_device(np.ascontiguousarray(lab64.reshape(-1))), ignore_index,
                    ol.view((rows,)), og.view((rows, n_classes)))
    return ol.finish(), og.finish()
