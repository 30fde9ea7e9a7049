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


def forward_fn(name, p):
    """PyTorch's forward of op `name` with parameters p, as a one-argument callable: looked
    up once, so a benchmark times torch's call and nothing of ours (an if-chain here cost
    up to 0.6 us a call, a third of torch's own on 1,024 elements)."""
    table = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": lambda x: F.leaky_relu(x, p["negative_slope"]),
        "relu6": F.relu6,
        "hardtanh": lambda x: F.hardtanh(x, p["min_val"], p["max_val"]),
        "elu": lambda x: F.elu(x, p["alpha"]),
        "selu": F.selu,
        "celu": lambda x: F.celu(x, p["alpha"]),
        "silu": F.silu,
        "swish": lambda x: x * torch.sigmoid(p["beta"] * x),
        "mish": F.mish,
        "gelu": lambda x: F.gelu(x, approximate=p["approximate"]),
        "softplus": lambda x: F.softplus(x, p["beta"], p["threshold"]),
        "logsigmoid": F.logsigmoid,
        "hardsigmoid": F.hardsigmoid,
        "hardswish": F.hardswish,
        "softsign": F.softsign,
        "softmax": lambda x: torch.softmax(x, -1),
        "log_softmax": lambda x: torch.log_softmax(x, -1),
    }
    return table[name]


def backward_fn(name, p):
    """grad_in from (grad_out, saved tensor: y or x, as fusedact's catalogue says), as a
    two-argument callable looked up once (see forward_fn)."""
    def log_sigmoid(g, saved):
        _, buffer = aten.log_sigmoid_forward(saved)
        return aten.log_sigmoid_backward(g, saved, buffer)

    def autograd(g, saved):
        xr = saved.detach().clone().requires_grad_(True)
        forward_fn(name, p)(xr).backward(g)
        return xr.grad

    table = {
        "sigmoid": aten.sigmoid_backward,
        "tanh": aten.tanh_backward,
        "relu": lambda g, s: aten.threshold_backward(g, s, 0),
        "leaky_relu": lambda g, s: aten.leaky_relu_backward(g, s, p["negative_slope"], False),
        "relu6": lambda g, s: aten.hardtanh_backward(g, s, 0.0, 6.0),
        "hardtanh": lambda g, s: aten.hardtanh_backward(g, s, p["min_val"], p["max_val"]),
        "elu": lambda g, s: aten.elu_backward(g, p["alpha"], 1.0, 1.0, False, s),
        "selu": lambda g, s: aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, False, s),
        "celu": lambda g, s: aten.elu_backward(g, p["alpha"], 1.0, 1.0 / p["alpha"], False, s),
        "silu": aten.silu_backward,
        "mish": aten.mish_backward,
        "gelu": lambda g, s: aten.gelu_backward(g, s, approximate=p["approximate"]),
        "softplus": lambda g, s: aten.softplus_backward(g, s, p["beta"], p["threshold"]),
        "logsigmoid": log_sigmoid,
        "hardsigmoid": aten.hardsigmoid_backward,
        "hardswish": aten.hardswish_backward,
        "softmax": lambda g, s: aten._softmax_backward_data(g, s, -1, s.dtype),
        "log_softmax": lambda g, s: aten._log_softmax_backward_data(g, s, -1, s.dtype),
    }
    return table.get(name, autograd)  # softsign, swish: no aten backward


def forward(name, x, p):
    return forward_fn(name, p)(x)


def backward(name, g, saved, p):
    """grad_in from grad_out g and the saved tensor (y or x, as fusedact's catalogue says)."""
    return backward_fn(name, p)(g, saved)
