"""Memory arrangement shared by the compiled backends: their kernels walk flat contiguous
buffers, or C-contiguous rows with the reduction axis last; these helpers build those views
(copying only when the layout requires it) and put scratch results back."""

from __future__ import annotations

import numpy as np

from .._catalogue import OPS


def kernel_name(spec, params):
    """The compiled kernel for an op and its parameters: gelu's tanh form is its own kernel,
    and swish with beta = 1 (its default) is silu, whose kernel needs no rounding-error
    terms for beta x (float32, 4M elements, one thread: 8.7 ms -> 2.5 ms)."""
    if spec.name == "gelu" and params and params[0] == "tanh":
        return "gelu_tanh"
    if spec.name == "swish" and params and not isinstance(params[0], str) \
            and float(params[0]) == 1.0:
        return "silu"
    return spec.name


# Kernels of one catalogue op under a name of their own: gelu's tanh form, and numba's
# softplus forward at beta = 1.
_KERNEL_OF_OP = {"gelu_tanh": "gelu", "softplus1": "softplus"}


def op_traits(kernel):
    """(piecewise, backward reads y) for a compiled kernel, from the catalogue."""
    spec = OPS[_KERNEL_OF_OP.get(kernel, kernel)]
    return spec.piecewise, spec.saved == "y"


def param_block(params):
    """The op's numeric parameters as the 4 doubles the compiled kernels read."""
    values = [float(p) for p in params if not isinstance(p, str)]
    return values + [0.0] * (4 - len(values))


# Streaming stores (csrc/fusedact.c measured them): the ops and modes cheap enough to gain,
# (0 forward, 1 backward, 2 derivative=True), and the default size, in bytes of all the
# call's arrays together, from which they stream.
STREAMED_MODES = {"relu": (0, 1, 2), "leaky_relu": (0, 1, 2), "relu6": (0, 1, 2),
                  "hardtanh": (0, 1, 2), "sigmoid": (1,), "tanh": (1,), "hardsigmoid": (1,),
                  "hardswish": (1,), "softsign": (1,)}
STREAM_MIN_BYTES_DEFAULT = 40 << 20
STREAM_OFF = 2**63 - 1


def stream_min_bytes_from_env():
    """FUSEDACT_STREAM_MIN_MB: whole MiB, or 'off'; the default when unset."""
    import os

    value = os.environ.get("FUSEDACT_STREAM_MIN_MB", "").strip().lower()
    if not value:
        return STREAM_MIN_BYTES_DEFAULT
    if value == "off":
        return STREAM_OFF
    if value.isdigit():
        return min(int(value), 2**43 - 1) << 20
    from .._dispatch import BackendConfigError

    raise BackendConfigError(
        f"FUSEDACT_STREAM_MIN_MB={value!r} is not a whole number of MiB or 'off'")


def stream_description(limit):
    if limit >= STREAM_OFF:
        return "off (FUSEDACT_STREAM_MIN_MB)"
    return f"calls spanning {limit / 2**20:g} MiB or more (FUSEDACT_STREAM_MIN_MB)"


class FlatElementwise:
    """The three elementwise entry points of a backend whose kernels take a mode
    (0 forward, 1 backward, 2 forward with derivative) over flat buffers."""

    def elementwise(self, spec, x, params, out):
        self._elementwise(0, spec, params, (out,), (x,))

    def elementwise_backward(self, spec, grad, saved, params, out):
        self._elementwise(1, spec, params, (out,), (grad, saved))

    def elementwise_with_derivative(self, spec, x, params, out_y, out_d):
        self._elementwise(2, spec, params, (out_y, out_d), (x,))


def flat_views(outs, inputs):
    """(flat outputs, flat inputs, targets) in the outputs' memory order (C or Fortran).

    Inputs in another layout are copied into that order; outputs that are not contiguous get
    C-ordered scratch targets, which `copy_back` writes into them afterwards."""
    if all(o.flags.c_contiguous for o in outs):
        order, targets = "C", list(outs)
    elif all(o.flags.f_contiguous for o in outs):
        order, targets = "F", list(outs)
    else:
        order, targets = "C", [np.empty(o.shape, o.dtype) for o in outs]
    contiguous = "c_contiguous" if order == "C" else "f_contiguous"
    flat_in = [(a if getattr(a.flags, contiguous) else np.array(a, order=order))
               .ravel(order=order) for a in inputs]  # 1-D views of contiguous memory
    return [t.ravel(order=order) for t in targets], flat_in, targets


def copy_back(outs, targets):
    for o, t in zip(outs, targets):
        if t is not o:
            o[...] = t


def _last_and_contiguous(a, axis):
    # The common case, tested first: np.moveaxis costs 2.8 us a call, and three of them
    # (x, grad, out) made softmax backward on 256 rows of 1024 cost 20 us more than its
    # kernel (49 us).
    return (axis == -1 or axis == a.ndim - 1) and a.flags.c_contiguous


# Another axis goes last by swapping it with the last one: any order of the other axes
# serves, so long as the input, gradient and output views take the same one. ndarray.swapaxes
# is one C call; np.moveaxis (two normalize_axis_tuple calls each) made softmax along axis 0
# of a 32 x 32 float32 array cost 34.8 us a call, against PyTorch's 4.3.
def rows(a, axis):
    """a with `axis` last, as a C-contiguous 2-D array (a copy only if needed)."""
    if _last_and_contiguous(a, axis):
        return a.reshape(-1, a.shape[-1])
    moved = np.ascontiguousarray(a.swapaxes(axis, -1))
    return moved.reshape(-1, moved.shape[-1])


def rows_out(out, axis):
    """(2-D C-contiguous target with `axis` last, scratch to copy back into out or None)."""
    if _last_and_contiguous(out, axis):
        return out.reshape(-1, out.shape[-1]), None
    moved = out.swapaxes(axis, -1)
    if moved.flags.c_contiguous:
        return moved.reshape(-1, moved.shape[-1]), None
    scratch = np.empty(moved.shape, out.dtype)
    return scratch.reshape(-1, moved.shape[-1]), scratch


def rows_copy_back(out, axis, scratch):
    if scratch is not None:
        out.swapaxes(axis, -1)[...] = scratch
