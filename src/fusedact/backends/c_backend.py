"""The ``c`` backend: C kernels from ``csrc/``, built at install by cffi."""

from __future__ import annotations

from ._base import Backend

_ABI_VERSION = 1


def load_extension():
    """Import the compiled extension; return (lib, ffi) or raise ImportError with the reason."""
    from .. import _fusedact_c  # noqa: F401 - built by setup.py's cffi_modules

    lib, ffi = _fusedact_c.lib, _fusedact_c.ffi
    if lib.fa_abi_version() != _ABI_VERSION:
        raise ImportError(
            f"fusedact._fusedact_c has C API version {lib.fa_abi_version()}, "
            f"expected {_ABI_VERSION}: reinstall fusedact"
        )
    return lib, ffi


class CBackend(Backend):
    name = "c"

    def __init__(self):
        self.lib = self.ffi = None

    def probe(self):
        try:
            self.lib, self.ffi = load_extension()
        except ImportError as exc:
            return False, f"C extension not built ({exc})"
        return False, "extension built (placeholder); kernels not yet implemented"

    def has_kernel(self, op_name):
        return False

    def describe(self):
        if self.lib is None:
            return {}
        return {"cpu_features": self.ffi.string(self.lib.fa_cpu_features()).decode()}
