"""Fixtures: the backend under test (each host backend, the C kernels at every SIMD level, and
the cuda backend, on Numba's CUDA simulator where there is no GPU)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Before anything imports numba.cuda: without an NVIDIA device the cuda backend's tests run on
# Numba's CUDA simulator (set NUMBA_ENABLE_CUDASIM=0 to see the backend reported unavailable).
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not os.path.exists("/dev/nvidia0"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    # The simulator runs each CUDA thread as a Python thread, and every __syncthreads() waits
    # for all of them: with the default 5 ms GIL switch interval a softmax row took 300 ms,
    # with 10 us it takes 18 ms.
    sys.setswitchinterval(1e-5)

import fusedact  # noqa: E402
from cases import CUDA_BACKENDS, HOST_BACKENDS, SIMD_VARIANTS, variant_backend  # noqa: E402


@pytest.fixture(params=HOST_BACKENDS + SIMD_VARIANTS + CUDA_BACKENDS)
def backend(request):
    """The backend name to pass as backend=...; for c@LEVEL, the C kernels forced to LEVEL."""
    with variant_backend(request.param) as name:
        yield name


@pytest.fixture(params=HOST_BACKENDS)
def host_backend(request):
    """Each host backend once (no SIMD variants, no cuda): for tests of code built on the
    kernels (layers, training) rather than of the kernels themselves, which would run for
    minutes on the CUDA simulator."""
    return request.param
