"""The interface every backend implements.

The front end (``fusedact._api``) has already checked and converted everything a backend
receives: arrays are native-endian float32 or float64 ndarrays of the compute dtype (float16
is computed in float32), shapes agree, ``out`` arrays are allocated and writable, and an
``out`` either is exactly the input (same data pointer and strides: in place) or shares no
memory with any input. ``axis`` is normalised to a non-negative integer.
A backend writes its results into the ``out`` arrays it is given and returns nothing.
"""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """Raised when a backend that was asked for by name cannot run here."""


class Backend:
    name = "?"
    # Whether the kernels peel elements up to the output's 64-byte boundary, so that a new
    # output placed at the input's offset from one (_api._empty_like) aligns both: the c
    # backend's do. numba's loops do not, and for them that placement cost more than it
    # gave (float32 relu at 262,144, numba, fresh output each call: 40.6-41.0 us against
    # 32.4-34.4 with np.empty_like's).
    peels_to_alignment = False

    def probe(self):
        """Return (available: bool, reason: str). Called once, lazily."""
        raise NotImplementedError

    def has_kernel(self, op_name: str) -> bool:
        """Whether this backend implements op_name (all of its variants)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Extra facts for ``python -m fusedact info`` (SIMD level, threads, versions)."""
        return {}

    def accepts(self, array) -> bool:
        """Whether this backend takes this kind of array (host ndarray vs device array)."""
        return True

    # Elementwise
    def elementwise(self, spec, x, params, out):
        raise NotImplementedError

    def elementwise_backward(self, spec, grad, saved, params, out):
        raise NotImplementedError

    def elementwise_with_derivative(self, spec, x, params, out_y, out_d):
        raise NotImplementedError

    # Along an axis
    def softmax(self, x, axis, out):
        raise NotImplementedError

    def log_softmax(self, x, axis, out):
        raise NotImplementedError

    def softmax_backward(self, grad, y, axis, out):
        raise NotImplementedError

    def log_softmax_backward(self, grad, y, axis, out):
        raise NotImplementedError

    def maxout(self, x, pieces, axis, out):
        raise NotImplementedError

    def maxout_backward(self, grad, x, pieces, axis, out):
        raise NotImplementedError

    # Fused
    def bias_act(self, spec, x, bias, params, out):
        raise NotImplementedError

    def bias_act_backward(self, spec, grad, x, bias, params, out_grad_x, out_grad_bias):
        raise NotImplementedError

    def softmax_cross_entropy(self, logits, labels, ignore_index, out_loss, out_grad):
        raise NotImplementedError
