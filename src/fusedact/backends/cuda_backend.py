"""The ``cuda`` backend: Numba CUDA kernels for device arrays (not written yet)."""

from __future__ import annotations

from ._base import Backend


class CudaBackend(Backend):
    name = "cuda"

    def probe(self):
        return False, "not yet implemented"

    def has_kernel(self, op_name):
        return False
