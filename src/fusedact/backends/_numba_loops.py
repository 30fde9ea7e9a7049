"""The numba backend's loops, as module-level functions so that Numba can cache them on disk.

The loops call an op's scalar functions through the globals ``fwd`` and ``der`` and branch
on its traits (``piecewise``, ``saved_y``, ``identity``), which Numba reads as constants when
it compiles. This file binds relu; for every other kernel the backend writes a copy of it
with lines at the end that rebind those globals, into a cache folder named by a hash of this
file, ``_numba_math.py`` and Numba's version (an edit to either makes a new folder), imports
the copy and compiles its functions with ``cache=True``, so a second process loads machine
code instead of compiling. (Closures, which the loops were before, got a new cache key in
every process and never hit.)
"""

import numpy as np
from numba import njit, prange

from fusedact.backends import _numba_math as _m

fwd, der = _m.relu_fwd, _m.relu_der
piecewise, saved_y, identity = True, True, False
pw = _m.pw
exp_shifted, exp_lite, two_sum_err = _m.exp_shifted, _m.exp_lite, _m.two_sum_err


def _inline(fn):
    return njit(inline="always")(fn)


# ---- elementwise: forward, backward, forward with derivative ------------------------------
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


# ---- bias_act: forward, and backward with the column sums (serial: row order) --------
def bias_forward(x, bias, out, p0, p1):
    for r in prange(x.shape[0]):
        for j in range(x.shape[1]):
            z = x[r, j] + bias[j]  # rounded to the dtype, as act(x + bias) sees it
            out[r, j] = z if identity else fwd(np.float64(z), p0, p1, 0.0)


def bias_backward(g, x, bias, gx, acc, p0, p1):
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


# ---- rows: the softmax family, maxout, cross-entropy -------------------------------------
def row_max(row):
    best = -np.inf
    for v in row:
        if v > best or v != v:
            best = v
            if v != v:
                break
    return best


row_max = _inline(row_max)


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


row_sum_exp = _inline(row_sum_exp)


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


first_max = _inline(first_max)


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

