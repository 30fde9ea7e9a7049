"""The ``numba`` backend: Numba JIT CPU kernels (not written yet; see the issue tracker)."""

from __future__ import annotations

from ._base import Backend


class NumbaBackend(Backend):
    name = "numba"

    def probe(self):
        return False, "not yet implemented"

    def has_kernel(self, op_name):
        return False
