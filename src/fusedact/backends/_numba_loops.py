"""The numba backend's loops, as module-level functions so that Numba can cache them on disk.

The loops call an op's scalar functions through the globals ``fwd``, ``der`` and ``pw``, in
the type ``ct``, and branch on its traits (``piecewise``, ``saved_y``, ``identity``), which
Numba reads as constants when it compiles. This file binds relu; for every other kernel the backend writes a copy of it
with lines at the end that rebind those globals, into a cache folder named by a hash of this
file, ``_numba_math.py`` and Numba's version (an edit to either makes a new folder), imports
the copy and compiles its functions with ``cache=True``, so a second process loads machine
code instead of compiling. (Closures, which the loops were before, got a new cache key in
every process and never hit.)
"""

import numpy as np
from numba import njit, prange

from fusedact.backends import _numba_math as _m
from fusedact.backends._numba_simd import wide_vectors
from fusedact.backends._numba_stream import (LINE_BYTES, STREAM_BLOCK_BYTES, stream_fence,
                                             stream_line)

fwd, der = _m.relu_fwd, _m.relu_der
piecewise, saved_y, identity = True, True, False
pw = _m.pw
# The type the loops compute in: float64, or float32 in a copy bound to _numba_math32's
# functions. In a float32 copy the row sums still run in float64 (f32_copy), without the
# split into exact heads and tails float64 data needs (row_sum_exp), and grad_bias sums in
# float64 in both.
ct = np.float64
f32_copy = False
exp_shifted, exp_lite = _m.exp_shifted, _m.exp_lite
exp_rows = exp_lite


def _inline(fn):
    return njit(inline="always")(fn)


# ---- elementwise: forward, backward, forward with derivative ------------------------------
def backward_at(g, s, q0, q1, q3):
    d = der(ct(s), q0, q1, q3)
    return pw(ct(g), d) if piecewise else ct(g) * d


backward_at = _inline(backward_at)


def derivative_at(x, y_stored, q0, q1, q3):
    # A saved y is the rounded output, as backward would see it.
    return der(ct(y_stored) if saved_y else ct(x), q0, q1, q3)


derivative_at = _inline(derivative_at)


def forward(x, out, p0, p1, p3):
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    for i in prange(x.size):
        wide_vectors()
        out[i] = fwd(ct(x[i]), q0, q1, q3)


def backward(g, s, out, p0, p1, p3):
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    for i in prange(g.size):
        wide_vectors()
        out[i] = backward_at(g[i], s[i], q0, q1, q3)


def with_derivative(x, out_y, out_d, p0, p1, p3):
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    for i in prange(x.size):
        wide_vectors()
        out_y[i] = fwd(ct(x[i]), q0, q1, q3)
        out_d[i] = derivative_at(x[i], out_y[i], q0, q1, q3)


# ---- the same three with streaming stores (_numba_stream explains them), for calls larger
# than the caches. The part of the output before its first 64-byte boundary and the tail
# after the last whole block take plain stores; each prange chunk of STREAM_CHUNK_BLOCKS
# blocks has its own L1 buffer (one allocation per chunk, not per block: 8,192 blocks at
# 4,194,304 float32 elements). derivative=True streams only when both outputs sit at the
# same offset from a 64-byte boundary (the backend checks).
STREAM_CHUNK_BLOCKS = 64


def stream_plan(out):
    """(block, head, blocks, chunks): elements per block, elements before out's first 64-byte
    boundary, whole blocks after them, prange chunks."""
    block = STREAM_BLOCK_BYTES // out.itemsize
    misalign = np.intp(out.ctypes.data % np.uintp(LINE_BYTES))  # intp: uint64 op int64 -> float
    head = min(out.size, (LINE_BYTES - misalign) % LINE_BYTES // out.itemsize)
    blocks = (out.size - head) // block
    return block, head, blocks, (blocks + STREAM_CHUNK_BLOCKS - 1) // STREAM_CHUNK_BLOCKS


stream_plan = _inline(stream_plan)


def stream_block(out, start, buf):
    for j in range(0, buf.size, LINE_BYTES // buf.itemsize):
        stream_line(out, start + j, buf, j)


stream_block = _inline(stream_block)


def forward_streamed(x, out, p0, p1, p3):
    wide_vectors()  # the head and tail loops, outside prange
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    block, head, blocks, chunks = stream_plan(out)
    for c in prange(chunks):
        wide_vectors()
        buf = np.empty(block, out.dtype)
        for b in range(c * STREAM_CHUNK_BLOCKS, min(blocks, (c + 1) * STREAM_CHUNK_BLOCKS)):
            xb = x[head + b * block:head + (b + 1) * block]
            for j in range(block):
                buf[j] = fwd(ct(xb[j]), q0, q1, q3)
            stream_block(out, head + b * block, buf)
        stream_fence()
    for part in (slice(0, head), slice(head + blocks * block, out.size)):
        xp, op = x[part], out[part]
        for i in range(xp.size):
            op[i] = fwd(ct(xp[i]), q0, q1, q3)


def backward_streamed(g, s, out, p0, p1, p3):
    wide_vectors()  # the head and tail loops, outside prange
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    block, head, blocks, chunks = stream_plan(out)
    for c in prange(chunks):
        wide_vectors()
        buf = np.empty(block, out.dtype)
        for b in range(c * STREAM_CHUNK_BLOCKS, min(blocks, (c + 1) * STREAM_CHUNK_BLOCKS)):
            part = slice(head + b * block, head + (b + 1) * block)
            gb, sb = g[part], s[part]
            for j in range(block):
                buf[j] = backward_at(gb[j], sb[j], q0, q1, q3)
            stream_block(out, head + b * block, buf)
        stream_fence()
    for part in (slice(0, head), slice(head + blocks * block, out.size)):
        gp, sp, op = g[part], s[part], out[part]
        for i in range(gp.size):
            op[i] = backward_at(gp[i], sp[i], q0, q1, q3)


def with_derivative_streamed(x, out_y, out_d, p0, p1, p3):
    wide_vectors()  # the head and tail loops, outside prange
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    block, head, blocks, chunks = stream_plan(out_y)
    for c in prange(chunks):
        wide_vectors()
        buf_y = np.empty(block, out_y.dtype)
        buf_d = np.empty(block, out_d.dtype)
        for b in range(c * STREAM_CHUNK_BLOCKS, min(blocks, (c + 1) * STREAM_CHUNK_BLOCKS)):
            xb = x[head + b * block:head + (b + 1) * block]
            for j in range(block):
                buf_y[j] = fwd(ct(xb[j]), q0, q1, q3)
                buf_d[j] = derivative_at(xb[j], buf_y[j], q0, q1, q3)
            stream_block(out_y, head + b * block, buf_y)
            stream_block(out_d, head + b * block, buf_d)
        stream_fence()
    for part in (slice(0, head), slice(head + blocks * block, out_y.size)):
        xp, yp, dp = x[part], out_y[part], out_d[part]
        for i in range(xp.size):
            yp[i] = fwd(ct(xp[i]), q0, q1, q3)
            dp[i] = derivative_at(xp[i], yp[i], q0, q1, q3)


# ---- bias_act: forward, and backward with the column sums (in blocks of rows) -------
def bias_forward(x, bias, out, p0, p1, p3):
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    for r in prange(x.shape[0]):
        wide_vectors()
        for j in range(x.shape[1]):
            z = x[r, j] + bias[j]  # rounded to the dtype, as act(x + bias) sees it
            out[r, j] = z if identity else fwd(ct(z), q0, q1, q3)


# bias_act_backward's rows go in blocks of BIAS_BLOCK_ROWS, each with its own float64 row of
# column partial sums, added up in block order afterwards: the blocks may run on any number
# of threads and grad_bias comes out the same (the loop was serial for that reason: 0.44x the
# C kernel on 2 threads).
BIAS_BLOCK_ROWS = 64


def bias_backward(g, x, bias, gx, partial, p0, p1, p3):
    q0, q1, q3 = ct(p0), ct(p1), ct(p3)
    rows = x.shape[0]
    for blk in prange(partial.shape[0]):
        wide_vectors()
        acc = partial[blk]
        for r in range(blk * BIAS_BLOCK_ROWS, min(rows, (blk + 1) * BIAS_BLOCK_ROWS)):
            for j in range(x.shape[1]):
                z = ct(x[r, j] + bias[j])
                if identity:
                    v = ct(g[r, j])
                else:
                    if saved_y:
                        gx[r, j] = fwd(z, q0, q1, q3)  # y rounded to the dtype, as saved
                        s = ct(gx[r, j])
                    else:
                        s = z
                    d = der(s, q0, q1, q3)
                    v = pw(ct(g[r, j]), d) if piecewise else ct(g[r, j]) * d
                gx[r, j] = v
                acc[j] += np.float64(gx[r, j])


# ---- kernels that take _numba_simd's AVX-512 instructions (gelu's table permutes; silu's,
# float32 gelu_tanh's and float32 log_softmax backward's vscalefps/vscalefpd): their loops
# reach that speed only inside a jitted caller
# (_numba_simd's inlining_caller explains why). The serial loop is `inlined_call` with
# `call_inner` bound to the loop, and the parallel one runs that serial loop on chunks of the
# arrays (a prange loop's body is compiled apart, where the instructions would stay calls).
# numba_backend binds `call_inner` and `serial_loop` in each copy.
def inlined_call(*args):
    wide_vectors()
    return call_inner(args)  # noqa: F821


PARALLEL_CHUNK = 16384  # elements a prange step: 8 steps at 131,072 elements on 2 threads


def chunk_bounds(c, n, step):
    lo = c * step
    return lo, min(n, lo + step)


def forward_chunked(x, out, p0, p1, p3):
    for c in prange(-(-x.size // PARALLEL_CHUNK)):
        wide_vectors()
        lo, hi = chunk_bounds(c, x.size, PARALLEL_CHUNK)
        serial_loop(x[lo:hi], out[lo:hi], p0, p1, p3)  # noqa: F821


def backward_chunked(g, s, out, p0, p1, p3):
    for c in prange(-(-g.size // PARALLEL_CHUNK)):
        wide_vectors()
        lo, hi = chunk_bounds(c, g.size, PARALLEL_CHUNK)
        serial_loop(g[lo:hi], s[lo:hi], out[lo:hi], p0, p1, p3)  # noqa: F821


def with_derivative_chunked(x, out_y, out_d, p0, p1, p3):
    for c in prange(-(-x.size // PARALLEL_CHUNK)):
        wide_vectors()
        lo, hi = chunk_bounds(c, x.size, PARALLEL_CHUNK)
        serial_loop(x[lo:hi], out_y[lo:hi], out_d[lo:hi], p0, p1, p3)  # noqa: F821


def bias_forward_chunked(x, bias, out, p0, p1, p3):
    step = max(1, PARALLEL_CHUNK // max(1, x.shape[1]))  # rows
    for c in prange(-(-x.shape[0] // step)):
        wide_vectors()
        lo, hi = chunk_bounds(c, x.shape[0], step)
        serial_loop(x[lo:hi], bias, out[lo:hi], p0, p1, p3)  # noqa: F821


def bias_backward_chunked(g, x, bias, gx, partial, p0, p1, p3):
    # whole blocks of BIAS_BLOCK_ROWS a step: each block's partial sums as in one serial call
    step = max(1, PARALLEL_CHUNK // max(1, BIAS_BLOCK_ROWS * x.shape[1]))  # blocks
    for c in prange(-(-partial.shape[0] // step)):
        wide_vectors()
        lo, hi = chunk_bounds(c, partial.shape[0], step)
        rows = slice(lo * BIAS_BLOCK_ROWS, hi * BIAS_BLOCK_ROWS)
        serial_loop(g[rows], x[rows], bias, gx[rows], partial[lo:hi], p0, p1, p3)  # noqa: F821


def log_softmax_backward_chunked(g, y, out):
    step = max(1, PARALLEL_CHUNK // max(1, y.shape[1]))  # rows a prange step
    for c in prange(-(-y.shape[0] // step)):
        wide_vectors()
        lo, hi = chunk_bounds(c, y.shape[0], step)
        serial_loop(g[lo:hi], y[lo:hi], out[lo:hi])  # noqa: F821


chunk_bounds = _inline(chunk_bounds)


# ---- rows: the softmax family, maxout, cross-entropy -------------------------------------
# Reductions along a row: a single running float max or compensated sum is a serial chain
# LLVM cannot vectorise (softmax on rows of 1024 ran at 0.08x the C kernels that way); they
# go through maxnum, or through additions LLVM may reorder (sums whose order cannot matter).


# The maximum by llvm.maxnum, which LLVM's vectorizer reduces in SIMD lanes (a select on a
# comparison it reduces only under fastmath's no-NaN promise). maxnum passes over NaNs; a
# row that holds one still comes out all NaN, since that entry's exponential, and so the
# row's sum, is NaN, as if the maximum were. 256 float32 rows of 1024, the maximum alone: 32.5
# us on integer keys (two integer max reductions, one of them to find NaNs) -> 19.6 us.
def row_max(row):
    best = ct(-np.inf)
    for i in range(row.size):
        best = _m.maxnum(best, ct(row[i]))
    return best


row_max = _inline(row_max)


@njit(fastmath={"contract", "reassoc"}, error_model="numpy")
def row_total_f64(a):
    """Sum of a in float64, reordered into SIMD lanes (float32 terms: the order does not
    matter at float64 precision)."""
    wide_vectors()
    s = 0.0
    for i in range(a.size):
        s += np.float64(a[i])
    return s


def row_fill_exp(row, m_, out_row):
    """out_row[i] = e^(row[i] - m_): a plain loop, one SIMD vector at a time."""
    for i in range(row.size):
        out_row[i] = exp_shifted(ct(row[i]), m_)


row_fill_exp = _inline(row_fill_exp)


@njit(fastmath={"contract", "reassoc"}, error_model="numpy")
def add_reassociable(s, t):
    """s + t that LLVM may reorder: inlined into a loop, a sum through it vectorizes while
    the loop's other arithmetic keeps its order (fastmath flags belong to instructions)."""
    return s + t


SPLIT_C = 2.0 ** 26  # e + SPLIT_C - SPLIT_C: e to a multiple of 2^-26, for 0 <= e <= 1


def row_sum_exp(row, m_, out_row):
    """Sum of e^(row - m_), stored in out_row, for float64 rows (float32 rows take
    row_fill_exp and row_total_f64). Each term, at most 1, is split into a head on a grid
    of 2^-26 and a tail under 2^-27: the heads add up exactly in any order (rows under 2^27
    entries), so both sums may be reordered into SIMD lanes, and the tails' rounding is
    2^-27 of the terms'. One pass: 256 rows of 1024, one thread, 351 us with 16 Neumaier
    lanes in arrays (Numba cannot keep them in registers) -> 254 us (the exponentials
    alone: 212)."""
    heads = 0.0
    tails = 0.0
    for i in range(row.size):
        e = exp_shifted(ct(row[i]), m_)
        out_row[i] = e
        head = (e + SPLIT_C) - SPLIT_C
        heads = add_reassociable(heads, head)
        tails = add_reassociable(tails, e - head)
    return heads + tails


row_sum_exp = _inline(row_sum_exp)


def row_scale(row, s):
    """row[j] / s, one rounding per entry. float32 copies: 1/s split in two floats and
    row inv_hi + row inv_lo contracted to one FMA (within 2^-48 of the double product, as the
    C kernels do; the double product took two conversions each way: softmax 203 -> 186 us for
    256 rows of 1024, one thread)."""
    if f32_copy:
        inv = 1.0 / s
        inv_hi = ct(inv)
        inv_lo = ct(inv - np.float64(inv_hi))
        for j in range(row.size):
            row[j] = row[j] * inv_hi + row[j] * inv_lo
    else:
        # e / s rounded once without a division per entry, as the C kernels (vdivpd held
        # float64 softmax at 0.78x c: 256 rows of 1024, one thread, this loop 82 -> 34-39 us)
        inv = 1.0 / s
        for j in range(row.size):
            row[j] = _m.divide_by(np.float64(row[j]), s, inv)


row_scale = _inline(row_scale)


def softmax(x, out):
    for r in prange(x.shape[0]):
        wide_vectors()
        m_ = ct(row_max(x[r]))
        if f32_copy:  # the exponentials stored, then summed in lanes (in place: safe,
            row_fill_exp(x[r], m_, out[r])  # element i is read before it is written)
            s = row_total_f64(out[r])
        else:
            s = row_sum_exp(x[r], m_, out[r])
        row_scale(out[r], s)


def log_softmax(x, out):
    rows, n = x.shape
    chunk = 64
    for c in prange((rows + chunk - 1) // chunk):
        wide_vectors()
        # out may be x itself, so the exponentials go to a scratch row (storing them was
        # faster for float64 too: 631 -> 438 us for 256 rows of 1024, one thread).
        scratch = np.empty(n, ct)
        for r in range(c * chunk, min(rows, (c + 1) * chunk)):
            m_ = ct(row_max(x[r]))
            if f32_copy:
                row_fill_exp(x[r], m_, scratch)
                s = row_total_f64(scratch)
            else:
                s = row_sum_exp(x[r], m_, scratch)
            log_s = ct(np.log(s))
            for j in range(n):
                out[r, j] = (ct(x[r, j]) - m_) - log_s


@njit(fastmath={"contract", "reassoc"}, error_model="numpy")
def row_dot(a, b):
    """Sum of a * b in the compute type, reordered into SIMD lanes (a plain sum: the order
    is as arbitrary as the lanes' was; 16 lane arrays kept it at 0.5x the C kernel)."""
    wide_vectors()
    total = ct(0.0)
    for i in range(a.size):
        total += ct(a[i]) * ct(b[i])
    return total


@njit(fastmath={"contract", "reassoc"}, error_model="numpy")
def row_total(a):
    """Sum of a in the compute type, reordered into SIMD lanes."""
    wide_vectors()
    total = ct(0.0)
    for i in range(a.size):
        total += ct(a[i])
    return total


def softmax_backward(g, y, out):
    for r in prange(y.shape[0]):
        wide_vectors()
        dot = row_dot(g[r], y[r])
        for j in range(y.shape[1]):
            out[r, j] = ct(y[r, j]) * (ct(g[r, j]) - dot)


def log_softmax_backward(g, y, out):
    for r in prange(y.shape[0]):
        wide_vectors()
        total = row_total(g[r])
        for j in range(y.shape[1]):
            out[r, j] = ct(g[r, j]) - exp_rows(ct(y[r, j])) * total


def takes(best, v):
    """True where v replaces the running best: the leftmost NaN, else the leftmost maximum
    (an associative rule, so pairs may be combined in any tree)."""
    return (best == best) & ((v > best) | (v != v))


takes = _inline(takes)


def maxout(x, out, pieces):
    # The running best by value (not re-read through its index): 6x faster on rows of 1024
    # in 4 pieces. Two and four pieces have straight-line bodies that LLVM vectorises with
    # interleaved loads (256x1024 float32 in pairs: 231 -> 20 us); other counts loop.
    for r in prange(x.shape[0]):
        wide_vectors()
        xr = x[r]
        orow = out[r]
        if pieces == 2:
            for g_ in range(orow.size):
                a, b = xr[2 * g_], xr[2 * g_ + 1]
                orow[g_] = b if takes(a, b) else a
        elif pieces == 4:
            for g_ in range(orow.size):
                a, b = xr[4 * g_], xr[4 * g_ + 1]
                c, d = xr[4 * g_ + 2], xr[4 * g_ + 3]
                ab = b if takes(a, b) else a
                cd = d if takes(c, d) else c
                orow[g_] = cd if takes(ab, cd) else ab
        else:
            for g_ in range(orow.size):
                base = g_ * pieces
                best = xr[base]
                for k in range(base + 1, base + pieces):
                    v = xr[k]
                    best = v if takes(best, v) else best
                orow[g_] = best


def maxout_backward(g, x, out, pieces):
    for r in prange(x.shape[0]):
        wide_vectors()
        xr = x[r]
        orow = out[r]
        grow = g[r]
        if pieces == 2:
            for g_ in range(grow.size):
                second = takes(xr[2 * g_], xr[2 * g_ + 1])
                gv = grow[g_]
                orow[2 * g_] = 0.0 if second else gv
                orow[2 * g_ + 1] = gv if second else 0.0
        elif pieces == 4:
            for g_ in range(grow.size):
                a, b = xr[4 * g_], xr[4 * g_ + 1]
                c, d = xr[4 * g_ + 2], xr[4 * g_ + 3]
                t_ab, t_cd = takes(a, b), takes(c, d)
                ab = b if t_ab else a
                cd = d if t_cd else c
                at = (3 if t_cd else 2) if takes(ab, cd) else (1 if t_ab else 0)
                gv = grow[g_]
                orow[4 * g_] = gv if at == 0 else 0.0
                orow[4 * g_ + 1] = gv if at == 1 else 0.0
                orow[4 * g_ + 2] = gv if at == 2 else 0.0
                orow[4 * g_ + 3] = gv if at == 3 else 0.0
        else:
            for g_ in range(grow.size):
                base = g_ * pieces
                best = xr[base]
                at = base
                for k in range(base + 1, base + pieces):
                    v = xr[k]
                    take = takes(best, v)
                    best = v if take else best
                    at = k if take else at
                for k in range(base, base + pieces):
                    orow[k] = 0.0
                orow[at] = grow[g_]


def xent(z, labels, ignore, loss, grad):
    for r in prange(z.shape[0]):
        wide_vectors()
        label = labels[r]
        if label == ignore:
            loss[r] = 0.0
            for j in range(z.shape[1]):
                grad[r, j] = 0.0
            continue
        z_label = ct(z[r, label])
        m_ = ct(row_max(z[r]))
        if f32_copy:
            row_fill_exp(z[r], m_, grad[r])
            s = row_total_f64(grad[r])
        else:
            s = row_sum_exp(z[r], m_, grad[r])
        loss[r] = ct(np.log(s)) - (z_label - m_)
        row_scale(grad[r], s)
        grad[r, label] -= 1.0


# ---- the softmax family along a middle axis: an (outer, n, inner) array reduced along n ---
# Down the columns of blocks of inner, vectorised across them, as the C kernels' M(cols)
# (fa_loops.inc): the axis is never moved last by transposing copies. Each column gets the
# rows' arithmetic (sums in float64, compensated for float64 data). The loops index 1-D row
# pieces (x[o, i, j0:j1]): with three indices, j0 + j could be negative as far as Numba
# knows, and its wraparound test kept LLVM from vectorising. softmax of 8 x 21 x 64 x 64
# float32 along axis 1, one thread: 5.0 ms through transposing copies, 2.9 ms with three
# indices (c 0.74), 1.3-2.1 ms with row pieces, 0.71 ms with cols_exp_sum's two loops (c
# 0.66-0.69); float64 1.42-1.51 ms (c 1.42-1.75).
COLS_BLOCK_ELEMS = 32768  # a block's elements, read two or three times, stay in L2
COLS_BLOCK_MAX = 256


def cols_blocks(n, inner):
    """(columns a block, blocks an outer index)."""
    width = min(inner, max(16, min(COLS_BLOCK_MAX, COLS_BLOCK_ELEMS // max(n, 1) // 16 * 16)))
    return width, (inner + width - 1) // width


def cols_block(item, width, blocks, inner):
    """Work item `item`'s outer index, first column and column count."""
    j0 = item % blocks * width
    return item // blocks, j0, min(width, inner - j0)


cols_blocks = _inline(cols_blocks)
cols_block = _inline(cols_block)


def cols_max(x, o, j0, m):
    """m[j] = the maximum of column j0 + j of x[o], NaN if it holds one."""
    for j in range(m.size):
        m[j] = -np.inf
    for i in range(x.shape[1]):
        xi = x[o, i, j0:j0 + m.size]
        for j in range(m.size):
            v = ct(xi[j])
            m[j] = v if (v > m[j]) | (v != v) else m[j]


cols_max = _inline(cols_max)


def cols_exp_sum(x, o, j0, m, s, out, store):
    """s[j] = the sum of e^(x - m[j]) down column j0 + j, the exponentials left in out where
    store. The exponentials and the float64 sums run as two loops: in one, LLVM left the
    float32 loop scalar (the widening to float64 beside them)."""
    w = m.size
    comp = np.zeros(w)
    buf = np.empty(0 if store else w, ct)
    for j in range(w):
        s[j] = 0.0
    for i in range(x.shape[1]):
        xi = x[o, i, j0:j0 + w]
        ei = out[o, i, j0:j0 + w] if store else buf
        for j in range(w):
            ei[j] = exp_shifted(ct(xi[j]), m[j])
        if f32_copy:
            for j in range(w):
                s[j] += np.float64(ei[j])
        else:
            for j in range(w):
                t = s[j] + ei[j]
                comp[j] += _m.two_sum_err(s[j], ei[j], t)
                s[j] = t
    for j in range(w):
        s[j] += comp[j]


cols_exp_sum = _inline(cols_exp_sum)


def cols_max_sum(x, o, j0, w, out, store):
    """The first two passes of softmax and log_softmax over a block of w columns: each
    column's maximum m and sum s of e^(x - m)."""
    m = np.empty(w, ct)
    s = np.empty(w)
    cols_max(x, o, j0, m)
    cols_exp_sum(x, o, j0, m, s, out, store)
    return m, s


cols_max_sum = _inline(cols_max_sum)


def axis_softmax(x, out):
    outer, n, inner = x.shape
    width, blocks = cols_blocks(n, inner)
    for item in prange(outer * blocks):
        wide_vectors()
        o, j0, w = cols_block(item, width, blocks, inner)
        m, s = cols_max_sum(x, o, j0, w, out, True)
        if f32_copy:  # e (1/s), 1/s in double split in two floats (the rows' row_scale)
            hi, lo = np.empty(w, ct), np.empty(w, ct)
            for j in range(w):
                inv = 1.0 / s[j]
                hi[j] = ct(inv)
                lo[j] = ct(inv - np.float64(hi[j]))
            for i in range(n):
                oi = out[o, i, j0:j0 + w]
                for j in range(w):
                    oi[j] = oi[j] * hi[j] + oi[j] * lo[j]
        else:
            inv = 1.0 / s
            for i in range(n):
                oi = out[o, i, j0:j0 + w]
                for j in range(w):
                    oi[j] = _m.divide_by(oi[j], s[j], inv[j])


def axis_log_softmax(x, out):
    outer, n, inner = x.shape
    width, blocks = cols_blocks(n, inner)
    for item in prange(outer * blocks):
        wide_vectors()
        o, j0, w = cols_block(item, width, blocks, inner)
        m, s = cols_max_sum(x, o, j0, w, out, False)  # out may be x: nothing stored
        log_s = np.empty(w, ct)
        for j in range(w):  # vectorised: np.log was a call per column
            log_s[j] = ct(_m.log_ge1(s[j]))
        for i in range(n):
            xi, oi = x[o, i, j0:j0 + w], out[o, i, j0:j0 + w]
            for j in range(w):
                oi[j] = (ct(xi[j]) - m[j]) - log_s[j]


def axis_softmax_backward(g, y, out):
    outer, n, inner = y.shape
    width, blocks = cols_blocks(n, inner)
    for item in prange(outer * blocks):
        wide_vectors()
        o, j0, w = cols_block(item, width, blocks, inner)
        dot = np.zeros(w, ct)
        for i in range(n):
            gi, yi = g[o, i, j0:j0 + w], y[o, i, j0:j0 + w]
            for j in range(w):
                dot[j] += ct(gi[j]) * ct(yi[j])
        for i in range(n):
            gi, yi, oi = g[o, i, j0:j0 + w], y[o, i, j0:j0 + w], out[o, i, j0:j0 + w]
            for j in range(w):
                oi[j] = ct(yi[j]) * (ct(gi[j]) - dot[j])


def axis_log_softmax_backward(g, y, out):
    outer, n, inner = y.shape
    width, blocks = cols_blocks(n, inner)
    for item in prange(outer * blocks):
        wide_vectors()
        o, j0, w = cols_block(item, width, blocks, inner)
        total = np.zeros(w, ct)
        for i in range(n):
            gi = g[o, i, j0:j0 + w]
            for j in range(w):
                total[j] += ct(gi[j])
        for i in range(n):
            gi, yi, oi = g[o, i, j0:j0 + w], y[o, i, j0:j0 + w], out[o, i, j0:j0 + w]
            for j in range(w):
                oi[j] = ct(gi[j]) - exp_lite(ct(yi[j])) * total[j]
