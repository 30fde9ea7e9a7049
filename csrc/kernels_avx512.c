/* The kernels compiled for AVX-512 (F, DQ, VL, BW: Skylake-X, Zen 4 and later), with 512-bit
 * vectors preferred: GCC otherwise keeps 256-bit vectors on AVX-512 targets. */
#include "fa_internal.h"
#if defined(FA_X86_DISPATCH)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,f16c,prefer-vector-width=512")
#endif
#define FA_TARGET avx512
#define FA_STREAM_VECTOR 64 /* bytes a streaming store writes */
#define FA_TARGET_NAME "avx512"
#define FA_F16C 1 /* float16 conversions by vcvtph2ps/vcvtps2ph */
#define FA_AVX512_F32_PATHS 1 /* the float32 intrinsic loops of fa_avx512_f32.inc */
#define FA_AVX512_F64_PATHS 1 /* and the float64 ones of fa_avx512_f64.inc */
#include "fa_kernels.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
