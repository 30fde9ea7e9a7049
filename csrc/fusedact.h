/* fusedact C API: the one header that declares everything the Python side calls.
 *
 * csrc/build_ffi.py feeds the declarations between the FA_CDEF markers to cffi's cdef, so
 * this file is the single source of truth for the binding. Keep that block free of
 * preprocessor lines.
 *
 * Conventions: arrays are contiguous; n, rows and cols are element counts (64-bit: sizes past
 * 2^31 work); `threads` is the most threads a call may use (1 = the caller's thread only).
 * Outputs may be exactly their input (same pointer: in place) but must not otherwise overlap
 * an input. Functions return 0, or -1 for an unknown op id. Nothing here changes the
 * floating-point environment (rounding mode, flush-to-zero).
 */
#ifndef FUSEDACT_H
#define FUSEDACT_H

#include <stdint.h>

/* FA_CDEF_BEGIN */
/* Version of this C API; the Python side refuses an extension with another one. */
int fa_abi_version(void);

/* CPU features found at load, e.g. "sse2 avx2 fma avx512f avx512dq avx512bw". */
const char *fa_cpu_features(void);

/* SIMD levels: 0 baseline (SSE2 on x86-64), 1 AVX2+FMA+F16C, 2 AVX-512 (F/DQ/VL/BW, F16C). */
int fa_simd_level(void);             /* the level in use */
int fa_simd_max_level(void);         /* the best this CPU and build support */
int fa_simd_set_level(int level);    /* use min(level, max); returns the level now in use */
const char *fa_simd_name(int level); /* "baseline", "avx2", "avx512" */

/* Elementwise ops: ids 0..fa_op_count()-1, named by fa_op_name (gelu_tanh is gelu with
 * approximate='tanh'). mode 0: forward, a = x -> o1 = y. mode 1: backward, a = grad_out,
 * b = saved (x or y) -> o1 = grad_in. mode 2: forward with derivative, a = x -> o1 = y,
 * o2 = dy/dx. params: the op's parameters in catalogue order (4 slots). */
int fa_op_count(void);
const char *fa_op_name(int op);
int fa_elementwise_f32(int op, int mode, const float *a, const float *b, float *o1, float *o2,
                       int64_t n, const double *params, int threads);
int fa_elementwise_f64(int op, int mode, const double *a, const double *b, double *o1,
                       double *o2, int64_t n, const double *params, int threads);
/* float16 arrays (IEEE binary16 bits): the float32 kernel on the widened values, each result
 * rounded to nearest even, in one pass. */
int fa_elementwise_f16(int op, int mode, const uint16_t *a, const uint16_t *b, uint16_t *o1,
                       uint16_t *o2, int64_t n, const double *params, int threads);
/* The conversions those loops use (at the SIMD level in use), for tests and callers. */
void fa_f16_to_f32(const uint16_t *src, float *dst, int64_t n);
void fa_f32_to_f16(const float *src, uint16_t *dst, int64_t n);

/* Row ops on a rows x cols array, along each row. kind 0 softmax, 1 log_softmax (x -> y);
 * kind 2 softmax backward, 3 log_softmax backward (g, x = saved y -> y = grad_in). */
int fa_rows_f32(int kind, const float *x, const float *g, float *y, int64_t rows, int64_t cols,
                int threads);
int fa_rows_f64(int kind, const double *x, const double *g, double *y, int64_t rows,
                int64_t cols, int threads);

/* The same four kinds along the middle axis of a C-contiguous (outer, n, inner) array, without
 * moving that axis last (g, as above, only for the backward kinds). */
int fa_axis_f32(int kind, const float *x, const float *g, float *y, int64_t outer, int64_t n,
                int64_t inner, int threads);
int fa_axis_f64(int kind, const double *x, const double *g, double *y, int64_t outer,
                int64_t n, int64_t inner, int threads);

/* Fused cross-entropy over rows of logits z: loss per row and grad = softmax - onehot; rows
 * whose label equals ignore get loss 0 and a zero gradient. Labels must be in [0, cols). */
int fa_softmax_xent_f32(const float *z, const int64_t *labels, int64_t ignore, float *loss,
                        float *grad, int64_t rows, int64_t cols, int threads);
int fa_softmax_xent_f64(const double *z, const int64_t *labels, int64_t ignore, double *loss,
                        double *grad, int64_t rows, int64_t cols, int threads);

/* y = act(x + bias) on rows x cols, bias of length cols; op -1 is the identity. */
int fa_bias_act_f32(int op, const float *x, const float *bias, float *y, int64_t rows,
                    int64_t cols, const double *params, int threads);
int fa_bias_act_f64(int op, const double *x, const double *bias, double *y, int64_t rows,
                    int64_t cols, const double *params, int threads);
/* gx = g * act'(x + bias) and gb = gx summed over rows (accumulated in double), one pass. */
int fa_bias_act_backward_f32(int op, const float *g, const float *x, const float *bias,
                             float *gx, float *gb, int64_t rows, int64_t cols,
                             const double *params, int threads);
int fa_bias_act_backward_f64(int op, const double *g, const double *x, const double *bias,
                             double *gx, double *gb, int64_t rows, int64_t cols,
                             const double *params, int threads);

/* maxout over groups of `pieces` consecutive entries of each row (cols = groups * pieces):
 * y is rows x groups. Backward routes g to the first maximum (or first NaN) of each group. */
int fa_maxout_f32(const float *x, float *y, int64_t rows, int64_t groups, int64_t pieces,
                  int threads);
int fa_maxout_f64(const double *x, double *y, int64_t rows, int64_t groups, int64_t pieces,
                  int threads);
int fa_maxout_backward_f32(const float *g, const float *x, float *gx, int64_t rows,
                           int64_t groups, int64_t pieces, int threads);
int fa_maxout_backward_f64(const double *g, const double *x, double *gx, int64_t rows,
                           int64_t groups, int64_t pieces, int threads);

/* Elementwise calls of the cheap ops (relu and its clamps; the backward of sigmoid, tanh,
 * hardsigmoid, hardswish, softsign) whose arrays, inputs and outputs together, span at least
 * this many bytes write their outputs with non-temporal stores (40 MiB unless set). bytes >= 0
 * sets it (0: every such call, INT64_MAX: none); a negative value only reads it. Returns the
 * value in use. */
int64_t fa_stream_min_bytes(int64_t bytes);

/* Benchmark baselines on the same thread pool: dst = src (nbytes), and out = a + b. */
int fa_copy(const void *src, void *dst, int64_t nbytes, int threads);
int fa_add_f32(const float *a, const float *b, float *out, int64_t n, int threads);
int fa_add_f64(const double *a, const double *b, double *out, int64_t n, int threads);
/* FA_CDEF_END */

#endif
