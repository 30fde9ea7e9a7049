/* CPU feature detection, done once at load. */
#include <stdio.h>
#include <string.h>

#include "fusedact.h"

#define FA_ABI_VERSION 1

int fa_abi_version(void) { return FA_ABI_VERSION; }

const char *fa_cpu_features(void)
{
    static char text[128];
    if (text[0])
        return text;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    snprintf(text, sizeof text, "sse2%s%s%s%s%s",
             __builtin_cpu_supports("avx2") ? " avx2" : "",
             __builtin_cpu_supports("fma") ? " fma" : "",
             __builtin_cpu_supports("avx512f") ? " avx512f" : "",
             __builtin_cpu_supports("avx512dq") ? " avx512dq" : "",
             __builtin_cpu_supports("avx512bw") ? " avx512bw" : "");
#else
    snprintf(text, sizeof text, "portable");
#endif
    return text;
}
