/* fusedact C API: the one header that declares everything the Python side calls.
 *
 * csrc/build_ffi.py feeds the declarations between the FA_CDEF markers to cffi's cdef, so
 * this file is the single source of truth for the binding. Keep that block free of
 * preprocessor lines other than the markers.
 */
#ifndef FUSEDACT_H
#define FUSEDACT_H

#include <stdint.h>

/* FA_CDEF_BEGIN */
/* Version of this C API; the Python side refuses an extension with another one. */
int fa_abi_version(void);

/* CPU features found at load: a short text such as "sse2 avx2 fma avx512f avx512dq". */
const char *fa_cpu_features(void);
/* FA_CDEF_END */

#endif
