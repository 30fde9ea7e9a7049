"""PyTorch's versions of every op, for the parity tests and the benchmarks.

Forward through ``torch.nn.functional``; backward through the aten backward op PyTorch's
autograd itself calls (``torch.ops.aten.*_backward``), so that both sides do the same work:
one pass from grad_out and the saved tensor. Ops with no aten backward (softsign, swish) go
through autograd. Import this module only where torch is installed.
"""

from __future__ import annotations

import torch

from ._catalogue import SELU_ALPHA, SELU_SCALE

F = torch.nn.functional
aten = torch.ops.aten


def forward(name, x, p):
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return F.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, p["negative_slope"])
    if name == "relu6":
        return F.relu6(x)
    if name == "hardtanh":
        return F.hardtanh(x, p["min_val"], p["max_val"])
    if name == "elu":
        return F.elu(x, p["alpha"])
    if name == "selu":
        return F.selu(x)
    if name == "celu":
        return F.celu(x, p["alpha"])
    if name == "silu":
        return F.silu(x)
    if name == "swish":
        return x * torch.sigmoid(p["beta"] * x)
    if name == "mish":
        return F.mish(x)
    if name == "gelu":
        return F.gelu(x, approximate=p["approximate"])
    if name == "softplus":
        return F.softplus(x, p["beta"], p["threshold"])
    if name == "logsigmoid":
        return F.logsigmoid(x)
    if name == "hardsigmoid":
        return F.hardsigmoid(x)
    if name == "hardswish":
        return F.hardswish(x)
    if name == "softsign":
        return F.softsign(x)
    if name == "softmax":
        return torch.softmax(x, -1)
    if name == "log_softmax":
        return torch.log_softmax(x, -1)
    raise KeyError(name)


def backward(name, g, saved, p):
    """grad_in from grad_out g and the saved tensor (y or x, as fusedact's catalogue says)."""
    if name == "sigmoid":
        return aten.sigmoid_backward(g, saved)
    if name == "tanh":
        return aten.tanh_backward(g, saved)
    if name == "relu":
        return aten.threshold_backward(g, saved, 0)
    if name == "leaky_relu":
        return aten.leaky_relu_backward(g, saved, p["negative_slope"], False)
    if name == "relu6":
        return aten.hardtanh_backward(g, saved, 0.0, 6.0)
    if name == "hardtanh":
        return aten.hardtanh_backward(g, saved, p["min_val"], p["max_val"])
    if name == "elu":
        return aten.elu_backward(g, p["alpha"], 1.0, 1.0, False, saved)
    if name == "selu":
        return aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, False, saved)
    if name == "celu":
        return aten.elu_backward(g, p["alpha"], 1.0, 1.0 / p["alpha"], False, saved)
    if name == "silu":
        return aten.silu_backward(g, saved)
    if name == "mish":
        return aten.mish_backward(g, saved)
    if name == "gelu":
        return aten.gelu_backward(g, saved, approximate=p["approximate"])
    if name == "softplus":
        return aten.softplus_backward(g, saved, p["beta"], p["threshold"])
    if name == "logsigmoid":
        _, buffer = aten.log_sigmoid_forward(saved)
        return aten.log_sigmoid_backward(g, saved, buffer)
    if name == "hardsigmoid":
        return aten.hardsigmoid_backward(g, saved)
    if name == "hardswish":
        return aten.hardswish_backward(g, saved)
    if name == "softmax":
        return aten._softmax_backward_data(g, saved, -1, saved.dtype)
    if name == "log_softmax":
        return aten._log_softmax_backward_data(g, saved, -1, saved.dtype)
    xr = saved.detach().clone().requires_grad_(True)
    forward(name, xr, p).backward(g)
    return xr.grad
