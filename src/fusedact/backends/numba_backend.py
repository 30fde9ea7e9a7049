"""The ``numba`` backend: Numba JIT CPU kernels, the C kernels' algorithms in Python.

The scalar math and op formulas live in ``_numba_math`` (one function per op and direction,
evaluated in float64, coefficients shared with the C code through ``fusedact._coeffs``); the
loops in ``_numba_loops``, a template bound to one op per generated copy. They compile lazily
per op and dtype on first use (nothing compiles at import) and are cached on disk
(``FUSEDACT_CACHE_DIR``, default ~/.cache/fusedact, and Numba's own cache folders;
``FUSEDACT_NUMBA_CACHE=0`` turns it off): measured here, a first gelu call costs 1.3 s in a
fresh process and 0.29 s (loading) in the next, each further cached kernel ~2 ms. Loops run
serial below 65,536 elements and with ``prange`` above (prange costs ~1.3 us a call here;
FUSEDACT_NUM_THREADS caps its threads).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import threading
import types

import numpy as np

from .. import _threads
from .._catalogue import ELEMENTWISE_OPS
from . import _layout
from ._base import Backend

_PARALLEL_MIN = 65536
# The ops _numba_math32 serves (kept here so that importing this module imports no numba).
_F32_KERNELS = frozenset(("sigmoid", "tanh", "relu", "leaky_relu", "relu6", "hardtanh", "elu",
                          "selu", "celu", "silu", "logsigmoid", "hardsigmoid", "hardswish",
                          "softsign", "gelu", "swish", "softplus", "mish", "gelu_tanh",
                          "softplus1"))
_AXIS_AND_FUSED = ("softmax", "log_softmax", "maxout", "bias_act", "softmax_cross_entropy")


class NumbaBackend(_layout.FlatElementwise, Backend):
    name = "numba"

    def __init__(self):
        self._loops = {}  # (kernel name, shape) -> (serial, parallel) dispatchers
        # (mode, op, params, dtype) -> (loops, p0, p1, p3, kernel, f32) of a past call
        self._lanes = {}
        self.numba = None
        # bytes of a call's arrays from which STREAMED_MODES stream (the C backend's limit)
        self.stream_min_bytes = _layout.STREAM_MIN_BYTES_DEFAULT

    def probe(self):
        try:
            import numba

            from . import _numba_math  # noqa: F401 - defines the kernels (no compilation)
        except ImportError as exc:
            return False, f"numba is not installed ({exc}); pip install 'fusedact[numba]'"
        self.numba = numba
        self.stream_min_bytes = _layout.stream_min_bytes_from_env()
        return True, (f"numba {numba.__version__} JIT kernels (compiled on first use, cached "
                      f"on disk)" if _cache_usable() else
                      f"numba {numba.__version__} JIT kernels (compiled on first use; no disk "
                      f"cache: FUSEDACT_NUMBA_CACHE=0 or {_cache_root()} not writable)")

    def has_kernel(self, op_name):
        return op_name in ELEMENTWISE_OPS or op_name in _AXIS_AND_FUSED

    def describe(self):
        if self.numba is None:
            return {}
        return {"threads": f"{_threads.get_num_threads()} (FUSEDACT_NUM_THREADS caps it)",
                "threading layer": str(self.numba.config.THREADING_LAYER),
                "streaming stores": _layout.stream_description(self.stream_min_bytes)}

    # ---- kernel construction ---------------------------------------------------------------
    def _ew_loops(self, kernel, f32=False):
        key = (kernel, "f32") if f32 else kernel
        hit = self._loops.get(key)
        if hit is None:
            hit = _build_elementwise(self.numba, kernel, f32)
            self._loops[key] = hit
        return hit

    def _run(self, pair, n, *args):
        if n >= _PARALLEL_MIN:
            threads = _threads.get_num_threads()
            if threads > 1:
                # numba's count is per calling thread; setting it costs 1.1-3 us a call, so
                # only when it is not what this thread last set (a count the caller gives
                # numba itself in between then stands until fusedact's count changes)
                if getattr(_numba_threads, "count", None) != threads:
                    self.numba.set_num_threads(min(threads,
                                                   self.numba.config.NUMBA_NUM_THREADS))
                    _numba_threads.count = threads
                pair[1](*args)
                return
        pair[0](*args)

    def _streamed(self, kernel, f32, mode, flat_out, arrays):
        """The streaming loops when this call is one to stream (large enough, an op and mode
        of STREAMED_MODES, outputs at whole elements and, with two, at the same offset from a
        64-byte line), else None."""
        if (arrays * flat_out[0].nbytes < self.stream_min_bytes
                or mode not in _layout.STREAMED_MODES.get(kernel, ())):
            return None
        addresses = [o.ctypes.data for o in flat_out]
        if addresses[0] % flat_out[0].itemsize or (addresses[-1] - addresses[0]) % 64:
            return None
        key = ("streamed", kernel, f32)
        hit = self._loops.get(key)
        if hit is None:
            hit = self._loops[key] = _build_streamed(self.numba, kernel, f32)
        return hit[mode]

    # The forward and backward calls on C-contiguous arrays seen before, without the general
    # method's tuples and loops over them, and the thread count read only for calls large
    # enough to use it (relu on 1,024 float32 elements through fusedact.relu, best of 7:
    # forward 3.10 -> 2.08 us a call, backward 3.45 -> 2.38; c: 0.60 and 0.65).
    def elementwise(self, spec, x, params, out):
        lane = self._lanes.get((0, spec.name, params, out.dtype))
        if lane is None or not (x.flags.c_contiguous and out.flags.c_contiguous):
            return self._elementwise(0, spec, params, (out,), (x,))
        loops, p0, p1, p3, kernel, f32 = lane
        if x.ndim != 1:
            x, out = x.reshape(-1), out.reshape(-1)
        if 2 * x.nbytes >= self.stream_min_bytes:
            loops = self._streamed(kernel, f32, 0, [out], 2) or loops
        self._run(loops, x.size, x, out, p0, p1, p3)

    def elementwise_backward(self, spec, grad, saved, params, out):
        lane = self._lanes.get((1, spec.name, params, out.dtype))
        if lane is None or not (grad.flags.c_contiguous and saved.flags.c_contiguous
                                and out.flags.c_contiguous):
            return self._elementwise(1, spec, params, (out,), (grad, saved))
        loops, p0, p1, p3, kernel, f32 = lane
        if grad.ndim != 1:
            grad, saved, out = grad.reshape(-1), saved.reshape(-1), out.reshape(-1)
        if 3 * grad.nbytes >= self.stream_min_bytes:
            loops = self._streamed(kernel, f32, 1, [out], 3) or loops
        self._run(loops, grad.size, grad, saved, out, p0, p1, p3)

    def _elementwise(self, mode, spec, params, outs, inputs):
        key = (mode, spec.name, params, outs[0].dtype)
        lane = self._lanes.get(key)
        if lane is not None and all(a.flags.c_contiguous for a in (*outs, *inputs)):
            # the common call, C-contiguous arrays: 1-D views, the kernel and parameters of
            # the first such call (1,024 float32 elements: 3.5 -> 1.8 us in this method, of
            # which the compiled call is 0.34; relu at 262,144, 2 threads: 26.9 -> 21.3 us
            # a call with the thread count below)
            loops, p0, p1, p3, kernel, f32 = lane
            flat = [a if a.ndim == 1 else a.reshape(-1) for a in (*inputs, *outs)]
            if flat[0].nbytes * len(flat) >= self.stream_min_bytes:
                loops = self._streamed(kernel, f32, mode, flat[len(inputs):], len(flat)) or loops
            self._run(loops, flat[0].size, *flat, p0, p1, p3)
            return
        kernel = _layout.kernel_name(spec, params)
        p0, p1 = _layout.param_block(params)[:2]
        if kernel == "softplus" and mode == 0 and p0 == 1.0:
            # beta = 1, the default: the forward without beta's rounding term and division,
            # as the C loops choose it (the same bits). 262,144 elements, one and two
            # threads, medians of 100 side by side with c: numba / c time 1.37-1.47 -> 0.90-1.07
            # in float64, 1.18-1.43 -> 0.82-1.15 in float32
            kernel = "softplus1"
        flat_out, flat_in, targets = _layout.flat_views(outs, inputs)
        # float32 data in float32 arithmetic where _numba_math32 has the op (2x the lanes).
        f32 = outs[0].dtype.itemsize == 4 and kernel in _F32_KERNELS
        loops = self._ew_loops(kernel, f32)[mode]
        streamed = self._streamed(kernel, f32, mode, flat_out, len(flat_out) + len(flat_in))
        self._run(streamed or loops, flat_out[0].size, *flat_in, *flat_out, p0, p1,
                  _residual(p0, f32))
        _layout.copy_back(outs, targets)
        if len(self._lanes) >= _LANES_KEPT:  # parameters swept over (or NaN, never equal)
            self._lanes.clear()
        self._lanes[key] = (loops, p0, p1, _residual(p0, f32), kernel, f32)

    # ---- rows ------------------------------------------------------------------------------
    _rows = staticmethod(_layout.rows)
    _rows_out = staticmethod(_layout.rows_out)

    def _row_kernel(self, name, f32=False):
        key = ("rows", name, f32)
        if key not in self._loops:
            self._loops[key] = _build_rows(self.numba, name, f32)
        return self._loops[key]

    def _row_call(self, name, axis, out, *arrays):
        dt = out.dtype
        first = arrays[0]
        if (dt.char in "fd" and out.flags.c_contiguous and (axis == -1 or axis == out.ndim - 1)
                and first.dtype == dt and first.flags.c_contiguous
                and (len(arrays) == 1 or (arrays[1].dtype == dt
                                          and arrays[1].flags.c_contiguous))):
            # The common call, rows along the last axis of C-contiguous arrays of the compute
            # type, straight to the loops, 2-D as they are or as 2-D views (softmax_backward
            # on 16 rows of 1024 float32, one thread: 5.6 -> 4.5 us in this method, of which
            # the loop takes 2.9)
            if out.ndim != 2:
                n = out.shape[-1]
                arrays = [a.reshape(-1, n) for a in arrays]
                out = out.reshape(-1, n)
            loops = self._loops.get(("rows", name, dt.itemsize == 4))
            if loops is None:
                loops = self._row_kernel(name, dt.itemsize == 4)
            self._run(loops, out.size, *arrays, out)
            return
        if (dt.char in "fd" and out.ndim > 1 and out.flags.c_contiguous
                and all(a.dtype == dt and a.flags.c_contiguous for a in arrays)):
            # along a middle axis of C-contiguous arrays: down the columns in place in memory
            # (_numba_loops.axis_*, the scheme of c's fa_axis), or rows where only 1s follow
            # the axis. float32, one thread, 8 x 21 x 64 x 64 along axis 1: softmax 5.0 ms
            # through transposing copies -> 0.71 ms (c 0.66-0.69 in the same run)
            ax = axis % out.ndim
            outer, n = math.prod(out.shape[:ax]), out.shape[ax]
            inner = math.prod(out.shape[ax + 1:])
            f32 = dt.itemsize == 4
            if inner == 1:
                self._run(self._row_kernel(name, f32), out.size,
                          *(a.reshape(outer, n) for a in arrays), out.reshape(outer, n))
            else:
                self._run(self._row_kernel("axis_" + name, f32), out.size,
                          *(a.reshape(outer, n, inner) for a in arrays),
                          out.reshape(outer, n, inner))
            return
        target, scratch = self._rows_out(out, axis)
        # float32 rows in float32 arithmetic (the sums in float64): 2x the SIMD lanes. The
        # rows go in the compute type (float16 data is computed in float32): row_max reads
        # a row's bits as integers of the same width.
        ctype = np.dtype(np.float32 if target.dtype.itemsize <= 4 else np.float64)
        rows = [self._rows(a, axis).astype(ctype, copy=False) for a in arrays]
        result = target if target.dtype == ctype else np.empty(target.shape, ctype)
        self._run(self._row_kernel(name, ctype.itemsize == 4), target.size, *rows, result)
        if result is not target:
            target[...] = result
        _layout.rows_copy_back(out, axis, scratch)

    def softmax(self, x, axis, out):
        self._row_call("softmax", axis, out, x)

    def log_softmax(self, x, axis, out):
        self._row_call("log_softmax", axis, out, x)

    def softmax_backward(self, grad, y, axis, out):
        self._row_call("softmax_backward", axis, out, grad, y)

    def log_softmax_backward(self, grad, y, axis, out):
        self._row_call("log_softmax_backward", axis, out, grad, y)

    def maxout(self, x, pieces, axis, out):
        xr = self._rows(x, axis)
        target, scratch = self._rows_out(out, axis)
        self._run(self._row_kernel("maxout"), xr.size, xr, target, pieces)
        _layout.rows_copy_back(out, axis, scratch)

    def maxout_backward(self, grad, x, pieces, axis, out):
        xr, gr = self._rows(x, axis), self._rows(grad, axis)
        target, scratch = self._rows_out(out, axis)
        self._run(self._row_kernel("maxout_backward"), xr.size, gr, xr, target, pieces)
        _layout.rows_copy_back(out, axis, scratch)

    def _bias_kernel(self, spec, params, backward, dtype):
        # the loops and parameters of each (activation, parameters, direction, dtype) seen,
        # looked up once: 0.9 us of a 4.6 us call on 1 x 1024 float32 (bias_act with gelu)
        key = ("bias", spec.name if spec is not None else None, params, backward,
               dtype.itemsize)  # the name: a frozen dataclass hashes all its fields each time
        hit = self._lanes.get(key)
        if hit is not None:
            return hit
        kernel = "identity" if spec is None else _layout.kernel_name(spec, params)
        f32 = dtype.itemsize == 4 and kernel in _F32_KERNELS
        loops_key = ("bias_bwd" if backward else "bias", kernel, f32)
        if loops_key not in self._loops:
            self._loops[loops_key] = _build_bias(self.numba, kernel, backward, f32)
        p0, p1 = _layout.param_block(params)[:2]
        if len(self._lanes) >= _LANES_KEPT:
            self._lanes.clear()
        hit = self._lanes[key] = (self._loops[loops_key], p0, p1, _residual(p0, f32))
        return hit

    def bias_act(self, spec, x, bias, params, out):
        loops, p0, p1, p3 = self._bias_kernel(spec, params, False, out.dtype)
        xr = self._rows(x, -1)
        target, scratch = self._rows_out(out, -1)
        if not bias.flags.c_contiguous:
            bias = np.ascontiguousarray(bias)
        self._run(loops, xr.size, xr, bias, target, p0, p1, p3)
        if scratch is not None:
            out[...] = scratch.reshape(out.shape)

    def bias_act_backward(self, spec, grad, x, bias, params, out_grad_x, out_grad_bias):
        loops, p0, p1, p3 = self._bias_kernel(spec, params, True, out_grad_x.dtype)
        xr, gr = self._rows(x, -1), self._rows(grad, -1)
        target, scratch = self._rows_out(out_grad_x, -1)
        if not bias.flags.c_contiguous:
            bias = np.ascontiguousarray(bias)
        from ._numba_loops import BIAS_BLOCK_ROWS  # numba itself is imported on first use

        blocks = -(-xr.shape[0] // BIAS_BLOCK_ROWS)
        partial = np.zeros((blocks, xr.shape[-1]), np.float64)
        self._run(loops, xr.size, gr, xr, bias, target, partial, p0, p1, p3)
        if scratch is not None:
            out_grad_x[...] = scratch.reshape(out_grad_x.shape)
        # The blocks' partial sums added in block order: the same result on any thread count.
        # One block (up to BIAS_BLOCK_ROWS rows) is its own sum: copied, not reduced (2.4 us
        # of NumPy's reduction machinery on 1 x 1024).
        if blocks == 1:
            np.copyto(out_grad_bias, partial[0])
        else:
            out_grad_bias[...] = partial.sum(axis=0)

    def softmax_cross_entropy(self, logits, labels, ignore_index, out_loss, out_grad):
        dt = out_grad.dtype
        if (dt.char in "fd" and logits.dtype == dt and out_loss.dtype == dt
                and logits.flags.c_contiguous and out_grad.flags.c_contiguous
                and out_loss.flags.c_contiguous and labels.dtype == np.int64
                and labels.flags.c_contiguous):
            # the common call, straight to the loop on 2-D and 1-D views (1 x 1024 float32,
            # one thread: 7.4 -> 3 us in this method)
            n = logits.shape[-1]
            loops = self._loops.get(("rows", "xent", dt.itemsize == 4))
            if loops is None:
                loops = self._row_kernel("xent", dt.itemsize == 4)
            self._run(loops, logits.size, logits.reshape(-1, n), labels.reshape(-1),
                      ignore_index, out_loss.reshape(-1), out_grad.reshape(-1, n))
            return
        target, scratch = self._rows_out(out_grad, -1)
        ctype = np.dtype(np.float32 if target.dtype.itemsize <= 4 else np.float64)
        zr = self._rows(logits, -1).astype(ctype, copy=False)
        grad = target if target.dtype == ctype else np.empty(target.shape, ctype)
        loss = np.empty(zr.shape[0], ctype)
        self._run(self._row_kernel("xent", ctype.itemsize == 4), zr.size, zr,
                  np.ascontiguousarray(labels, dtype=np.int64).reshape(-1), ignore_index, loss,
                  grad)
        if grad is not target:
            target[...] = grad
        out_loss[...] = loss.reshape(out_loss.shape)
        if scratch is not None:
            out_grad[...] = scratch.reshape(out_grad.shape)


_LANES_KEPT = 256  # past calls' (kernel, parameters) remembered by _elementwise
_numba_threads = threading.local()  # .count: what this thread last gave numba.set_num_threads


def _residual(p0, f32):
    """p0 - float32(p0), which the float32 swish and softplus add back to beta * x (the C
    kernels' P[3]: beta = 1.702 rounded to float moves swish(-52) by 22 ULP); 0 otherwise."""
    return float(p0 - float(np.float32(p0))) if f32 else 0.0


# ---- loop builders: functions of _numba_loops, compiled lazily and cached on disk -----------
def _jit(numba, fn, parallel):
    # error_model="numpy": Python's ZeroDivisionError checks put a branch in every division and
    # kept the loops scalar (sigmoid 0.14 Gelem/s).
    options = dict(parallel=parallel, fastmath={"contract"}, error_model="numpy")
    if _cache_usable():
        options["cache"] = True
    if parallel:
        # Numba keys its disk cache by function, not by the parallel flag: the prange version
        # gets a function object of its own (same code, own name), so its own cache entry.
        fn = _renamed(fn, fn.__globals__, "_parallel")
    return numba.njit(**options)(fn)


def _jit_pair(numba, fn, simd=False):
    """(serial, parallel) dispatchers of the loop fn. simd: fn's kernel takes _numba_simd's
    instructions, which reach machine code only through a jitted caller (the template's
    inlined_call and *_chunked explain it). gelu at 262,144 elements, one thread, forward,
    side by side with c: float64 2061 -> 698 us (c 638), float32 226 -> 146 us (c 136)."""
    if not (simd and _simd_instructions_usable()):
        return _jit(numba, fn, False), _jit(numba, fn, True)
    from ._numba_simd import inlining_caller

    inner = _jit(numba, _renamed(fn, fn.__globals__, "_inner"), False)
    namespace = {**fn.__globals__, "call_inner": inlining_caller(inner)}
    serial = _jit(numba, _renamed(fn.__globals__["inlined_call"], namespace, "",
                                  fn.__name__ + "_serial"), False)
    chunked = fn.__globals__[fn.__name__ + "_chunked"]
    parallel = _jit(numba, _renamed(chunked, {**fn.__globals__, "serial_loop": serial}, ""),
                    True)
    return serial, parallel


def _renamed(fn, namespace, suffix, name=None):
    """fn's code as a function of its own name (so its own entry in numba's disk cache)."""
    name = name or fn.__name__ + suffix
    copy = types.FunctionType(fn.__code__, namespace, name)
    copy.__qualname__ = name
    return copy


def _simd_instructions_usable():
    if "simd" not in _cache_state:
        from ._numba_simd import available

        _cache_state["simd"] = available()
    return _cache_state["simd"]


# (kernel, float32 arithmetic) pairs whose kernels take _numba_simd's instructions on AVX-512
# targets (table permutes: gelu and float32 tanh; vscalefps: silu and float32 gelu_tanh,
# sigmoid, logsigmoid's backward and swish).
# Without its entry a kernel still compiles and gives the same bits, but a table read is a
# call per element: float32 tanh, 262,144 elements, one thread, 330 us where the loop takes 85
_SIMD_KERNELS = frozenset((("gelu", False), ("gelu", True), ("silu", False), ("silu", True),
                            ("gelu_tanh", True), ("tanh", True), ("sigmoid", True),
                            ("logsigmoid", True), ("swish", True)))


_cache_state = {}


def _cache_root():
    return (os.environ.get("FUSEDACT_CACHE_DIR")
            or os.path.join(os.environ.get("XDG_CACHE_HOME")
                            or os.path.join(os.path.expanduser("~"), ".cache"), "fusedact"))


def _cache_usable():
    """Disk caching, unless FUSEDACT_NUMBA_CACHE=0 or the cache folder cannot be written."""
    if "ok" not in _cache_state:
        ok = os.environ.get("FUSEDACT_NUMBA_CACHE", "1") != "0"
        if ok:
            try:
                os.makedirs(_cache_root(), exist_ok=True)
                ok = os.access(_cache_root(), os.W_OK)
            except OSError:
                ok = False
        _cache_state["ok"] = ok
    return _cache_state["ok"]


def _loops_for(kernel, f32=False):
    """The module of loops bound to one kernel (None: the rows, which use no kernel). Always a
    generated copy, even for the rows: its name carries the hash of _numba_math too, which the
    template's own cache entries would not notice changing."""
    from . import _numba_loops

    kernel = kernel or "relu"
    hit = _cache_state.get(("module", kernel, f32))
    if hit is not None:
        return hit
    from . import _numba_math, _numba_math32, _numba_simd, _numba_stream

    identity = kernel == "identity"
    piecewise, saved_y = (False, False) if identity else _layout.op_traits(kernel)
    scalar = "relu" if identity else kernel
    binding = (f"\n\n# ---- bound for {kernel} by fusedact.backends.numba_backend ----\n"
               f"fwd, der = _m.{scalar}_fwd, _m.{scalar}_der\n"
               f"piecewise, saved_y, identity = {piecewise}, {saved_y}, {identity}\n")
    if f32:
        binding += ("from fusedact.backends import _numba_math32 as _m32  # noqa: E402\n"
                    f"fwd, der, pw = _m32.{scalar}_fwd, _m32.{scalar}_der, _m32.pw\n"
                    "exp_shifted, exp_lite = _m32.exp_shifted, _m32.exp_lite\n"
                    "exp_rows = _m32.exp_rows\n"
                    "ct, f32_copy = np.float32, True\n")
    with open(_numba_loops.__file__, encoding="utf-8") as f:
        text = f.read() + binding
    import numba

    digest = hashlib.sha256(text.encode() + numba.__version__.encode())
    for math_module in (_numba_math, _numba_math32, _numba_simd, _numba_stream):
        with open(math_module.__file__, "rb") as f:
            digest.update(f.read())
    name = f"fusedact_numba_{kernel}{'_f32' if f32 else ''}_{digest.hexdigest()[:16]}"
    if not _cache_usable():  # nothing will be stored: the module can live in memory
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(text, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our template
        _cache_state[("module", kernel, f32)] = module
        return module
    path = os.path.join(_cache_root(), name + ".py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic: processes racing here write the same text
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # In sys.modules: Numba's cache, when it loads this module's compiled loops in a later
    # process, finds the module they belong to by name.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _cache_state[("module", kernel, f32)] = module
    return module


def _build_elementwise(numba, kernel, f32=False):
    loops = _loops_for(kernel, f32)
    simd = (kernel, f32) in _SIMD_KERNELS
    return tuple(_jit_pair(numba, f, simd)
                 for f in (loops.forward, loops.backward, loops.with_derivative))


def _build_streamed(numba, kernel, f32=False):
    # the streamed ops are the cheap ones, none of which takes _numba_simd's instructions
    loops = _loops_for(kernel, f32)
    return tuple(_jit_pair(numba, f)
                 for f in (loops.forward_streamed, loops.backward_streamed,
                           loops.with_derivative_streamed))


def _build_bias(numba, kernel, backward, f32=False):
    loops = _loops_for(kernel, f32)
    f = loops.bias_backward if backward else loops.bias_forward
    return _jit_pair(numba, f, (kernel, f32) in _SIMD_KERNELS)


def _build_rows(numba, name, f32=False):
    # float32 log_softmax backward takes vscalefps on AVX-512 targets (_numba_math32.exp_rows)
    simd = f32 and name == "log_softmax_backward"
    return _jit_pair(numba, getattr(_loops_for(None, f32), name), simd)
