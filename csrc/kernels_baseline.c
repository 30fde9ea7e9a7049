/* The portable kernels: SSE2 on x86-64 (its baseline), whatever the compiler targets
 * elsewhere. */
#define FA_TARGET baseline
#define FA_TARGET_NAME "baseline"
#include "fa_kernels.inc"
