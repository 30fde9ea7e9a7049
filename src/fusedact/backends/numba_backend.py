"""The ``numba`` backend: Numba JIT CPU kernels, the C kernels' algorithms in Python.

The scalar math and op formulas live in ``_numba_math`` (one function per op and direction,
evaluated in float64, coefficients shared with the C code through ``fusedact._coeffs``). This
module turns them into loops: one Python function per loop shape, compiled lazily per op and
dtype on first use (nothing compiles at import), serial below 65,536 elements and with
``prange`` above (prange costs ~1.3 us a call here; FUSEDACT_NUM_THREADS caps its threads).
"""

from __future__ import annotations

import numpy as np

from .. import _threads
from .._catalogue import ELEMENTWISE_OPS
from . import _layout
from ._base import Backend

_PARALLEL_MIN = 65536
_AXIS_AND_FUSED = ("softmax", "log_softmax", "maxout", "bias_act", "softmax_cross_entropy")


class NumbaBackend(_layout.FlatElementwise, Backend):
    name = "numba"

    def __init__(self):
        self._loops = {}  # (kernel name, shape) -> (serial, parallel) dispatchers
        self.numba = None

    def probe(self):
        try:
            import numba

            from . import _numba_math  # noqa: F401 - defines the kernels (no compilation)
        except ImportError as exc:
            return False, f"numba is not installed ({exc}); pip install 'fusedact[numba]'"
        self.numba = numba
        return True, f"numba {numba.__version__} JIT kernels (compiled on first use)"

    def has_kernel(self, op_name):
        return op_name in ELEMENTWISE_OPS or op_name in _AXIS_AND_FUSED

    def describe(self):
        if self.numba is None:
            return {}
        return {"threads": f"{_threads.get_num_threads()} (FUSEDACT_NUM_THREADS caps it)",
                "threading layer": str(self.numba.config.THREADING_LAYER)}

    # ---- kernel construction ---------------------------------------------------------------
    def _ew_loops(self, kernel):
        hit = self._loops.get(kernel)
        if hit is None:
            hit = _build_elementwise(self.numba, kernel)
            self._loops[kernel] = hit
        return hit

    def _run(self, pair, n, *args):
        serial, parallel = pair
        if n >= _PARALLEL_MIN and _threads.get_num_threads() > 1:
            self.numba.set_num_threads(min(_threads.get_num_threads(),
                                           self.numba.config.NUMBA_NUM_THREADS))
            parallel(*args)
        else:
            serial(*args)

    def _elementwise(self, mode, spec, params, outs, inputs):
        kernel = _layout.kernel_name(spec, params)
        p0, p1 = _layout.param_block(params)[:2]
        flat_out, flat_in, targets = _layout.flat_views(outs, inputs)
        loops = self._ew_loops(kernel)[mode]
        self._run(loops, flat_out[0].size, *flat_in, *flat_out, p0, p1, 0.0)
        _layout.copy_back(outs, targets)

    # ---- rows ------------------------------------------------------------------------------
    _rows = staticmethod(_layout.rows)
    _rows_out = staticmethod(_layout.rows_out)

    def _row_kernel(self, name):
        key = ("rows", name)
        if key not in self._loops:
            self._loops[key] = _build_rows(self.numba, name)
        return self._loops[key]

    def _row_call(self, name, axis, out, *arrays):
        rows = [self._rows(a, axis) for a in arrays]
        target, scratch = self._rows_out(out, axis)
        self._run(self._row_kernel(name), target.size, *rows, target)
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

    def _bias_kernel(self, spec, params, backward):
        kernel = "identity" if spec is None else _layout.kernel_name(spec, params)
        key = ("bias_bwd" if backward else "bias", kernel)
        if key not in self._loops:
            self._loops[key] = _build_bias(self.numba, kernel, backward)
        p0, p1 = _layout.param_block(params)[:2]
        return self._loops[key], p0, p1

    def bias_act(self, spec, x, bias, params, out):
        loops, p0, p1 = self._bias_kernel(spec, params, False)
        xr = self._rows(x, -1)
        target, scratch = self._rows_out(out, -1)
        self._run(loops, xr.size, xr, np.ascontiguousarray(bias), target, p0, p1)
        if scratch is not None:
            out[...] = scratch.reshape(out.shape)

    def bias_act_backward(self, spec, grad, x, bias, params, out_grad_x, out_grad_bias):
        loops, p0, p1 = self._bias_kernel(spec, params, True)
        xr, gr = self._rows(x, -1), self._rows(grad, -1)
        target, scratch = self._rows_out(out_grad_x, -1)
        acc = np.zeros(xr.shape[-1], np.float64)
        loops[0](gr, xr, np.ascontiguousarray(bias), target, acc, p0, p1)  # serial: the
        # column sums are accumulated in row order, the same on any thread count
        if scratch is not None:
            out_grad_x[...] = scratch.reshape(out_grad_x.shape)
        out_grad_bias[...] = acc

    def softmax_cross_entropy(self, logits, labels, ignore_index, out_loss, out_grad):
        zr = self._rows(logits, -1)
        target, scratch = self._rows_out(out_grad, -1)
        loss = np.empty(zr.shape[0], out_loss.dtype)
        self._run(self._row_kernel("xent"), zr.size, zr,
                  np.ascontiguousarray(labels, dtype=np.int64).reshape(-1), ignore_index, loss,
                  target)
        out_loss[...] = loss.reshape(out_loss.shape)
        if scratch is not None:
            out_grad[...] = scratch.reshape(out_grad.shape)


# ---- loop builders: closures over the op's scalar functions, compiled lazily ------------------
def _jit(numba, fn, parallel):
    # error_model="numpy": Python's ZeroDivisionError checks put a branch in every division and
    # kept the loops scalar (sigmoid 0.14 Gelem/s).
    return numba.njit(parallel=parallel, fastmath={"contract"}, error_model="numpy")(fn)


def _build_elementwise(numba, kernel):
    from . import _numba_math as m

    fwd = getattr(m, f"{kernel}_fwd")
    der = getattr(m, f"{kernel}_der")
    piecewise, saved_y = _layout.op_traits(kernel)
    prange = numba.prange
    pw = m.pw

    def forward(x, out, p0, p1, p3):
        for i in prange(x.size):
            out[i] = fwd(np.float64(x[i]), p0, p1, p3)

    def backward(g, s, out, p0, p1, p3):
        for i in prange(g.size):
            d = der(np.float64(s[i]), p0, p1, p3)
            out[i] = pw(np.float64(g[i]), d) if piecewise else np.float64(g[i]) * d

    def with_derivative(x, out_y, out_d, p0, p1, p3):
        for i in prange(x.size):
            xi = np.float64(x[i])
            y = fwd(xi, p0, p1, p3)
            out_y[i] = y
            # A saved y is the rounded output, as backward would see it.
            out_d[i] = der(np.float64(out_y[i]) if saved_y else xi, p0, p1, p3)

    return tuple((_jit(numba, f, False), _jit(numba, f, True))
                 for f in (forward, backward, with_derivative))


def _build_bias(numba, kernel, backward):
    from . import _numba_math as m

    identity = kernel == "identity"
    fwd = m.relu_fwd if identity else getattr(m, f"{kernel}_fwd")
    der = m.relu_der if identity else getattr(m, f"{kernel}_der")
    piecewise, saved_y = (False, False) if identity else _layout.op_traits(kernel)
    prange = numba.prange
    pw = m.pw

    def forward(x, bias, out, p0, p1):
        for r in prange(x.shape[0]):
            for j in range(x.shape[1]):
                z = x[r, j] + bias[j]  # rounded to the dtype, as act(x + bias) sees it
                out[r, j] = z if identity else fwd(np.float64(z), p0, p1, 0.0)

    def back(g, x, bias, gx, acc, p0, p1):
        for r in range(x.shape[0]):
            for j in range(x.shape[1]):
                z = np.float64(x[r, j] + bias[j])
                if identity:
                    v = np.float64(g[r, j])
                else:
                    if saved_y:
                        gx[r, j] = fwd(z, p0, p1, 0.0)  # y rounded to the dtype, as saved
                        s = np.float64(gx[r, j])
                    else:
                        s = z
                    d = der(s, p0, p1, 0.0)
                    v = pw(np.float64(g[r, j]), d) if piecewise else np.float64(g[r, j]) * d
                gx[r, j] = v
                acc[j] += np.float64(gx[r, j])

    f = back if backward else forward
    return _jit(numba, f, False), _jit(numba, f, not backward)


def _build_rows(numba, name):
    from . import _numba_math as m

    prange = numba.prange
    exp_shifted, exp_lite, two_sum_err = m.exp_shifted, m.exp_lite, m.two_sum_err

    def row_max(row):
        best = -np.inf
        for v in row:
            if v > best or v != v:
                best = v
                if v != v:
                    break
        return best

    row_max = numba.njit(inline="always")(row_max)

    def row_sum_exp(row, m_, out_row):
        s = 0.0
        c = 0.0
        for j in range(row.size):
            e = exp_shifted(np.float64(row[j]), m_)
            if out_row is not None:
                out_row[j] = e
            t = s + e
            c += two_sum_err(s, e, t)
            s = t
        return s + c

    row_sum_exp = numba.njit(inline="always")(row_sum_exp)

    def softmax(x, out):
        for r in prange(x.shape[0]):
            m_ = np.float64(row_max(x[r]))
            s = row_sum_exp(x[r], m_, out[r])
            for j in range(x.shape[1]):
                out[r, j] = np.float64(out[r, j]) / s

    def log_softmax(x, out):
        for r in prange(x.shape[0]):
            m_ = np.float64(row_max(x[r]))
            s = row_sum_exp(x[r], m_, None)
            log_s = np.log(s)
            for j in range(x.shape[1]):
                out[r, j] = (np.float64(x[r, j]) - m_) - log_s

    def softmax_backward(g, y, out):
        for r in prange(y.shape[0]):
            dot = 0.0
            for j in range(y.shape[1]):
                dot += np.float64(g[r, j]) * np.float64(y[r, j])
            for j in range(y.shape[1]):
                out[r, j] = np.float64(y[r, j]) * (np.float64(g[r, j]) - dot)

    def log_softmax_backward(g, y, out):
        for r in prange(y.shape[0]):
            total = 0.0
            for j in range(y.shape[1]):
                total += np.float64(g[r, j])
            for j in range(y.shape[1]):
                out[r, j] = np.float64(g[r, j]) - exp_lite(np.float64(y[r, j])) * total

    def first_max(x, r, start, pieces):
        best = start
        for k in range(start + 1, start + pieces):
            if x[r, best] == x[r, best] and (x[r, k] > x[r, best] or x[r, k] != x[r, k]):
                best = k
        return best

    first_max = numba.njit(inline="always")(first_max)

    def maxout(x, out, pieces):
        for r in prange(x.shape[0]):
            for g_ in range(out.shape[1]):
                out[r, g_] = x[r, first_max(x, r, g_ * pieces, pieces)]

    def maxout_backward(g, x, out, pieces):
        for r in prange(x.shape[0]):
            for g_ in range(g.shape[1]):
                best = first_max(x, r, g_ * pieces, pieces)
                for k in range(g_ * pieces, (g_ + 1) * pieces):
                    out[r, k] = 0.0
                out[r, best] = g[r, g_]

    def xent(z, labels, ignore, loss, grad):
        for r in prange(z.shape[0]):
            label = labels[r]
            if label == ignore:
                loss[r] = 0.0
                for j in range(z.shape[1]):
                    grad[r, j] = 0.0
                continue
            z_label = np.float64(z[r, label])
            m_ = np.float64(row_max(z[r]))
            s = row_sum_exp(z[r], m_, grad[r])
            loss[r] = np.log(s) - (z_label - m_)
            for j in range(z.shape[1]):
                grad[r, j] = np.float64(grad[r, j]) / s
            grad[r, label] -= 1.0

    fn = {"softmax": softmax, "log_softmax": log_softmax, "softmax_backward": softmax_backward,
          "log_softmax_backward": log_softmax_backward, "maxout": maxout,
          "maxout_backward": maxout_backward, "xent": xent}[name]
    return _jit(numba, fn, False), _jit(numba, fn, True)
