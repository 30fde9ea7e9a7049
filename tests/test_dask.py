"""Dask arrays in, lazy dask arrays out, computed on a real multi-process dask.distributed
cluster and compared with the same calls on NumPy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import fusedact

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install '.[dask]')")
distributed = pytest.importorskip("distributed", reason="distributed is not installed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _x(shape=(40, 30), dtype=np.float32, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)


ELEMENTWISE = [("gelu", {}), ("silu", {}), ("leaky_relu", {"negative_slope": 0.2}),
               ("softplus", {"beta": 2.0, "threshold": 10.0}), ("sigmoid", {}), ("mish", {})]


@pytest.mark.parametrize("name,params", ELEMENTWISE, ids=[n for n, _ in ELEMENTWISE])
def test_elementwise_forward_backward_derivative(client, name, params):
    x = _x()
    dx = da.from_array(x, chunks=(15, 11))
    fn, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    y = fn(dx, **params)
    assert isinstance(y, da.Array) and y.chunks == dx.chunks and y.dtype == x.dtype
    np.testing.assert_array_equal(y.compute(), fn(x, **params))
    yd, dd = fn(dx, **params, derivative=True)
    want_y, want_d = fn(x, **params, derivative=True)
    got_y, got_d = client.compute([yd, dd], sync=True)
    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_d, want_d)
    saved = want_y if fusedact.OPS[name].saved == "y" else x
    g = _x(seed=1)
    # grad and saved chunked differently: saved is rechunked to grad's chunks.
    gi = bwd(da.from_array(g, chunks=(20, 30)), da.from_array(saved, chunks=(7, 9)), **params)
    np.testing.assert_array_equal(gi.compute(), bwd(g, saved, **params))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_family_rechunks_a_split_axis(client, axis):
    x = _x((24, 18), np.float64)
    dx = da.from_array(x, chunks=(5, 4))  # the axis is split either way
    g = _x((24, 18), np.float64, seed=2)
    for name in ("softmax", "log_softmax"):
        fn, bwd = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
        y = fn(dx, axis=axis)
        want = fn(x, axis=axis)
        np.testing.assert_array_equal(y.compute(), want)
        gi = bwd(da.from_array(g, chunks=(6, 6)), y, axis=axis)
        np.testing.assert_array_equal(gi.compute(), bwd(g, want, axis=axis))


def test_maxout(client):
    x = _x((12, 20))
    dx = da.from_array(x, chunks=(5, 7))
    y = fusedact.maxout(dx, 4, axis=1)
    assert y.shape == (12, 5)
    np.testing.assert_array_equal(y.compute(), fusedact.maxout(x, 4, axis=1))
    g = _x((12, 5), seed=3)
    gi = fusedact.maxout_backward(da.from_array(g, chunks=(4, 5)), dx, 4, axis=1)
    np.testing.assert_array_equal(gi.compute(), fusedact.maxout_backward(g, x, 4, axis=1))


def test_bias_act_and_backward(client):
    x, g = _x((50, 16), np.float64), _x((50, 16), np.float64, seed=4)
    b = np.linspace(-1, 1, 16)
    dx = da.from_array(x, chunks=(13, 6))  # the bias is cut to these column chunks
    y = fusedact.bias_act(dx, b, "elu", alpha=0.5)
    np.testing.assert_array_equal(y.compute(), fusedact.bias_act(x, b, "elu", alpha=0.5))
    gx, gb = fusedact.bias_act_backward(da.from_array(g, chunks=(10, 16)), dx, b, "elu",
                                        alpha=0.5)
    want_x, want_b = fusedact.bias_act_backward(g, x, b, "elu", alpha=0.5)
    got_x, got_b = client.compute([gx, gb], sync=True)
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_allclose(got_b, want_b, rtol=1e-13)  # summed per block, then across


def test_softmax_cross_entropy(client):
    z = _x((30, 12), np.float64)
    labels = np.random.default_rng(5).integers(0, 12, 30)
    labels[3] = -100
    loss, grad = fusedact.softmax_cross_entropy(da.from_array(z, chunks=(7, 5)),
                                                da.from_array(labels, chunks=11))
    want_l, want_g = fusedact.softmax_cross_entropy(z, labels)
    got_l, got_g = client.compute([loss, grad], sync=True)
    np.testing.assert_array_equal(got_l, want_l)
    np.testing.assert_array_equal(got_g, want_g)


def test_the_backend_choice_travels_to_the_workers(client, monkeypatch):
    x = np.linspace(-9, 9, 20001, dtype=np.float32)
    dx = da.from_array(x, chunks=5000)
    on_numpy = fusedact.gelu(x, backend="numpy")
    with fusedact.use_backend("numpy"):
        y = fusedact.gelu(dx)  # the graph is built here and computed outside the block
    np.testing.assert_array_equal(y.compute(), on_numpy)
    monkeypatch.setattr(fusedact._dispatch, "ENV_BACKEND", "numpy")  # as FUSEDACT_BACKEND
    np.testing.assert_array_equal(fusedact.gelu(dx).compute(), on_numpy)
    monkeypatch.undo()
    np.testing.assert_array_equal(fusedact.gelu(dx, backend="numpy").compute(), on_numpy)
    host = fusedact._dispatch.auto_host_choice("gelu")
    if host != "numpy" and not np.array_equal(fusedact.gelu(x), on_numpy):
        # auto lets each worker choose: its compiled backend, whose roundings differ.
        np.testing.assert_array_equal(fusedact.gelu(dx).compute(), fusedact.gelu(x))


def test_errors_and_laziness():
    dx = da.from_array(_x(), chunks=10)
    with pytest.raises(TypeError, match="out= is not supported for dask"):
        fusedact.relu(dx, out=np.empty((40, 30), np.float32))
    with pytest.raises(ValueError, match="no broadcasting"):
        fusedact.relu_backward(dx, da.ones((40, 31), chunks=10))
    with pytest.raises(ValueError, match="not a multiple of pieces"):
        fusedact.maxout(dx, 7)
    with pytest.raises(TypeError, match="integer class indices"):
        fusedact.softmax_cross_entropy(dx, da.zeros(40, chunks=10))
    calls = []

    def spy(block):
        calls.append(block.shape)
        return block

    lazy = fusedact.tanh(dx.map_blocks(spy, meta=np.empty((0, 0), np.float32)))
    assert isinstance(lazy, da.Array)
    assert not [s for s in calls if 0 not in s]  # no real block ran (dask may probe a 0-size one)
    assert lazy.compute(scheduler="sync").shape == (40, 30) and (10, 10) in calls
