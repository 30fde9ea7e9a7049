/* The kernels compiled for AVX2 + FMA (and F16C, which every CPU with AVX2 has: Haswell, Zen 1
 * and later), chosen at load when the CPU has all three. The pragma, not a command-line flag,
 * sets the target, so the rest of the extension stays baseline and runs anywhere. */
#include "fa_internal.h"
#if defined(FA_X86_DISPATCH)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
#define FA_TARGET avx2
#define FA_STREAM_VECTOR 32 /* bytes a streaming store writes */
#define FA_TARGET_NAME "avx2"
#define FA_F16C 1 /* float16 conversions by vcvtph2ps/vcvtps2ph */
#include "fa_kernels.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
