"""Parity with PyTorch CPU (torch.nn.functional and torch.ops.aten.*_backward).

Values agree to a few eps in the bulk of each op's range; in the tails, where PyTorch's
formulas lose digits (float32 gelu near x = -7), fusedact is held to SPEC section 5 against the
float64 truth instead, and PyTorch's error there is recorded, not asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedact
import reference as ref
from cases import elementwise_cases
from fusedact import OPS

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")
from fusedact import _torchref  # noqa: E402

F = torch.nn.functional
aten = torch.ops.aten
torch_forward = _torchref.forward


def torch_backward(name, g, x, p):
    saved = torch_forward(name, x, p) if OPS[name].saved == "y" else x
    return _torchref.backward(name, g, saved, p)


def _bulk(name, params, dtype):
    """Points in [-6, 6] away from kinks (where one-sided conventions may differ)."""
    x = np.linspace(-6, 6, 1201)
    kinks = [0.0, -3.0, 3.0, 6.0, params.get("min_val", 0.0), params.get("max_val", 0.0)]
    if name == "softplus":
        kinks.append(params["threshold"] / params["beta"])
    x = x[np.min(np.abs(x[:, None] - np.array(kinks)[None, :]), axis=1) > 1e-3]
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_parity_with_torch(name, params, dtype, backend):
    x = _bulk(name, params, dtype)
    g = np.random.default_rng(0).standard_normal(x.shape).astype(dtype)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    eps = float(np.finfo(dtype).eps)
    y = getattr(fusedact, name)(x, **params, backend=backend)
    ty = torch_forward(name, tx, params).numpy()
    np.testing.assert_allclose(y, ty, rtol=8 * eps, atol=8 * eps, err_msg=f"{name} forward")
    saved = y if OPS[name].saved == "y" else x
    gi = getattr(fusedact, f"{name}_backward")(g, saved, **params, backend=backend)
    tgi = torch_backward(name, tg, tx, params).numpy()
    rtol = 16 * eps
    if name == "hardsigmoid" and dtype == np.float64:
        # torch 2.13's float64 hardsigmoid_backward multiplies by a float32 1/6 (3e-8 off);
        # ours is grad/6 to the last bit, checked exactly here instead.
        np.testing.assert_allclose(gi, np.where(np.abs(x) < 3, g / 6, 0), rtol=eps)
        rtol = 1e-7
    np.testing.assert_allclose(gi, tgi, rtol=rtol, atol=16 * eps * np.abs(g).max(),
                               err_msg=f"{name} backward")


@pytest.mark.parametrize("name,params", elementwise_cases())
def test_float32_tails_more_accurate_than_torch(name, params, backend, record_property):
    """Over the op's whole domain, fusedact's float32 stays within 3 ULP of the float64
    truth; PyTorch's max error is recorded beside it."""
    x = np.linspace(*OPS[name].domain, 4001).astype(np.float32)
    truth = ref.forward(name, x, params)
    ours = ref.ulp_error(getattr(fusedact, name)(x, **params, backend=backend), truth, np.float32)
    theirs = ref.ulp_error(torch_forward(name, torch.from_numpy(x), params).numpy(), truth,
                           np.float32)
    record_property("torch_max_ulp", float(theirs.max()))
    record_property("fusedact_max_ulp", float(ours.max()))
    assert ours.max() <= 3.0, f"{name}: {ours.max()} ULP (torch: {theirs.max()})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_softmax_family_parity(dtype, backend):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((16, 257)) * 4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    eps = float(np.finfo(dtype).eps)
    tol = dict(rtol=8 * eps, atol=8 * eps)
    y = fusedact.softmax(x, backend=backend)
    np.testing.assert_allclose(y, torch.softmax(tx, -1).numpy(), **tol)
    ly = fusedact.log_softmax(x, backend=backend)
    np.testing.assert_allclose(ly, torch.log_softmax(tx, -1).numpy(), rtol=8 * eps, atol=64 * eps)
    ty = torch.softmax(tx, -1)
    np.testing.assert_allclose(fusedact.softmax_backward(g, y, backend=backend),
                               aten._softmax_backward_data(tg, ty, -1, ty.dtype).numpy(),
                               rtol=16 * eps, atol=16 * eps)
    tly = torch.log_softmax(tx, -1)
    np.testing.assert_allclose(fusedact.log_softmax_backward(g, ly, backend=backend),
                               aten._log_softmax_backward_data(tg, tly, -1, tly.dtype).numpy(),
                               rtol=16 * eps, atol=64 * eps)
    labels = rng.integers(0, 257, size=16)
    loss, grad = fusedact.softmax_cross_entropy(x, labels, backend=backend)
    txr = tx.clone().requires_grad_(True)
    tloss = F.cross_entropy(txr, torch.from_numpy(labels), reduction="none")
    tloss.sum().backward()
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=8 * eps, atol=64 * eps)
    np.testing.assert_allclose(grad, txr.grad.numpy(), rtol=16 * eps, atol=16 * eps)
