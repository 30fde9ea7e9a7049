"""fusedact: fused, compiled activation-function kernels for NumPy arrays.

Every operation has a forward ``op(x, ...)`` and a backward ``op_backward(grad_out, saved, ...)``
(``saved`` is x or y as PyTorch's aten backward ops choose); elementwise forwards also take
``derivative=True`` to return ``(y, dy/dx)`` from one pass. Backends: ``c``, ``numba``,
``cuda`` and the ``numpy`` reference; see ``use_backend`` and ``python -m fusedact info``.
"""

from ._api import build_public_functions as _build
from ._catalogue import OPS, ELEMENTWISE_OPS, AXIS_OPS, FUSED_OPS
from ._dispatch import (
    available_backends,
    backend_status,
    get_backend,
    use_backend,
)
from .backends._base import BackendUnavailable
from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

_functions = _build()
globals().update(_functions)

__all__ = sorted(_functions) + [
    "available_backends",
    "backend_status",
    "get_backend",
    "use_backend",
    "BackendUnavailable",
    "get_num_threads",
    "set_num_threads",
    "OPS",
    "ELEMENTWISE_OPS",
    "AXIS_OPS",
    "FUSED_OPS",
]
del _build
