/* Internal declarations shared by the kernel translation units and the dispatcher. */
#ifndef FA_INTERNAL_H
#define FA_INTERNAL_H

#include <stdint.h>

/* x86-64 with GCC or Clang: kernels are built for three SIMD levels and one is chosen at
 * load. Elsewhere only the portable build exists. */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FA_X86_DISPATCH 1
#endif

/* Elementwise ops, in the order of fusedact's catalogue (ELEMENTWISE_OPS). The Python side
 * reads the names back through fa_op_name(), so a mismatch cannot go unnoticed. */
#define FA_ELEMENTWISE_OPS(X) \
    X(sigmoid) X(tanh) X(relu) X(leaky_relu) X(relu6) X(hardtanh) X(elu) X(selu) X(celu) \
    X(silu) X(swish) X(mish) X(gelu) X(gelu_tanh) X(softplus) X(logsigmoid) X(hardsigmoid) \
    X(hardswish) X(softsign)

/* The math and op functions are inlined into every loop that calls them: a call left in a
 * loop body stops the vectoriser (GCC 12 declined to inline fa_exp_parts in 16 places). */
#if defined(__GNUC__) || defined(__clang__)
#define FA_INLINE static inline __attribute__((always_inline))
#else
#define FA_INLINE static inline
#endif

enum fa_op {
#define FA_ENUM(name) FA_OP_##name,
    FA_ELEMENTWISE_OPS(FA_ENUM)
#undef FA_ENUM
    FA_OP_COUNT
};

enum fa_mode { FA_FORWARD = 0, FA_BACKWARD = 1, FA_FORWARD_DERIVATIVE = 2 };

/* Every kernel of one SIMD target, float32 and float64. */
typedef void (*fa_ew_f32_fn)(int op, int mode, const float *a, const float *b, float *o1,
                             float *o2, int64_t n, const double *params);
typedef void (*fa_ew_f64_fn)(int op, int mode, const double *a, const double *b, double *o1,
                             double *o2, int64_t n, const double *params);
typedef void (*fa_bias_f32_fn)(int op, const float *x, const float *bias, float *y,
                               int64_t rows, int64_t cols, const double *params);
typedef void (*fa_bias_f64_fn)(int op, const double *x, const double *bias, double *y,
                               int64_t rows, int64_t cols, const double *params);
typedef void (*fa_bias_bwd_f32_fn)(int op, const float *g, const float *x, const float *bias,
                                   float *gx, double *gb_acc, int64_t rows, int64_t cols,
                                   const double *params);
typedef void (*fa_bias_bwd_f64_fn)(int op, const double *g, const double *x,
                                   const double *bias, double *gx, double *gb_acc,
                                   int64_t rows, int64_t cols, const double *params);
typedef void (*fa_rows_f32_fn)(int kind, const float *x, const float *g, float *y,
                               int64_t rows, int64_t cols);
typedef void (*fa_rows_f64_fn)(int kind, const double *x, const double *g, double *y,
                               int64_t rows, int64_t cols);
/* The same four kinds down the columns of a block (fa_loops.inc, M(cols)): n rows of
 * `width` elements at a row stride of `stride`, width at most FA_COLS_BLOCK (the kernels'
 * scratch: five arrays of that many on the stack). */
#define FA_COLS_BLOCK 256
typedef void (*fa_cols_f32_fn)(int kind, const float *x, const float *g, float *y, int64_t n,
                               int64_t stride, int64_t width);
typedef void (*fa_cols_f64_fn)(int kind, const double *x, const double *g, double *y,
                               int64_t n, int64_t stride, int64_t width);
typedef void (*fa_xent_f32_fn)(const float *z, const int64_t *labels, int64_t ignore,
                               float *loss, float *grad, int64_t rows, int64_t cols);
typedef void (*fa_xent_f64_fn)(const double *z, const int64_t *labels, int64_t ignore,
                               double *loss, double *grad, int64_t rows, int64_t cols);

/* maxout over the groups [first, end) of `pieces` entries each (fa_loops.inc), and its
 * backward. */
typedef void (*fa_maxout_f32_fn)(const float *x, float *y, int64_t first, int64_t end,
                                 int64_t pieces);
typedef void (*fa_maxout_f64_fn)(const double *x, double *y, int64_t first, int64_t end,
                                 int64_t pieces);
typedef void (*fa_maxout_bwd_f32_fn)(const float *g, const float *x, float *gx, int64_t first,
                                     int64_t end, int64_t pieces);
typedef void (*fa_maxout_bwd_f64_fn)(const double *g, const double *x, double *gx,
                                     int64_t first, int64_t end, int64_t pieces);

/* dst = src for nbytes (a multiple of 4) with non-temporal stores where the target has them;
 * dst 64-byte aligned, src too. The caller fences (fusedact.c, stream_fence) before its results are
 * published to another thread. */
typedef void (*fa_stream_fn)(void *dst, const void *src, int64_t nbytes);

/* float16 (IEEE binary16, as uint16_t bits) to float32 and back, rounded to nearest even,
 * for the float16 loops (fusedact.c, fa_elementwise_f16). */
typedef void (*fa_f16_to_f32_fn)(const uint16_t *src, float *dst, int64_t n);
typedef void (*fa_f32_to_f16_fn)(const float *src, uint16_t *dst, int64_t n);

typedef struct fa_kernels {
    const char *name;
    fa_stream_fn stream;
    fa_f16_to_f32_fn f16_to_f32;
    fa_f32_to_f16_fn f32_to_f16;
    fa_ew_f32_fn ew_f32;
    fa_ew_f64_fn ew_f64;
    fa_bias_f32_fn bias_f32;
    fa_bias_f64_fn bias_f64;
    fa_bias_bwd_f32_fn bias_bwd_f32;
    fa_bias_bwd_f64_fn bias_bwd_f64;
    fa_rows_f32_fn rows_f32;
    fa_rows_f64_fn rows_f64;
    fa_cols_f32_fn cols_f32;
    fa_cols_f64_fn cols_f64;
    fa_xent_f32_fn xent_f32;
    fa_xent_f64_fn xent_f64;
    fa_maxout_f32_fn maxout_f32;
    fa_maxout_f64_fn maxout_f64;
    fa_maxout_bwd_f32_fn maxout_bwd_f32;
    fa_maxout_bwd_f64_fn maxout_bwd_f64;
} fa_kernels;

/* Row kernels' `kind`. */
enum fa_row_kind {
    FA_ROWS_SOFTMAX = 0, FA_ROWS_LOG_SOFTMAX = 1,
    FA_ROWS_SOFTMAX_BWD = 2, FA_ROWS_LOG_SOFTMAX_BWD = 3
};

extern const fa_kernels fa_kernels_baseline;
#if defined(FA_X86_DISPATCH)
extern const fa_kernels fa_kernels_avx2;
extern const fa_kernels fa_kernels_avx512;
#endif

/* Thread pool: run fn(ctx, begin, end) over [0, n) in chunks of `grain` on up to `threads`
 * threads (the caller's included). */
typedef void (*fa_range_fn)(void *ctx, int64_t begin, int64_t end);
void fa_parallel_for(int64_t n, int64_t grain, int threads, fa_range_fn fn, void *ctx);

#endif
