"""The ``c`` backend: C kernels from ``csrc/``, built at install by cffi (out-of-line API mode).

The Python side only arranges memory: it hands the kernels flat contiguous buffers through
``ffi.from_buffer`` (no copy), making a contiguous copy only for a layout the kernels cannot
walk (a strided view, or an input and output in different memory orders), and moves the
reduction axis of softmax/maxout last when it is not. cffi releases the GIL for each call;
the C side splits large arrays across its own thread pool (``FUSEDACT_NUM_THREADS``).

The SIMD level is chosen once at load from the CPU's features; ``FUSEDACT_SIMD`` (baseline,
avx2, avx512) forces a lower one, so the tests can run every compiled path on one machine.
On x86, the cheapest kernels' calls whose arrays together span ``FUSEDACT_STREAM_MIN_MB``
(default 40) or more write their outputs with non-temporal stores (csrc/fusedact.c says why
and which); ``off`` never does. A bad value of either variable is an error at the first call
that would use the backend, ``auto`` included.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import _threads
from .._catalogue import ELEMENTWISE_OPS, OPS
from . import _layout
from ._base import Backend

_ABI_VERSION = 3
SIMD_LEVELS = ("baseline", "avx2", "avx512")
_ROWS = {"softmax": 0, "log_softmax": 1, "softmax_backward": 2, "log_softmax_backward": 3}
_AXIS_AND_FUSED = ("softmax", "log_softmax", "maxout", "bias_act", "softmax_cross_entropy")


def load_extension():
    """Import the compiled extension; return (lib, ffi) or raise ImportError with the reason."""
    from .. import _fusedact_c  # built by setup.py's cffi_modules

    lib, ffi = _fusedact_c.lib, _fusedact_c.ffi
    if lib.fa_abi_version() != _ABI_VERSION:
        raise ImportError(
            f"fusedact._fusedact_c has C API version {lib.fa_abi_version()}, "
            f"expected {_ABI_VERSION}: reinstall fusedact"
        )
    return lib, ffi


class CBackend(_layout.FlatElementwise, Backend):
    name = "c"
    peels_to_alignment = True

    def __init__(self):
        self.lib = self.ffi = None
        self._ids = {}
        self._ew_call = {}  # (spec name, params) -> (op id, cffi double[4])
        self._entry_blocks = {}  # id -> every parameter block a fast-path slot was given
        self._entry_bound = False  # the kernels' addresses handed to fusedact._fastpath

    # ---- setup -------------------------------------------------------------------------
    def probe(self):
        try:
            self.lib, self.ffi = load_extension()
        except ImportError as exc:
            return False, f"C extension not built ({exc})"
        self._ids = {self.ffi.string(self.lib.fa_op_name(i)).decode(): i
                     for i in range(self.lib.fa_op_count())}
        missing = [n for n in ELEMENTWISE_OPS if n not in self._ids]
        if missing:
            return False, f"extension lacks kernels for {missing}: reinstall fusedact"
        from .. import _dispatch

        requested = os.environ.get("FUSEDACT_SIMD", "").strip().lower()
        if requested:
            if requested not in SIMD_LEVELS:
                raise _dispatch.BackendConfigError(
                    f"FUSEDACT_SIMD={requested!r} is not one of {', '.join(SIMD_LEVELS)}")
            self.set_simd(requested)
        if os.environ.get("FUSEDACT_STREAM_MIN_MB", "").strip():
            self.lib.fa_stream_min_bytes(_layout.stream_min_bytes_from_env())
        level = self.simd()
        return True, f"C kernels, SIMD level {level} (best on this CPU: {self.simd_max()})"

    def bind_entry(self, op_name, keyword=False):
        """Let fusedact._fastpath run op_name's plain calls: its slot gets the op id and the
        default parameters' block (bias_act: one slot per activation). keyword=False: the
        dispatcher chose this backend for the op process-wide (backend=None calls); True: a
        call named it (backend="c" calls, their own slots). Called once per op and kind, and
        again after register_backend() unbound every slot."""
        from .. import _api, _dispatch

        fastpath = _dispatch._fastpath
        if op_name == "bias_act":
            slots = {name: slot for name, slot in _api.FAST_SLOTS.items()
                     if name.startswith("bias_act:")}
        else:  # the op's own slot and those of its other choices ("gelu:tanh")
            slots = {name: slot for name, slot in _api.FAST_SLOTS.items()
                     if name == op_name or name.startswith(f"{op_name}:")}
        if fastpath is None or not slots or type(self) is not CBackend:
            return  # a registered subclass may override the methods the entry would skip
        base = fastpath.KEYWORD_BASE if keyword else 0
        if not self._entry_bound:
            def address(name):
                return int(self.ffi.cast("uintptr_t", self.ffi.addressof(self.lib, name)))

            # Outputs from _api._ALIGN_MIN elements up are placed as _api._empty_like does.
            fastpath.bind(address("fa_elementwise_f32"), address("fa_elementwise_f64"),
                          _api._ALIGN_MIN, address("fa_elementwise_f16"))
            fastpath.bind_rows(address("fa_rows_f32"), address("fa_rows_f64"),
                               address("fa_axis_f32"), address("fa_axis_f64"))
            fastpath.bind_fused(*(address(f"fa_{name}_{t}")
                                  for name in ("bias_act", "bias_act_backward", "softmax_xent",
                                               "maxout", "maxout_backward")
                                  for t in ("f32", "f64")))
            _threads.get_num_threads()  # reads FUSEDACT_NUM_THREADS, tells the entry
            self._entry_bound = True
        for name, slot in slots.items():
            if name in ("softmax", "log_softmax"):  # an int axis is their one parameter
                fastpath.bind_row_slot(base + slot, _ROWS[name])  # the forward's kind, 0 or 1
                continue
            if name in ("softmax_cross_entropy", "maxout"):
                kind = fastpath.SLOT_XENT if name != "maxout" else fastpath.SLOT_MAXOUT
                fastpath.bind_fused_slot(base + slot, kind, 0, 0)
                continue
            act = name.partition("bias_act:")[2]
            op_name, _, choice = (act or name).partition(":")
            spec = OPS[op_name] if op_name != "identity" else None
            if spec is None:
                op, block = -1, self.ffi.new("double[4]")
            else:
                values = {p.name: p.default for p in spec.params}
                if choice:  # a slot of the op's one choice parameter
                    values = {spec.params[0].name: choice}
                op, block = self._op_and_params(spec, spec.coerce_params(values))
            address_of_block = int(self.ffi.cast("uintptr_t", block))
            given = self._given_params(spec) if spec is not None else ()
            if act:
                fastpath.bind_fused_slot(base + slot, fastpath.SLOT_BIAS, op, address_of_block,
                                         *given)
            else:
                fastpath.bind_slot(base + slot, op, address_of_block, *given)
            # Every block a slot was given lives as long as this backend: keyed by the op, a
            # binding of the keyword's slot replaced (freed) the block the process-wide slot
            # still used (AddressSanitizer: heap-use-after-free in bias_act's identity slot).
            self._entry_blocks[id(block)] = block

    def _given_params(self, spec):
        """How the entry runs a call of spec's op that gives numeric parameters: (their
        count, the kernel, the kernel when the one parameter is 1.0 or -1, the bits of those
        that must not be 0), as Param.coerce and _layout.kernel_name decide; a count of 0
        where the op takes none or takes a choice (the entry then declines such calls)."""
        if not spec.params or any(p.choices for p in spec.params):
            return 0, -1, -1, 0
        count = len(spec.params)
        param_op = self._ids[spec.name]
        unit_op = self._ids[_layout.kernel_name(spec, (1.0,))] if count == 1 else -1
        nonzero = sum(1 << i for i, p in enumerate(spec.params) if p.nonzero)
        return count, param_op, unit_op if unit_op != param_op else -1, nonzero

    def simd(self) -> str:
        return SIMD_LEVELS[self.lib.fa_simd_level()]

    def simd_max(self) -> str:
        return SIMD_LEVELS[self.lib.fa_simd_max_level()]

    def set_simd(self, level: str) -> str:
        """Use `level` or the best below it that this CPU has; returns the level in use."""
        return SIMD_LEVELS[self.lib.fa_simd_set_level(SIMD_LEVELS.index(level))]

    def has_kernel(self, op_name):
        return op_name in self._ids or op_name in _AXIS_AND_FUSED

    def describe(self):
        if self.lib is None:
            return {}
        return {
            "cpu_features": self.ffi.string(self.lib.fa_cpu_features()).decode(),
            "simd": f"{self.simd()} (max {self.simd_max()}; FUSEDACT_SIMD lowers it)",
            "threads": f"{_threads.get_num_threads()} (FUSEDACT_NUM_THREADS caps it)",
            "streaming stores": self._stream_description(),
        }

    def _stream_description(self):
        return _layout.stream_description(self.lib.fa_stream_min_bytes(-1))

    # ---- helpers -------------------------------------------------------------------------
    def _ptr(self, a, writable=False):
        ctype = "float[]" if a.dtype == np.float32 else "double[]"
        # require_writable passed by position everywhere: as a keyword it cost 0.17-0.4 us
        # more per buffer, a tenth of a small call.
        return self.ffi.from_buffer(ctype, a, writable)

    def _kernel(self, name, dtype):
        return getattr(self.lib, f"{name}_{'f32' if dtype == np.float32 else 'f64'}")

    def _op_and_params(self, spec, params):
        key = (spec.name, params)
        hit = self._ew_call.get(key)
        if hit is None:
            hit = (self._ids[_layout.kernel_name(spec, params)],
                   self.ffi.new("double[4]", _layout.param_block(params)))
            if len(self._ew_call) < 4096:  # parameters are usually a handful of constants
                self._ew_call[key] = hit
        return hit

    def _elementwise(self, mode, spec, params, outs, inputs):
        """Run one elementwise kernel over flat buffers (see _layout.flat_views)."""
        op, block = self._op_and_params(spec, params)
        f32 = outs[0].dtype == np.float32
        fn = self.lib.fa_elementwise_f32 if f32 else self.lib.fa_elementwise_f64
        ctype = "float[]" if f32 else "double[]"
        from_buffer, null = self.ffi.from_buffer, self.ffi.NULL
        flat_out, flat_in, targets = _layout.flat_views(outs, inputs)
        flat_in = [from_buffer(ctype, a) for a in flat_in]
        flat_out = [from_buffer(ctype, t, True) for t in flat_out]
        fn(op, mode, flat_in[0], flat_in[1] if len(flat_in) > 1 else null, flat_out[0],
           flat_out[1] if len(flat_out) > 1 else null, outs[0].size, block,
           _threads.get_num_threads())
        _layout.copy_back(outs, targets)

    def elementwise(self, spec, x, params, out):
        if x.flags.c_contiguous and out.flags.c_contiguous:  # the common case, kept short
            op, block = self._op_and_params(spec, params)
            ffi = self.ffi
            # The backend gets float32 or float64 only, so the item size tells them apart
            # (40 ns, against 80 for ==). Not `is`: an unpickled array's float32 dtype is not
            # always the singleton, and the float64 kernel would then write past its buffer.
            if out.dtype.itemsize == 4:
                self.lib.fa_elementwise_f32(
                    op, 0, ffi.from_buffer("float[]", x), ffi.NULL,
                    ffi.from_buffer("float[]", out, True), ffi.NULL, out.size,
                    block, _threads.get_num_threads())
            else:
                self.lib.fa_elementwise_f64(
                    op, 0, ffi.from_buffer("double[]", x), ffi.NULL,
                    ffi.from_buffer("double[]", out, True), ffi.NULL,
                    out.size, block, _threads.get_num_threads())
            return
        self._elementwise(0, spec, params, (out,), (x,))

    def elementwise_backward(self, spec, grad, saved, params, out):
        if grad.flags.c_contiguous and saved.flags.c_contiguous and out.flags.c_contiguous:
            op, block = self._op_and_params(spec, params)
            ffi = self.ffi
            f32 = out.dtype.itemsize == 4  # see elementwise
            ctype = "float[]" if f32 else "double[]"
            fn = self.lib.fa_elementwise_f32 if f32 else self.lib.fa_elementwise_f64
            fn(op, 1, ffi.from_buffer(ctype, grad), ffi.from_buffer(ctype, saved),
               ffi.from_buffer(ctype, out, True), ffi.NULL, out.size, block,
               _threads.get_num_threads())
            return
        self._elementwise(1, spec, params, (out,), (grad, saved))

    # ---- along an axis -------------------------------------------------------------------
    _rows = staticmethod(_layout.rows)
    _rows_out = staticmethod(_layout.rows_out)
    _copy_back = staticmethod(_layout.rows_copy_back)

    def _row_op(self, kind, x, g, axis, out):
        if self._along_axis(kind, x, g, axis, out):
            return
        xr = self._rows(x, axis)
        gr = self._rows(g, axis) if g is not None else None
        target, scratch = self._rows_out(out, axis)
        rows, cols = xr.shape
        self._kernel("fa_rows", out.dtype)(
            _ROWS[kind], self._ptr(xr), self._ptr(gr) if gr is not None else self.ffi.NULL,
            self._ptr(target, True), rows, cols, _threads.get_num_threads())
        self._copy_back(out, axis, scratch)

    def _along_axis(self, kind, x, g, axis, out):
        """The softmax family along a middle axis, in place in memory (fa_axis: the kernels
        walk the rows after it, vectorised across them), when every array is C-contiguous or
        every one Fortran-contiguous (its transpose is then C-contiguous, the axis reversed).
        False for the last axis (the row kernels take it) and for other layouts."""
        ndim = x.ndim
        axis = axis % ndim if ndim else 0
        arrays = (x, out) if g is None else (x, g, out)
        if all(a.flags.c_contiguous for a in arrays):
            pass
        elif all(a.flags.f_contiguous for a in arrays):
            x, out, axis = x.T, out.T, ndim - 1 - axis
            g = None if g is None else g.T
        else:
            return False
        if axis >= ndim - 1:
            return False
        shape = x.shape
        outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
        args = (_ROWS[kind], self._ptr(x), self._ptr(g) if g is not None else self.ffi.NULL,
                self._ptr(out, True), outer, shape[axis])
        if inner == 1:  # only 1s after the axis: rows in memory, as the C-API entry runs them
            self._kernel("fa_rows", out.dtype)(*args, _threads.get_num_threads())
        else:
            self._kernel("fa_axis", out.dtype)(*args, inner, _threads.get_num_threads())
        return True

    def softmax(self, x, axis, out):
        self._row_op("softmax", x, None, axis, out)

    def log_softmax(self, x, axis, out):
        self._row_op("log_softmax", x, None, axis, out)

    def softmax_backward(self, grad, y, axis, out):
        self._row_op("softmax_backward", y, grad, axis, out)

    def log_softmax_backward(self, grad, y, axis, out):
        self._row_op("log_softmax_backward", y, grad, axis, out)

    def maxout(self, x, pieces, axis, out):
        xr = self._rows(x, axis)
        target, scratch = self._rows_out(out, axis)
        rows, cols = xr.shape
        self._kernel("fa_maxout", out.dtype)(self._ptr(xr), self._ptr(target, True), rows,
                                             cols // pieces, pieces, _threads.get_num_threads())
        self._copy_back(out, axis, scratch)

    def maxout_backward(self, grad, x, pieces, axis, out):
        xr = self._rows(x, axis)
        gr = self._rows(grad, axis)
        target, scratch = self._rows_out(out, axis)
        rows, cols = xr.shape
        self._kernel("fa_maxout_backward", out.dtype)(
            self._ptr(gr), self._ptr(xr), self._ptr(target, True), rows, cols // pieces, pieces,
            _threads.get_num_threads())
        self._copy_back(out, axis, scratch)

    # ---- fused ---------------------------------------------------------------------------
    def _bias_op(self, spec, params):
        if spec is None:
            return -1, [0.0] * 4
        return self._ids[_layout.kernel_name(spec, params)], _layout.param_block(params)

    def bias_act(self, spec, x, bias, params, out):
        op, block = self._bias_op(spec, params)
        xr = self._rows(x, -1)
        target, scratch = self._rows_out(out, -1)
        rows, cols = xr.shape
        self._kernel("fa_bias_act", out.dtype)(
            op, self._ptr(xr), self._ptr(np.ascontiguousarray(bias)), self._ptr(target, True),
            rows, cols, block, _threads.get_num_threads())
        self._copy_back(out, -1, scratch)

    def bias_act_backward(self, spec, grad, x, bias, params, out_grad_x, out_grad_bias):
        op, block = self._bias_op(spec, params)
        xr, gr = self._rows(x, -1), self._rows(grad, -1)
        target, scratch = self._rows_out(out_grad_x, -1)
        gb = out_grad_bias if out_grad_bias.flags.c_contiguous else np.empty_like(out_grad_bias)
        rows, cols = xr.shape
        self._kernel("fa_bias_act_backward", out_grad_x.dtype)(
            op, self._ptr(gr), self._ptr(xr), self._ptr(np.ascontiguousarray(bias)),
            self._ptr(target, True), self._ptr(gb, True), rows, cols, block,
            _threads.get_num_threads())
        self._copy_back(out_grad_x, -1, scratch)
        if gb is not out_grad_bias:
            out_grad_bias[...] = gb

    def softmax_cross_entropy(self, logits, labels, ignore_index, out_loss, out_grad):
        zr = self._rows(logits, -1)
        target, scratch = self._rows_out(out_grad, -1)
        loss = out_loss if out_loss.flags.c_contiguous else np.empty_like(out_loss)
        rows, cols = zr.shape
        labels = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
        self._kernel("fa_softmax_xent", out_grad.dtype)(
            self._ptr(zr), self.ffi.from_buffer("int64_t[]", labels), ignore_index,
            self._ptr(loss.reshape(-1), True), self._ptr(target, True), rows, cols,
            _threads.get_num_threads())
        self._copy_back(out_grad, -1, scratch)
        if loss is not out_loss:
            out_loss[...] = loss
