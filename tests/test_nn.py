"""fusedact.nn: layers checked by central finite differences of whole small networks (float64),
on every host backend (the kernels themselves are tested on cuda and
at every SIMD level elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

import fusedact
from fusedact import nn
from fusedact import ELEMENTWISE_OPS, OPS


def _loss(net, loss_fn, x, labels):
    return loss_fn.forward(net.forward(x), labels)


def _check_gradients(net, x, labels, backend, rtol=1e-6, samples=12, seed=0):
    """Analytic gradients of the mean loss against central differences, for the input and a
    sample of every parameter's entries."""
    loss_fn = nn.SoftmaxCrossEntropy(backend=backend)
    _loss(net, loss_fn, x, labels)
    gx = net.backward(loss_fn.backward())
    rng = np.random.default_rng(seed)
    eps = 1e-6
    arrays = [(x, gx)] + [(p, g.copy()) for p, g in zip(net.params, net.grads)]
    for array, grad in arrays:
        flat, gflat = array.reshape(-1), grad.reshape(-1)
        for i in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            keep = flat[i]
            flat[i] = keep + eps
            up = _loss(net, loss_fn, x, labels)
            flat[i] = keep - eps
            down = _loss(net, loss_fn, x, labels)
            flat[i] = keep
            numeric = (up - down) / (2 * eps)
            assert gflat[i] == pytest.approx(numeric, rel=rtol, abs=1e-8), (i, array.shape)


# Smooth activations (finite differences are meaningless across a kink, so the piecewise
# ones get inputs kept away from theirs below).
SMOOTH = [n for n in ELEMENTWISE_OPS if not OPS[n].piecewise and n not in ("relu",)]


@pytest.mark.parametrize("act", SMOOTH)
def test_mlp_gradients_match_finite_differences(act, host_backend):
    rng = np.random.default_rng(1)
    net = nn.Sequential([nn.Linear(7, 12, act=act, rng=rng, backend=host_backend),
                         nn.Linear(12, 8, act=act, rng=rng, backend=host_backend),
                         nn.Linear(8, 5, rng=rng, backend=host_backend)])
    x = rng.standard_normal((6, 7))
    labels = rng.integers(0, 5, 6)
    _check_gradients(net, x, labels, host_backend)


@pytest.mark.parametrize("act", [n for n in ELEMENTWISE_OPS if OPS[n].piecewise] + ["relu"])
def test_piecewise_activation_layers(act, host_backend):
    """Separate activation layers (not fused into Linear); inputs kept off the kinks."""
    rng = np.random.default_rng(2)
    lin = nn.Linear(5, 9, rng=rng, backend=host_backend)
    net = nn.Sequential([lin, nn.Activation(act, backend=host_backend),
                         nn.Linear(9, 4, rng=rng, backend=host_backend)])
    x = rng.standard_normal((5, 5))
    h = x @ lin.W
    # Kinks of these ops lie in {-3, -1, 0, 1, 3, 6}: shift the bias so no unit sits within
    # 1e-3 of one (finite differences step 1e-6).
    lin.b[...] = 0.37
    kinks = np.array([-3.0, -1.0, 0.0, 1.0, 3.0, 6.0])
    assert np.min(np.abs((h + lin.b)[..., None] - kinks)) > 1e-3
    _check_gradients(net, x, rng.integers(0, 4, 5), host_backend)


def test_maxout_network_gradients(host_backend):
    rng = np.random.default_rng(3)
    net = nn.Sequential([nn.Linear(6, 12, rng=rng, backend=host_backend),
                         nn.Maxout(3, backend=host_backend),
                         nn.Linear(4, 3, act="tanh", rng=rng, backend=host_backend),
                         nn.Linear(3, 3, rng=rng, backend=host_backend)])
    _check_gradients(net, rng.standard_normal((4, 6)), rng.integers(0, 3, 4), host_backend)


def test_layers_keep_what_backward_needs():
    x = np.linspace(-2, 2, 9)
    sig = nn.Sigmoid()
    y = sig.forward(x)
    assert sig._saved is y  # sigmoid's backward reads y
    gelu = nn.Gelu(approximate="tanh")
    gelu.forward(x)
    assert gelu._saved is x
    np.testing.assert_allclose(gelu.backward(np.ones_like(x)),
                               fusedact.gelu_backward(np.ones_like(x), x, approximate="tanh"))
    assert repr(nn.LeakyRelu(negative_slope=0.2)) == "Activation('leaky_relu', negative_slope=0.2)"


def test_errors():
    with pytest.raises(ValueError, match="not an elementwise op"):
        nn.Activation("softmax")
    with pytest.raises(TypeError, match="unknown parameter"):
        nn.Activation("relu", alpha=1.0)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Tanh().backward(np.ones(3))
    with pytest.raises(ValueError, match="lr must be positive"):
        nn.SGD([], [], lr=0)


def test_sgd_momentum_matches_the_pytorch_rule():
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    opt = nn.SGD([p], [g], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()
    # v1 = g; p1 = p - 0.1 g; v2 = 0.9 g + g; p2 = p1 - 0.1 * 1.9 g
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - 0.1 * g - 0.1 * 1.9 * g)


def test_training_lowers_the_loss(host_backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 10))
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    net = nn.Sequential([nn.Linear(10, 16, act="gelu", rng=rng, backend=host_backend),
                         nn.Linear(16, 2, rng=rng, backend=host_backend)])
    loss_fn = nn.SoftmaxCrossEntropy(backend=host_backend)
    opt = nn.SGD(net.params, net.grads, lr=0.2, momentum=0.9)
    first = None
    for _ in range(40):
        loss = loss_fn.forward(net.forward(x), labels)
        first = loss if first is None else first
        net.backward(loss_fn.backward())
        opt.step()
    assert loss < 0.5 * first
