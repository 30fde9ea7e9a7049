/* The portable kernels: SSE2 on x86-64 (its baseline), whatever the compiler targets
 * elsewhere. */
#include "fa_internal.h"
#if defined(FA_X86_DISPATCH) || defined(__SSE2__)
#define FA_STREAM_VECTOR 16 /* SSE2 is part of x86-64 */
#else
#define FA_STREAM_VECTOR 0
#endif
#define FA_TARGET baseline
#define FA_TARGET_NAME "baseline"
#include "fa_kernels.inc"
