"""The ``cuda`` backend: Numba CUDA kernels (package ``numba-cuda``) for device arrays.

The scalar math is the numba backend's (``_numba_math``: the C kernels' float64 algorithms,
same coefficients), called from ``cuda.jit`` kernels, so the three compiled backends agree to
the last bit or two. Kernels evaluate in float64 and round once into the result dtype, except
elementwise ops on float32/float16 data that ``_numba_math32`` (the C kernels' float path)
has: those run in float32. On an H200 the float64 versions were compute-bound on FP64 for
every exp-based op (sigmoid forward at 50 % of copy, gelu 16 %: bench/gpu_check_H200.md);
the float32 sigmoid kernel has 2 FP64 instructions left in its PTX instead of 211 (the float32
path came after that GPU run and is unmeasured there).

Kernels:
- elementwise forward / backward / forward-with-derivative: grid-stride loops over flat
  contiguous buffers (C or Fortran order; other layouts are gathered first);
- softmax, log_softmax and their backwards, softmax_cross_entropy: one block per row
  (grid-stride over rows), three sweeps of the row (max, sum, write) with shared-memory tree
  reductions in float64; rows longer than the block are walked in block-sized steps;
- maxout and its backward: one thread per group;
- bias_act: grid-stride with the bias indexed by column; its backward writes grad_x and,
  in the same pass, per-chunk column sums of grad_x into a small scratch array, summed by a
  second tiny kernel in a fixed order (deterministic, no atomics).

Two callers: ``fusedact._device`` (device arrays in, device arrays out) calls the
``run_*`` methods on contiguous device arrays; NumPy arrays with ``backend="cuda"`` arrive
through the ``Backend`` interface below, are copied to the device, computed, and copied back.
Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run in Python
threads: correct, slow, and used by the tests on machines without a GPU.
"""

from __future__ import annotations

import math

import numpy as np

from .._catalogue import ELEMENTWISE_OPS
from . import _layout
from ._base import Backend
from .numba_backend import _F32_KERNELS, _residual

_AXIS_AND_FUSED = ("softmax", "log_softmax", "maxout", "bias_act", "softmax_cross_entropy")
# The simulator runs one Python thread per CUDA thread: 32-thread blocks and at most 2 blocks
# keep a test call near 10 ms, and still exercise grid-stride loops and rows longer than a
# block. On a GPU, 256 threads a block and 32 blocks an SM saturate HBM for a streaming loop.
_SIM_THREADS, _SIM_MAX_BLOCKS = 16, 2
_GPU_THREADS, _GPU_BLOCKS_PER_SM = 256, 32
# Column-sum chunks of bias_act_backward: 64 chunks of rows give an H200's 132 SMs enough
# blocks for a (rows, 4096) gradient, and the second pass reads only 64 x columns values.
_BIAS_ROW_CHUNKS = 64

# numba.cuda, bound by CudaBackend.probe. A module global on purpose: the simulator runs a
# kernel by swapping the `cuda` global of its function for a fake module, which a closure
# variable would escape.
cuda = None
_SHARED_DTYPE = None  # numba's float64 type, which the simulator's fake module does not carry


class CudaBackend(_layout.FlatElementwise, Backend):
    name = "cuda"

    def __init__(self):
        self.cuda = None
        self.simulator = False
        self.threads = _GPU_THREADS
        self.max_blocks = 0
        self._kernels = {}
        self._device_name = ""

    # ---- availability ------------------------------------------------------------------------
    def probe(self):
        try:
            from numba import cuda
        except ImportError as exc:
            return False, (f"numba-cuda is not installed ({exc}); "
                           "pip install 'fusedact[cuda]'")
        self.cuda = cuda
        globals()["cuda"] = cuda
        globals()["_SHARED_DTYPE"] = cuda.float64
        if _simulating():
            self.simulator = True
            self.threads, self.max_blocks = _SIM_THREADS, _SIM_MAX_BLOCKS
            self._device_name = "Numba CUDA simulator"
            return True, ("Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): right results, "
                          "Python speed; for tests")
        try:
            if not cuda.is_available():
                return False, "no CUDA GPU or driver found by numba-cuda"
            device = cuda.get_current_device()
            sms = device.MULTIPROCESSOR_COUNT
            name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        except Exception as exc:  # driver errors come in several classes
            return False, f"CUDA initialisation failed: {exc}"
        self.max_blocks = sms * _GPU_BLOCKS_PER_SM
        self._device_name = f"{name} ({sms} SMs)"
        return True, f"{self._device_name}, numba-cuda kernels (compiled on first use)"

    def has_kernel(self, op_name):
        return op_name in ELEMENTWISE_OPS or op_name in _AXIS_AND_FUSED

    def describe(self):
        if self.cuda is None:
            return {}
        import numba_cuda

        facts = {"numba-cuda": numba_cuda.__version__}
        if self._device_name:
            facts["device"] = self._device_name
        return facts

    # ---- launch geometry ---------------------------------------------------------------------
    def _blocks(self, work):
        return max(1, min(-(-work // self.threads), self.max_blocks))

    def _row_blocks(self, rows):
        return max(1, min(rows, self.max_blocks if self.simulator else 65535 * 8))

    def _kernel(self, key, build):
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = build(self.threads, *key[1:])
        return k

    # ---- device entry points: contiguous device arrays in, results written to outs ----------
    def run_elementwise(self, mode, kernel, params, flat_outs, flat_ins):
        p0, p1 = _layout.param_block(params)[:2]
        # float32/float16 results of the ops _numba_math32 has: float32 arithmetic.
        f32 = flat_outs[0].dtype.itemsize <= 4 and kernel in _F32_KERNELS
        fn = self._kernel(("ew", kernel, mode, f32), _build_elementwise)
        n = flat_outs[0].size
        fn[self._blocks(n), self.threads](*flat_ins, *flat_outs, p0, p1, _residual(p0, f32))

    def run_rows(self, name, arrays, out, *extra):
        fn = self._kernel(("rows", name), _build_rows)
        fn[self._row_blocks(out.shape[0]), self.threads, 0, 16 * self.threads](*arrays, out, *extra)

    def run_maxout(self, backward, arrays, out, pieces):
        fn = self._kernel(("maxout", backward), _build_maxout)
        groups = arrays[0].shape[0] * (arrays[0].shape[1] if backward else out.shape[1])
        fn[self._blocks(groups), self.threads](*arrays, out, pieces)

    def run_bias(self, kernel, params, x2, bias, out2, compute):
        p0, p1 = _layout.param_block(params)[:2]
        fn = self._kernel(("bias", kernel, compute.name), _build_bias)
        fn[self._blocks(x2.size), self.threads](x2, bias, out2, p0, p1)

    def run_bias_backward(self, kernel, params, g2, x2, bias, gx2, gb, compute):
        p0, p1 = _layout.param_block(params)[:2]
        rows, cols = x2.shape
        chunks = max(1, min(_BIAS_ROW_CHUNKS, rows))
        partial = self.cuda.device_array((chunks, cols), np.float64)
        fn = self._kernel(("bias_bwd", kernel, compute.name), _build_bias_backward)
        fn[(-(-cols // self.threads), chunks), self.threads](g2, x2, bias, gx2, partial, p0, p1)
        total = self._kernel(("colsum",), _build_column_sum)
        total[self._blocks(cols), self.threads](partial, gb)

    def run_xent(self, z2, labels, ignore_index, loss, grad2):
        fn = self._kernel(("rows", "xent"), _build_rows)
        fn[self._row_blocks(z2.shape[0]), self.threads, 0, 16 * self.threads](
            z2, labels, ignore_index, loss, grad2)

    def gather(self, src, dst_flat):
        """dst_flat (1-D, C order) = src (any strides, ndim >= 1)."""
        fn = self._kernel(("gather", src.ndim, False), _build_strided_copy)
        fn[self._blocks(dst_flat.size), self.threads](src, dst_flat)

    def scatter(self, src_flat, dst):
        """dst (any strides) = src_flat (1-D, C order)."""
        fn = self._kernel(("gather", dst.ndim, True), _build_strided_copy)
        fn[self._blocks(src_flat.size), self.threads](dst, src_flat)

    # ---- NumPy arrays with backend="cuda": copy in, compute, copy back ----------------------
    def _to_device(self, a):
        return self.cuda.to_device(a if a.flags.c_contiguous else a.copy())

    def _elementwise(self, mode, spec, params, outs, inputs):
        kernel = _layout.kernel_name(spec, params)
        flat_out, flat_in, targets = _layout.flat_views(outs, inputs)
        d_in = [self._to_device(a) for a in flat_in]
        d_out = [self.cuda.device_array(a.shape, a.dtype) for a in flat_out]
        self.run_elementwise(mode, kernel, params, d_out, d_in)
        for host, dev in zip(flat_out, d_out):
            dev.copy_to_host(host)
        _layout.copy_back(outs, targets)

    def _host_rows(self, name, axis, out, arrays, *extra):
        d_in = [self._to_device(_layout.rows(a, axis)) for a in arrays]
        target, scratch = _layout.rows_out(out, axis)
        d_out = self.cuda.device_array(target.shape, target.dtype)
        self.run_rows(name, d_in, d_out, *extra)
        d_out.copy_to_host(target)
        _layout.rows_copy_back(out, axis, scratch)

    def softmax(self, x, axis, out):
        self._host_rows("softmax", axis, out, (x,))

    def log_softmax(self, x, axis, out):
        self._host_rows("log_softmax", axis, out, (x,))

    def softmax_backward(self, grad, y, axis, out):
        self._host_rows("softmax_backward", axis, out, (grad, y))

    def log_softmax_backward(self, grad, y, axis, out):
        self._host_rows("log_softmax_backward", axis, out, (grad, y))

    def maxout(self, x, pieces, axis, out):
        target, scratch = _layout.rows_out(out, axis)
        d_out = self.cuda.device_array(target.shape, target.dtype)
        self.run_maxout(False, [self._to_device(_layout.rows(x, axis))], d_out, pieces)
        d_out.copy_to_host(target)
        _layout.rows_copy_back(out, axis, scratch)

    def maxout_backward(self, grad, x, pieces, axis, out):
        target, scratch = _layout.rows_out(out, axis)
        d_out = self.cuda.device_array(target.shape, target.dtype)
        d_in = [self._to_device(_layout.rows(a, axis)) for a in (grad, x)]
        self.run_maxout(True, d_in, d_out, pieces)
        d_out.copy_to_host(target)
        _layout.rows_copy_back(out, axis, scratch)

    def bias_act(self, spec, x, bias, params, out):
        kernel = "identity" if spec is None else _layout.kernel_name(spec, params)
        target, scratch = _layout.rows_out(out, -1)
        d_out = self.cuda.device_array(target.shape, target.dtype)
        self.run_bias(kernel, params, self._to_device(_layout.rows(x, -1)),
                      self._to_device(bias), d_out, x.dtype)
        d_out.copy_to_host(target)
        if scratch is not None:
            out[...] = scratch.reshape(out.shape)

    def bias_act_backward(self, spec, grad, x, bias, params, out_grad_x, out_grad_bias):
        kernel = "identity" if spec is None else _layout.kernel_name(spec, params)
        target, scratch = _layout.rows_out(out_grad_x, -1)
        d_gx = self.cuda.device_array(target.shape, target.dtype)
        d_gb = self.cuda.device_array(out_grad_bias.shape, out_grad_bias.dtype)
        self.run_bias_backward(kernel, params, self._to_device(_layout.rows(grad, -1)),
                               self._to_device(_layout.rows(x, -1)), self._to_device(bias),
                               d_gx, d_gb, x.dtype)
        d_gx.copy_to_host(target)
        if scratch is not None:
            out_grad_x[...] = scratch.reshape(out_grad_x.shape)
        out_grad_bias[...] = d_gb.copy_to_host()

    def softmax_cross_entropy(self, logits, labels, ignore_index, out_loss, out_grad):
        z2 = _layout.rows(logits, -1)
        d_grad = self.cuda.device_array(z2.shape, out_grad.dtype)
        d_loss = self.cuda.device_array(z2.shape[0], out_loss.dtype)
        labels = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
        self.run_xent(self._to_device(z2), self._to_device(labels), ignore_index, d_loss, d_grad)
        out_grad[...] = d_grad.copy_to_host().reshape(out_grad.shape)
        out_loss[...] = d_loss.copy_to_host().reshape(out_loss.shape)


# ---- kernel builders: closures over the op's scalar functions, compiled per dtype on use -----
def _kernel(fn):
    """cuda.jit, and under the simulator, NumPy's floating-point warnings off in the kernel's
    threads: there the kernel body is Python on NumPy scalars, and inf * 0 would warn where the
    GPU silently gives NaN (SPEC: no RuntimeWarning from inside a kernel)."""
    if not _simulating():
        return cuda.jit(fn)

    def quiet(*args):
        with np.errstate(all="ignore"):
            fn(*args)

    quiet.__name__ = fn.__name__
    return cuda.jit(quiet)


def _simulating():
    try:
        from numba.cuda.core import config  # numba-cuda >= 0.2x keeps its own config
    except ImportError:
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def _device_fn(m, kernel, kind):
    """m's `{kernel}_{kind}` (kind "fwd" or "der"), in its portable form where the CPU's uses
    _numba_simd's x86 instructions on AVX-512 hosts (`..._portable`: float32 silu, gelu_tanh,
    gelu), and float64 gelu's erfc series in place of its table pieces: the series reads no
    array (a table read per lane has not been measured on a GPU here)."""
    if kernel == "gelu" and m.__name__.endswith("._numba_math"):
        kind += "_series"
    name = f"{kernel}_{kind}"
    return getattr(m, name + "_portable", None) or getattr(m, name)


def _build_elementwise(threads, kernel, mode, f32=False):
    """f32: float32 arithmetic with _numba_math32's functions (float32/float16 results of the
    ops it has), as the numba backend does on the CPU; otherwise float64."""
    from . import _numba_math, _numba_math32

    m = _numba_math32 if f32 else _numba_math
    fwd = _device_fn(m, kernel, "fwd")
    der = _device_fn(m, kernel, "der")
    piecewise, saved_y = _layout.op_traits(kernel)
    pw = m.pw
    ct = np.float32 if f32 else np.float64

    # Four elements a thread per step, loads first: one 4-byte load in flight per thread left
    # a forward relu at 81% of copy on an H200 (backward, with two loads, reached 95%): HBM
    # needs ~3 MB in flight and 132 SMs hold 270K threads.
    def forward(x, out, p0, p1, p3):
        q0, q1, q3 = ct(p0), ct(p1), ct(p3)
        n = out.size
        step = cuda.gridsize(1)
        i = cuda.grid(1)
        while i + 3 * step < n:
            a0, a1, a2, a3 = x[i], x[i + step], x[i + 2 * step], x[i + 3 * step]
            out[i] = fwd(ct(a0), q0, q1, q3)
            out[i + step] = fwd(ct(a1), q0, q1, q3)
            out[i + 2 * step] = fwd(ct(a2), q0, q1, q3)
            out[i + 3 * step] = fwd(ct(a3), q0, q1, q3)
            i += 4 * step
        while i < n:
            out[i] = fwd(ct(x[i]), q0, q1, q3)
            i += step

    def grad_in(g, s, q0, q1, q3):
        d = der(ct(s), q0, q1, q3)
        return pw(ct(g), d) if piecewise else ct(g) * d

    grad_in = grad_in if _simulating() else cuda.jit(device=True, forceinline=True)(grad_in)

    def backward(g, s, out, p0, p1, p3):
        q0, q1, q3 = ct(p0), ct(p1), ct(p3)
        n = out.size
        step = cuda.gridsize(1)
        i = cuda.grid(1)
        while i + 3 * step < n:
            g0, g1, g2, g3 = g[i], g[i + step], g[i + 2 * step], g[i + 3 * step]
            s0, s1, s2, s3 = s[i], s[i + step], s[i + 2 * step], s[i + 3 * step]
            out[i] = grad_in(g0, s0, q0, q1, q3)
            out[i + step] = grad_in(g1, s1, q0, q1, q3)
            out[i + 2 * step] = grad_in(g2, s2, q0, q1, q3)
            out[i + 3 * step] = grad_in(g3, s3, q0, q1, q3)
            i += 4 * step
        while i < n:
            out[i] = grad_in(g[i], s[i], q0, q1, q3)
            i += step

    def with_derivative(x, out_y, out_d, p0, p1, p3):
        q0, q1, q3 = ct(p0), ct(p1), ct(p3)
        for i in range(cuda.grid(1), out_y.size, cuda.gridsize(1)):
            xi = ct(x[i])
            out_y[i] = fwd(xi, q0, q1, q3)
            # A saved y is the rounded output, as backward would see it.
            out_d[i] = der(ct(out_y[i]) if saved_y else xi, q0, q1, q3)

    return _kernel((forward, backward, with_derivative)[mode])


def _build_bias(threads, kernel, compute):
    from . import _numba_math as m

    identity = kernel == "identity"
    fwd = m.relu_fwd if identity else _device_fn(m, kernel, "fwd")
    f64 = np.float64
    ct = np.dtype(compute).type

    def forward(x, bias, out, p0, p1):
        cols = x.shape[1]
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            r = i // cols
            j = i - r * cols
            z = ct(x[r, j]) + ct(bias[j])  # rounded, as act(x + bias) sees it
            out[r, j] = z if identity else fwd(f64(z), p0, p1, 0.0)

    return _kernel(forward)


def _build_bias_backward(threads, kernel, compute):
    from . import _numba_math as m

    identity = kernel == "identity"
    fwd = m.relu_fwd if identity else _device_fn(m, kernel, "fwd")
    der = m.relu_der if identity else _device_fn(m, kernel, "der")
    piecewise, saved_y = (False, False) if identity else _layout.op_traits(kernel)
    pw = m.pw
    f64 = np.float64
    ct = np.dtype(compute).type

    def backward(g, x, bias, gx, partial, p0, p1):
        # blockIdx.x: a tile of columns (coalesced); blockIdx.y: a chunk of rows.
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        rows, cols = x.shape
        if j >= cols:
            return
        chunks = cuda.gridDim.y
        per = (rows + chunks - 1) // chunks
        r0 = cuda.blockIdx.y * per
        r1 = min(rows, r0 + per)
        acc = 0.0
        b = ct(bias[j])
        for r in range(r0, r1):
            z = ct(x[r, j]) + b
            if identity:
                v = f64(g[r, j])
            else:
                if saved_y:
                    gx[r, j] = fwd(f64(z), p0, p1, 0.0)  # y rounded to the dtype, as saved
                    s = f64(gx[r, j])
                else:
                    s = f64(z)
                d = der(s, p0, p1, 0.0)
                v = pw(f64(g[r, j]), d) if piecewise else f64(g[r, j]) * d
            gx[r, j] = v
            acc += f64(gx[r, j])
        partial[cuda.blockIdx.y, j] = acc

    return _kernel(backward)


def _build_column_sum(threads):
    def column_sum(partial, out):
        for j in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            acc = 0.0
            for c in range(partial.shape[0]):
                acc += partial[c, j]
            out[j] = acc

    return _kernel(column_sum)


def _build_maxout(threads, backward):
    def first_max(x, r, start, pieces):
        best = start
        for k in range(start + 1, start + pieces):
            if x[r, best] == x[r, best] and (x[r, k] > x[r, best] or x[r, k] != x[r, k]):
                best = k
        return best

    first_max = cuda.jit(device=True)(first_max)

    def forward(x, out, pieces):
        groups = out.shape[1]
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            r = i // groups
            g = i - r * groups
            out[r, g] = x[r, first_max(x, r, g * pieces, pieces)]

    def back(g, x, out, pieces):
        groups = g.shape[1]
        for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
            r = i // groups
            q = i - r * groups
            best = first_max(x, r, q * pieces, pieces)
            for k in range(q * pieces, (q + 1) * pieces):
                out[r, k] = g[r, q] if k == best else 0.0

    return _kernel(back if backward else forward)


def _build_rows(threads, name):
    """One block per row; `threads` (a power of two) is the block size, fixed at build time
    because the reductions' step loop starts from it. The reductions' scratch is dynamic shared
    memory (2 x `threads` doubles, given at launch): the simulator allocates a static shared array
    per thread when two threads reach it at once, so the threads of a block would not share it."""
    from . import _numba_math as m

    exp_shifted, exp_lite, two_sum_err = m.exp_shifted, m.exp_lite, m.two_sum_err
    f64 = np.float64
    inf = math.inf

    def block_sum(v, shared):
        t = cuda.threadIdx.x
        shared[t] = v
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                shared[t] += shared[t + step]
            cuda.syncthreads()
            step //= 2
        total = shared[0]
        cuda.syncthreads()  # shared is reused by the next reduction
        return total

    def block_max(v, shared):
        t = cuda.threadIdx.x
        shared[t] = v
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                a = shared[t]
                b = shared[t + step]
                if a == a and (b > a or b != b):  # NaN wins, as in the CPU kernels
                    shared[t] = b
            cuda.syncthreads()
            step //= 2
        best = shared[0]
        cuda.syncthreads()
        return best

    def block_sum_compensated(s, c, shared):
        """The block's sum of the (s + c) pairs, carrying each addition's rounding error."""
        t = cuda.threadIdx.x
        shared[t] = s
        shared[threads + t] = c
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                a = shared[t]
                b = shared[t + step]
                total = a + b
                shared[threads + t] += shared[threads + t + step] + two_sum_err(a, b, total)
                shared[t] = total
            cuda.syncthreads()
            step //= 2
        total = shared[0] + shared[threads]
        cuda.syncthreads()
        return total

    block_sum = cuda.jit(device=True)(block_sum)
    block_sum_compensated = cuda.jit(device=True)(block_sum_compensated)
    block_max = cuda.jit(device=True)(block_max)

    def row_max(x, r, shared):
        best = -inf
        for j in range(cuda.threadIdx.x, x.shape[1], threads):
            v = f64(x[r, j])
            if best == best and (v > best or v != v):
                best = v
        return block_max(best, shared)

    def row_sum_exp(x, r, mx, shared):
        # Compensated: a float64 softmax row of 1024 summed plainly was off by 9 ULP.
        s = 0.0
        c = 0.0
        for j in range(cuda.threadIdx.x, x.shape[1], threads):
            e = exp_shifted(f64(x[r, j]), mx)
            t = s + e
            c += two_sum_err(s, e, t)
            s = t
        return block_sum_compensated(s, c, shared)

    row_max = cuda.jit(device=True)(row_max)
    row_sum_exp = cuda.jit(device=True)(row_sum_exp)

    def softmax(x, out):
        shared = cuda.shared.array(0, _SHARED_DTYPE)
        for r in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):
            mx = row_max(x, r, shared)
            s = row_sum_exp(x, r, mx, shared)
            for j in range(cuda.threadIdx.x, x.shape[1], threads):
                out[r, j] = exp_shifted(f64(x[r, j]), mx) / s

    def log_softmax(x, out):
        shared = cuda.shared.array(0, _SHARED_DTYPE)
        for r in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):
            mx = row_max(x, r, shared)
            log_s = math.log(row_sum_exp(x, r, mx, shared))
            for j in range(cuda.threadIdx.x, x.shape[1], threads):
                out[r, j] = (f64(x[r, j]) - mx) - log_s

    def softmax_backward(g, y, out):
        shared = cuda.shared.array(0, _SHARED_DTYPE)
        for r in range(cuda.blockIdx.x, y.shape[0], cuda.gridDim.x):
            dot = 0.0
            for j in range(cuda.threadIdx.x, y.shape[1], threads):
                dot += f64(g[r, j]) * f64(y[r, j])
            dot = block_sum(dot, shared)
            for j in range(cuda.threadIdx.x, y.shape[1], threads):
                out[r, j] = f64(y[r, j]) * (f64(g[r, j]) - dot)

    def log_softmax_backward(g, y, out):
        shared = cuda.shared.array(0, _SHARED_DTYPE)
        for r in range(cuda.blockIdx.x, y.shape[0], cuda.gridDim.x):
            total = 0.0
            for j in range(cuda.threadIdx.x, y.shape[1], threads):
                total += f64(g[r, j])
            total = block_sum(total, shared)
            for j in range(cuda.threadIdx.x, y.shape[1], threads):
                out[r, j] = f64(g[r, j]) - exp_lite(f64(y[r, j])) * total

    def xent(z, labels, ignore, loss, grad):
        shared = cuda.shared.array(0, _SHARED_DTYPE)
        for r in range(cuda.blockIdx.x, z.shape[0], cuda.gridDim.x):
            label = labels[r]
            if label == ignore:
                if cuda.threadIdx.x == 0:
                    loss[r] = 0.0
                for j in range(cuda.threadIdx.x, z.shape[1], threads):
                    grad[r, j] = 0.0
                continue
            mx = row_max(z, r, shared)
            s = row_sum_exp(z, r, mx, shared)
            if cuda.threadIdx.x == 0:
                loss[r] = math.log(s) - (f64(z[r, label]) - mx)
            for j in range(cuda.threadIdx.x, z.shape[1], threads):
                v = exp_shifted(f64(z[r, j]), mx) / s
                if j == label:
                    v -= 1.0
                grad[r, j] = v

    fn = {"softmax": softmax, "log_softmax": log_softmax, "softmax_backward": softmax_backward,
          "log_softmax_backward": log_softmax_backward, "xent": xent}[name]
    return _kernel(fn)


def _build_strided_copy(threads, ndim, scatter):
    """A copy between an array of any strides (N-d indexing, which Numba turns into stride
    arithmetic, negative strides included) and a flat C-ordered buffer; generated per ndim."""
    idx = ", ".join(f"i{d}" for d in range(ndim))
    lines = [f"def copy(strided, flat):",
             "    for k in range(cuda.grid(1), flat.size, cuda.gridsize(1)):",
             "        rest = k"]
    for d in range(ndim - 1, 0, -1):
        lines.append(f"        i{d} = rest % strided.shape[{d}]")
        lines.append(f"        rest //= strided.shape[{d}]")
    lines.append("        i0 = rest")
    if scatter:
        lines.append(f"        strided[{idx}] = flat[k]")
    else:
        lines.append(f"        flat[k] = strided[{idx}]")
    namespace = {}
    # This module's globals: the simulator swaps the `cuda` found there (see `cuda` above).
    exec(compile("\n".join(lines), f"<fusedact cuda copy {ndim}d>", "exec"), globals(),  # noqa: S102
         namespace)
    return _kernel(namespace["copy"])
