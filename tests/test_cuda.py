"""The cuda backend with device arrays in and out (on a GPU, or on Numba's CUDA simulator,
which conftest switches on where there is no NVIDIA device). NumPy inputs with
backend="cuda" run through every other test file via the backend fixture."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fusedact
import reference as ref
from cases import CUDA_BACKENDS, adversarial, elementwise_cases
from fusedact import OPS

pytestmark = pytest.mark.skipif(not CUDA_BACKENDS, reason="the cuda backend is unavailable: "
                                + str(fusedact._dispatch.backend_status()["cuda"][1]))

if CUDA_BACKENDS:
    from numba import cuda
DTYPES = (np.float32, np.float64)


def dev(a):
    a = np.asarray(a)
    return cuda.to_device(a if a.flags.c_contiguous else a.copy())  # 0-d stays 0-d


def host(d):
    return d.copy_to_host()


def _is_device(a):
    return not isinstance(a, np.ndarray) and fusedact._dispatch._is_device_array(a)


# ---- elementwise ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", elementwise_cases())
def test_elementwise_device_arrays_match_host(name, params, dtype):
    """Device in, device out; the same bits as the host path of the same kernels, and within
    the SPEC's ULP of the independent reference."""
    x = adversarial(dtype, OPS[name].domain, dense=40)
    fn, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    dx = dev(x)
    y = fn(dx, **params)
    assert _is_device(y) and y.shape == x.shape and y.dtype == dtype
    np.testing.assert_array_equal(host(y), fn(x, **params, backend="cuda"))
    np.testing.assert_array_equal(host(dx), x)  # input untouched
    if dtype == np.float32:
        errs = ref.ulp_error(host(y), ref.forward(name, x, params), dtype)
        assert errs.max() <= 3.0, name
    saved = host(y) if OPS[name].saved == "y" else x
    g = np.random.default_rng(1).standard_normal(x.size).astype(dtype)
    gi = bwd(dev(g), dev(saved), **params)
    np.testing.assert_array_equal(host(gi), bwd(g, saved, **params, backend="cuda"))
    yd, dd = fn(dx, **params, derivative=True)
    np.testing.assert_array_equal(host(yd), host(y))
    np.testing.assert_array_equal(host(dd), fn(x, **params, derivative=True, backend="cuda")[1])


def test_float16_integers_and_mixed_dtypes():
    x16 = np.linspace(-8, 8, 37).astype(np.float16)
    y = fusedact.gelu(dev(x16))
    assert y.dtype == np.float16
    np.testing.assert_array_equal(host(y), fusedact.gelu(x16, backend="numpy"))
    yi = fusedact.sigmoid(dev(np.arange(-5, 6)))
    assert yi.dtype == np.float64
    np.testing.assert_allclose(host(yi), fusedact.sigmoid(np.arange(-5, 6), backend="numpy"),
                               rtol=1e-15)
    g = fusedact.tanh_backward(dev(np.ones(5, np.float32)), dev(np.full(5, 0.5)))
    assert g.dtype == np.float64
    np.testing.assert_allclose(host(g), 0.75)


def test_layouts_zero_d_empty_and_strides():
    base = np.linspace(-4, 4, 7 * 9).reshape(7, 9)
    d = dev(base)
    for view, want in ((d.T, base.T), (d[::2, 1::3], base[::2, 1::3]),
                       (d[::-1], base[::-1])):
        y = fusedact.silu(view)
        np.testing.assert_array_equal(host(y), fusedact.silu(want, backend="cuda"))
    z = fusedact.sigmoid(dev(np.array(0.5)))
    assert z.shape == () and float(host(z)) == pytest.approx(1 / (1 + np.exp(-0.5)), rel=1e-15)
    e = fusedact.relu(dev(np.empty((0, 3))))
    assert e.shape == (0, 3)
    for n in range(1, 34):  # tails of the grid-stride loop
        x = np.linspace(-3, 3, n).astype(np.float32)
        np.testing.assert_array_equal(host(fusedact.mish(dev(x))), fusedact.mish(x, backend="cuda"))


def test_out_in_place_overlap_and_strided_out():
    x = np.linspace(-5, 5, 40)
    want = fusedact.elu(x, backend="numpy")
    d = dev(x)
    r = fusedact.elu(d, out=d)  # in place
    assert r is d
    np.testing.assert_allclose(host(d), want, rtol=1e-15)
    d = dev(x)
    fusedact.elu(d[:-1], out=d[1:])  # overlapping views: as if into a fresh array
    np.testing.assert_allclose(host(d)[1:], want[:-1], rtol=1e-15)
    big = dev(np.zeros(80))
    fusedact.elu(dev(x), out=big[::2])
    np.testing.assert_allclose(host(big)[::2], want, rtol=1e-15)
    assert not host(big)[1::2].any()
    y_out, d_out = dev(np.zeros(40)), dev(np.zeros(40))
    res = fusedact.elu(dev(x), derivative=True, out=(y_out, d_out))
    assert res[0] is y_out and res[1] is d_out
    np.testing.assert_allclose(host(d_out), fusedact.elu(x, derivative=True, backend="numpy")[1],
                               rtol=1e-15)


def test_errors_say_what_was_expected():
    d = dev(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(4,\)"):
        fusedact.relu(d, out=dev(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match="dtype float64, expected float32"):
        fusedact.relu(d, out=dev(np.zeros(4)))
    with pytest.raises(TypeError, match="must be a device array"):
        fusedact.relu(d, out=np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="device arrays run on the 'cuda' backend"):
        fusedact.relu(d, backend="numpy")
    with pytest.raises(ValueError, match="no broadcasting"):
        fusedact.sigmoid_backward(d, dev(np.zeros(5, np.float32)))
    with pytest.raises(TypeError, match="complex"):
        fusedact.relu(dev(np.zeros(3, np.complex64)))
    both = dev(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="must not overlap"):
        fusedact.relu(d, derivative=True, out=(both, both))


def test_auto_sends_device_arrays_to_cuda_and_numpy_inputs_stay_host():
    d = dev(np.linspace(-1, 1, 8))
    assert _is_device(fusedact.tanh(d))
    with fusedact.use_backend("cuda"):
        r = fusedact.tanh(np.linspace(-1, 1, 8))
    assert isinstance(r, np.ndarray)  # NumPy in, NumPy out (copied to the device and back)


# ---- along an axis ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", (np.float16, np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", [((3, 100), -1), ((5, 33), 0), ((2, 17, 3), 1), ((1,), 0)])
def test_softmax_family_on_device(shape, axis, dtype):
    """Rows longer than a block (16 threads on the simulator), axes other than the last."""
    x = (np.random.default_rng(2).standard_normal(shape) * 4).astype(dtype)
    g = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    for name in ("softmax", "log_softmax"):
        fn, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
        y = fn(dev(x), axis=axis)
        assert y.dtype == dtype and y.shape == shape
        np.testing.assert_array_equal(host(y), fn(x, axis=axis, backend="cuda"))
        np.testing.assert_allclose(host(y).astype(np.float64),
                                   fn(x, axis=axis, backend="numpy").astype(np.float64),
                                   rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
        yh = host(y)
        gi = bwd(dev(g), dev(yh), axis=axis)
        np.testing.assert_array_equal(host(gi), bwd(g, yh, axis=axis, backend="cuda"))


def test_maxout_on_device():
    x = np.random.default_rng(4).standard_normal((4, 6, 5))
    x[0, 0, 0] = np.nan
    for axis, pieces in ((1, 3), (-1, 5), (0, 2)):
        y = fusedact.maxout(dev(x), pieces, axis=axis)
        np.testing.assert_array_equal(host(y), fusedact.maxout(x, pieces, axis=axis,
                                                               backend="numpy"))
        g = np.ones(y.shape)
        gi = fusedact.maxout_backward(dev(g), dev(x), pieces, axis=axis)
        np.testing.assert_array_equal(host(gi), fusedact.maxout_backward(
            g, x, pieces, axis=axis, backend="numpy"))


# ---- fused ------------------------------------------------------------------------------------
@pytest.mark.parametrize("act,params", [("gelu", {}), ("sigmoid", {}), ("leaky_relu", {"negative_slope": 0.2}),
                                        ("identity", {})])
def test_bias_act_on_device(act, params):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((70, 19)).astype(np.float32)
    b = rng.standard_normal(19).astype(np.float32)
    g = rng.standard_normal((70, 19)).astype(np.float32)
    y = fusedact.bias_act(dev(x), b, act, **params)  # a NumPy bias is copied over
    np.testing.assert_array_equal(host(y), fusedact.bias_act(x, b, act, **params, backend="cuda"))
    gx, gb = fusedact.bias_act_backward(dev(g), dev(x), dev(b), act, **params)
    hx, hb = fusedact.bias_act_backward(g, x, b, act, **params, backend="numpy")
    np.testing.assert_allclose(host(gx), hx, rtol=4e-7, atol=1e-7)
    np.testing.assert_allclose(host(gb), hb, rtol=1e-5, atol=1e-5)
    ex, eb = fusedact.bias_act_backward(dev(np.zeros((0, 19), np.float32)),
                                        dev(np.zeros((0, 19), np.float32)), dev(b), act, **params)
    assert ex.shape == (0, 19) and not host(eb).any()


def test_softmax_cross_entropy_on_device():
    rng = np.random.default_rng(6)
    z = (rng.standard_normal((9, 37)) * 3).astype(np.float32)
    z[1, :] = 1e4 * np.sign(z[1, :])
    labels = rng.integers(0, 37, 9)
    labels[4] = -100
    for lab in (labels, dev(labels)):
        loss, grad = fusedact.softmax_cross_entropy(dev(z), lab)
        want_l, want_g = fusedact.softmax_cross_entropy(z, labels, backend="numpy")
        np.testing.assert_allclose(host(loss), want_l, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(host(grad), want_g, rtol=2e-6, atol=1e-7)
    with pytest.raises(ValueError, match="out of range"):
        fusedact.softmax_cross_entropy(dev(z), np.full(9, 37))


# ---- other array libraries, and no GPU -------------------------------------------------------
def test_torch_cuda_tensors_when_present():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or fusedact._dispatch._load("cuda")[0].simulator:
        pytest.skip("needs a real GPU and torch with CUDA (the simulator cannot read torch "
                    "device memory)")
    t = torch.linspace(-5, 5, 1000, device="cuda")
    y = fusedact.gelu(t)
    np.testing.assert_allclose(host(y), torch.nn.functional.gelu(t.double()).float().cpu().numpy(),
                               rtol=1e-6, atol=1e-7)
    out = torch.empty_like(t)
    assert fusedact.gelu(t, out=out) is out
    np.testing.assert_array_equal(out.cpu().numpy(), host(y))


def test_cupy_arrays_when_present():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed (the GPU image has it)")
    if fusedact._dispatch._load("cuda")[0].simulator:
        pytest.skip("needs a real GPU (the simulator cannot read CuPy device memory)")
    x = cp.linspace(-6, 6, 4097, dtype=cp.float32)
    y = fusedact.silu(x)  # a Numba device array over new memory
    np.testing.assert_array_equal(host(y), fusedact.silu(cp.asnumpy(x), backend="cuda"))
    strided = x[::3]
    np.testing.assert_array_equal(host(fusedact.silu(strided)),
                                  fusedact.silu(cp.asnumpy(strided), backend="cuda"))
    out = cp.empty_like(x)
    assert fusedact.silu(x, out=out) is out
    np.testing.assert_array_equal(cp.asnumpy(out), host(y))
    z = cp.asarray(np.random.default_rng(7).standard_normal((33, 70)), dtype=cp.float64)
    np.testing.assert_allclose(host(fusedact.softmax(z, axis=0)),
                               fusedact.softmax(cp.asnumpy(z), axis=0, backend="numpy"),
                               rtol=1e-14, atol=1e-300)


@pytest.mark.skipif(os.path.exists("/dev/nvidia0"), reason="this machine has an NVIDIA GPU")
def test_without_gpu_or_simulator_the_backend_says_why():
    code = ("import fusedact, sys\n"
            "ok, why = fusedact._dispatch.backend_status()['cuda']\n"
            "assert not ok, why\n"
            "try:\n"
            "    fusedact.relu([1.0], backend='cuda')\n"
            "except fusedact.BackendUnavailable as e:\n"
            "    print(e)\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "backend 'cuda'" in r.stdout and "not available" in r.stdout
