"""setuptools entry for the compiled parts; all metadata lives in pyproject.toml.

Two extensions: ``fusedact._fusedact_c``, the kernels, built by cffi (csrc/build_ffi.py), and
``fusedact._fastpath``, a small CPython C-API module that calls those kernels for small
elementwise calls without cffi's and Python's per-call costs (csrc/pyext/fastpath.c).
"""

import os

import numpy
from setuptools import Extension, setup

fastpath = Extension(
    "fusedact._fastpath",
    sources=["csrc/pyext/fastpath.c"],
    include_dirs=[numpy.get_include()],
    # Compiled against NumPy 2's headers, which target the 1.x ABI unless told otherwise, so
    # the module also loads under NumPy 1.26, the oldest the package supports.
    # FUSEDACT_CFLAGS: extra flags for both extensions (tools/check_memory.sh's sanitizers)
    extra_compile_args=["-O2", "-std=gnu11"] + os.environ.get("FUSEDACT_CFLAGS", "").split(),
)

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"], ext_modules=[fastpath])
