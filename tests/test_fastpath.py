"""The c backend's C-API entry (fusedact._fastpath, csrc/pyext/fastpath.c).

It takes a public elementwise call (softmax/log_softmax along the last axis, bias_act and
its backward, softmax_cross_entropy) when
nothing is left to decide (a plain float32/float64 C-contiguous ndarray, parameters at their
defaults or given as Python floats or ints, no out= or an out= it can write directly,
backend= None or "c") and the dispatcher has chosen
the c backend for the op process-wide. These tests check that what it returns is what the
general path returns (reached here by calling fusedact._api's bodies, which the public
functions call when the entry declines), bit for bit, that it declines every other call, and
that the selection rules (use_backend, parameters, register_backend, the thread count) still
hold.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from cases import adversarial

import fusedact
from fusedact import OPS, _api, _dispatch

fastpath = _dispatch._fastpath
pytestmark = pytest.mark.skipif(
    fastpath is None or _dispatch.auto_host_choice() != "c"
    or _dispatch.ENV_BACKEND != _dispatch.AUTO,
    reason="the C-API entry runs only where the c backend is built and chosen by auto")

ROW_OPS = ["log_softmax", "softmax"]  # along the last axis, through fa_rows_*
# bias_act's slots (one per activation) and the cross-entropy's, through the fused kernels
BIAS_SLOTS = sorted(n for n in _api.FAST_SLOTS if n.startswith("bias_act:"))
FUSED_SLOTS = BIAS_SLOTS + ["maxout", "softmax_cross_entropy"]
# an op's other choices of its choice parameter: "gelu:tanh"
CHOICE_SLOTS = sorted(n for n in _api.FAST_SLOTS if ":" in n and n not in BIAS_SLOTS)
FAST_OPS = sorted(set(_api.FAST_SLOTS) - set(ROW_OPS) - set(FUSED_SLOTS) - set(CHOICE_SLOTS))
# ops whose parameters are all numbers: their calls that give values take the entry too
NUMERIC_PARAM_OPS = sorted(n for n in FAST_OPS if OPS[n].params
                           and not any(p.choices for p in OPS[n].params))
LIMIT = _api._ALIGN_MIN


def _same_bits(got, want):
    assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # -0 against +0; a NaN's sign means nothing (IEEE 754 leaves it open), and it does move
    # with where an element falls in a vector (the aligned body or the peeled head)
    number = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


def _general_forward(name, x, out=None):
    """name(x) through the Python layers and the cffi backend, never the entry."""
    spec = OPS[name]
    if spec.family == "elementwise":
        return _api.elementwise_forward(spec, x, spec.defaults(), out, False, "c")
    return _api.axis_forward(name, x, -1, out, "c")


def _general_derivative(name, x):
    spec = OPS[name]
    return _api.elementwise_forward(spec, x, spec.defaults(), None, True, "c")


def _general_backward(name, grad, saved, out=None):
    spec = OPS[name]
    if spec.family == "elementwise":
        return _api.elementwise_backward(spec, grad, saved, spec.defaults(), out, "c")
    return _api.axis_backward(name, grad, saved, -1, out, "c")


def _inputs(dtype, spec, size):
    values = adversarial(dtype, spec.domain)
    return np.resize(values, size).astype(dtype)


def test_every_op_without_required_parameters_has_a_slot():
    assert FAST_OPS, "no op routed through the entry"
    for name in FAST_OPS:
        assert OPS[name].family == "elementwise"
    assert (sorted(set(_api.FAST_SLOTS) - set(FAST_OPS) - set(FUSED_SLOTS) - set(CHOICE_SLOTS))
            == ROW_OPS)
    assert CHOICE_SLOTS == ["gelu:tanh"]
    assert NUMERIC_PARAM_OPS == ["celu", "elu", "hardtanh", "leaky_relu", "softplus", "swish"]
    assert BIAS_SLOTS == sorted(f"bias_act:{n}" for n in FAST_OPS + CHOICE_SLOTS + ["identity"])
    assert len(set(_api.FAST_SLOTS.values())) == len(_api.FAST_SLOTS)
    assert max(_api.FAST_SLOTS.values()) < fastpath.KEYWORD_BASE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FAST_OPS)
def test_small_calls_match_the_general_path(name, dtype):
    spec = OPS[name]
    forward = getattr(fusedact, name)
    backward = getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    rng = np.random.default_rng(7)
    for shape in [(n,) for n in range(1, 68)] + [(3, 5), (2, 3, 7), (LIMIT - 1,), (LIMIT,)]:
        x = _inputs(dtype, spec, int(np.prod(shape))).reshape(shape)
        before = x.copy()
        y = forward(x)
        assert fastpath.forward(slot, x) is not None, "the entry declined a call it should take"
        _same_bits(y, _general_forward(name, x))
        _same_bits(forward(x, backend="c"), y)
        yd = forward(x, derivative=True)
        assert fastpath.derivative(slot, x) is not None
        for got, want in zip(yd, _general_derivative(name, x)):
            _same_bits(got, want)
        _same_bits(yd[0], y)
        grad = rng.standard_normal(shape).astype(dtype)
        saved = x if spec.saved == "x" else y
        g = backward(grad, saved)
        assert fastpath.backward(slot, grad, saved) is not None
        _same_bits(g, _general_backward(name, grad, saved))
        np.testing.assert_array_equal(x, before)  # inputs untouched
        assert not np.shares_memory(y, x) and not np.shares_memory(g, grad)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", ["sigmoid", "gelu", "relu", "softplus"])
def test_large_calls_follow_the_thread_count_and_alignment(name, threads):
    spec = OPS[name]
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    before = fusedact.get_num_threads()
    fusedact.set_num_threads(threads)
    try:
        for n, offset in [(LIMIT + 17, 0), (3 * LIMIT + 5, 3), (200_003, 7)]:
            whole = _inputs(np.float32, spec, n + offset)
            x = whole[offset:]  # a data pointer 4*offset bytes past NumPy's own alignment
            y = forward(x)
            assert fastpath.forward(slot, x) is not None
            assert (y.ctypes.data - x.ctypes.data) % 64 == 0  # placed as _api._empty_like does
            assert y.base is not None and y.flags.c_contiguous and y.flags.writeable
            _same_bits(y, _general_forward(name, x))
            for got, want in zip(forward(x, derivative=True), _general_derivative(name, x)):
                _same_bits(got, want)
            g = backward(x, x if spec.saved == "x" else y)
            _same_bits(g, _general_backward(name, x, x if spec.saved == "x" else y))
    finally:
        fusedact.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ROW_OPS)
def test_row_calls_match_the_general_path(name, dtype):
    forward = getattr(fusedact, name)
    backward = getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    rng = np.random.default_rng(3)
    values = adversarial(dtype, OPS[name].domain)
    shapes = [(n,) for n in range(1, 40)] + [(3, 5), (2, 3, 7), (4, 64), (1, 67), (65, 1024)]
    for shape in shapes:
        size = int(np.prod(shape))
        x = (np.resize(values, size) if size < 200 else rng.standard_normal(size) * 4)
        x = x.astype(dtype).reshape(shape)
        before = x.copy()
        y = forward(x)
        assert fastpath.forward(slot, x) is not None, "the entry declined a call it should take"
        _same_bits(y, _general_forward(name, x))
        _same_bits(forward(x, axis=x.ndim - 1), y)  # the same axis, spelled another way
        grad = rng.standard_normal(shape).astype(dtype)
        g = backward(grad, y)
        assert fastpath.backward(slot, grad, y) is not None
        _same_bits(g, _general_backward(name, grad, y))
        np.testing.assert_array_equal(x, before)
        assert not np.shares_memory(y, x) and not np.shares_memory(g, grad)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_row_calls_follow_the_thread_count(threads):
    before = fusedact.get_num_threads()
    fusedact.set_num_threads(threads)
    try:
        x = np.random.default_rng(5).standard_normal((301, 1031)).astype(np.float32)
        for name in ROW_OPS:
            forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
            y = forward(x)
            assert fastpath.forward(_api.FAST_SLOTS[name], x) is not None
            _same_bits(y, _general_forward(name, x))
            _same_bits(backward(x, y), _general_backward(name, x, y))
    finally:
        fusedact.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FAST_OPS + ROW_OPS)
def test_out_is_written_directly_and_returned(name, dtype):
    spec = OPS[name]
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    rng = np.random.default_rng(11)
    for shape in [(1,), (17,), (33,), (4, 16), (2, 3, 7), (LIMIT + 3,)]:
        x = _inputs(dtype, spec, int(np.prod(shape))).reshape(shape)
        before = x.copy()
        want = _general_forward(name, x)
        out = np.full_like(x, 7.0)
        assert forward(x, out=out) is out
        _same_bits(out, want)
        out[...] = 7.0
        assert fastpath.forward(slot, x, out) is out, "the entry declined a plain out="
        _same_bits(out, want)
        grad = rng.standard_normal(shape).astype(dtype)
        saved = x if spec.saved == "x" else want
        want_g = _general_backward(name, grad, saved)
        out_g = np.full_like(x, 7.0)
        assert backward(grad, saved, out=out_g) is out_g
        _same_bits(out_g, want_g)
        assert fastpath.backward(slot, grad, saved, np.empty_like(x)) is not None
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FAST_OPS + ROW_OPS)
def test_out_may_be_an_input_itself(name, dtype):
    spec = OPS[name]
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    rng = np.random.default_rng(13)
    for shape in [(33,), (3, 67), (LIMIT + 9,)]:
        x = _inputs(dtype, spec, int(np.prod(shape))).reshape(shape)
        want = _general_forward(name, x)
        inplace = x.copy()
        assert forward(inplace, out=inplace) is inplace
        _same_bits(inplace, want)
        grad = rng.standard_normal(shape).astype(dtype)
        saved = x if spec.saved == "x" else want
        want_g = _general_backward(name, grad, saved)
        g2 = grad.copy()
        assert backward(g2, saved, out=g2) is g2  # into grad_out
        _same_bits(g2, want_g)
        s2 = saved.copy()
        assert backward(grad, s2, out=s2) is s2  # into the saved array
        _same_bits(s2, want_g)


def _declined_outs(x):
    """(what, out, error) for out= arguments the entry leaves to the Python path, which
    either writes them through a scratch array or refuses them with its own message."""
    n = x.size
    room = np.zeros(2 * n + 1, x.dtype)
    room[:n] = x

    class Sub(np.ndarray):
        pass

    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    return [
        ("overlapping", room[1:n + 1], None, room[:n]),
        ("strided", np.empty(2 * n, x.dtype)[::2], None, x),
        ("subclass", np.empty_like(x).view(Sub), None, x),
        ("wrong dtype", np.empty(n, np.float64 if x.dtype == np.float32 else np.float32),
         TypeError, x),
        ("wrong shape", np.empty(n + 1, x.dtype), ValueError, x),
        ("read-only", read_only, ValueError, x),
        ("list", [0.0] * n, TypeError, x),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "softmax"])
def test_outs_the_entry_declines_keep_their_meaning(name, dtype):
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    x = np.linspace(-6, 6, 40, dtype=dtype)
    for what, out, error, arg in _declined_outs(x):
        want = _general_forward(name, arg.copy())
        assert fastpath.forward(slot, arg, out) is None, what
        assert fastpath.backward(slot, arg, want, out) is None, what
        if error is not None:
            with pytest.raises(error, match="out"):
                forward(arg, out=out)
            continue
        assert forward(arg, out=out) is out, what
        _same_bits(np.asarray(out).view(np.ndarray).copy(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ROW_OPS)
def test_row_calls_along_any_int_axis_take_the_entry(name, dtype):
    """An exact int axis, the last or another (fa_axis: an (outer, n, inner) array, or rows
    where inner is 1), gives the general path's bits, forward and backward, out= included."""
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    rng = np.random.default_rng(2)
    forward(np.ones(3, dtype))  # binds the slot
    for shape in [(6, 8), (3, 5, 7), (4, 3, 1), (2, 1, 6), (300, 40), (9,)]:
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        for axis in range(-x.ndim, x.ndim):
            want = _api.axis_forward(name, x, axis, None, "c")
            got = fastpath.forward(slot, x, None, axis)
            assert got is not None, (shape, axis)
            _same_bits(got, want)
            _same_bits(forward(x, axis=axis), want)
            want_g = _api.axis_backward(name, g, want, axis, None, "c")
            _same_bits(fastpath.backward(slot, g, want, None, axis), want_g)
            _same_bits(backward(g, want, axis=axis), want_g)
            out = np.empty_like(x)
            assert forward(x, axis=axis, out=out) is out
            _same_bits(out, want)


def test_row_calls_the_entry_declines_go_the_python_way():
    x = np.random.default_rng(1).standard_normal((6, 8))
    y = fusedact.softmax(x)
    slot = _api.FAST_SLOTS["softmax"]
    for axis in (np.int64(0), True, 0.0, 2, -3, 2**70):
        assert fastpath.forward(slot, x, None, axis) is None, axis
    np.testing.assert_array_equal(fusedact.softmax(x, axis=np.int64(0)),
                                  fusedact.softmax(x, axis=0))
    for axis in (2, -3):
        with pytest.raises(np.exceptions.AxisError):
            fusedact.softmax(x, axis=axis)
    assert fastpath.backward(slot, np.ones((6, 4)), y) is None
    with pytest.raises(ValueError, match="grad_out has shape"):
        fusedact.softmax_backward(np.ones((6, 4)), y)
    assert fastpath.forward(slot, x.T) is None  # not C-contiguous: the general path
    assert fastpath.forward(slot, x.T, None, 0) is None
    np.testing.assert_array_equal(fusedact.softmax(x.T), fusedact.softmax(x.T.copy()))
    np.testing.assert_array_equal(fusedact.softmax(x.T, axis=0),
                                  fusedact.softmax(x.T.copy(), axis=0))


def _declined():
    """(what, array) for calls the entry must leave to the Python path."""
    base = np.linspace(-5, 5, 64, dtype=np.float32)
    grid = np.linspace(-5, 5, 48, dtype=np.float64).reshape(6, 8)
    misaligned = np.frombuffer(np.zeros(65 * 4 + 1, np.uint8)[1:], np.float32)

    class Sub(np.ndarray):
        pass

    return [
        ("int64", np.arange(-5, 5)),
        ("bool", np.array([True, False])),
        ("0-d", np.array(0.5, np.float32)),
        ("empty", np.empty((0, 3), np.float32)),
        ("byte-swapped", base.astype(">f4")),
        ("byte-swapped transposed", grid.T.astype(">f8")),
        ("misaligned", misaligned),
        ("subclass", base.view(Sub)),
        ("list", [0.5, -1.0]),
    ]


@pytest.mark.parametrize("name", FAST_OPS)
def test_float16_calls_take_the_entry_with_the_python_paths_bits(name):
    """float16 runs in the C kernels (fa_elementwise_f16: widened, the float32 kernel, rounded
    back), where the Python path casts with NumPy around the float32 kernel: every one of
    the 65,536 halves gives the same bits, forward, backward and with the derivative."""
    spec = OPS[name]
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    grad = np.random.default_rng(4).standard_normal(every.size).astype(np.float16)
    before = every.copy()
    forward(np.ones(4, np.float16))
    assert fastpath.forward(slot, every) is not None

    def same(got, want):
        assert got.dtype == np.float16 and got.shape == want.shape
        differ = (got.view(np.uint16) != want.view(np.uint16)) & ~(np.isnan(got) & np.isnan(want))
        assert not differ.any(), (every[differ][:5], got[differ][:5], want[differ][:5])

    with np.errstate(all="ignore"):  # the general path's casts of overflowing values
        y = forward(every)
        same(y, _general_forward(name, every))
        for got, want in zip(forward(every, derivative=True), _general_derivative(name, every)):
            same(got, want)
        saved = every if spec.saved == "x" else y
        same(backward(grad, saved), _general_backward(name, grad, saved))
        square = every[:4096].reshape(64, 64)
        same(forward(square.T), _general_forward(name, square.T))  # Fortran order
        same(forward(every[::3]), _general_forward(name, every[::3]))  # strided
    np.testing.assert_array_equal(every.view(np.uint16), before.view(np.uint16))
    assert fastpath.forward(_api.FAST_SLOTS["softmax"], every[:64]) is None  # rows: Python


def _layouts(dtype):
    """(what, x, grad) views in every layout the entry takes for elementwise calls."""
    rng = np.random.default_rng(21)
    cube = _inputs(dtype, OPS["gelu"], 4 * 6 * 5).reshape(4, 6, 5)
    wide = _inputs(dtype, OPS["gelu"], 2 * LIMIT + 6)
    big = wide[: LIMIT + 3 * 64].reshape(-1, 64)

    def grad_like(a):
        return rng.standard_normal(a.shape).astype(dtype)

    cases = [
        ("Fortran order", np.asfortranarray(cube)),
        ("transposed 2-D", cube[0].T),
        ("transposed 3-D", cube.T),
        ("axes swapped", cube.swapaxes(0, 1)),
        ("stride 2", wide[:101:2]),
        ("negative stride", wide[:77][::-1]),
        ("a column", cube[:, :, 1]),
        ("large transposed", big.T),
        ("large stride 2", wide[::2]),
    ]
    return [(what, x, grad_like(x)) for what, x in cases]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "gelu", "relu", "leaky_relu", "softplus"])
def test_fortran_and_strided_views_take_the_entry(name, dtype):
    """Fortran-ordered arrays run in place of their memory order (the result in that order,
    as np.empty_like keeps it); other views, and inputs of two orders, through C-contiguous
    copies: the Python path's bits either way."""
    spec = OPS[name]
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    forward(np.ones(4, dtype))  # the dispatcher chooses c for the op
    for what, x, grad in _layouts(dtype):
        before, grad_before = x.copy(), grad.copy()
        assert fastpath.forward(slot, x) is not None, what
        y = forward(x)
        _same_bits(y, _general_forward(name, x))
        assert y.flags.c_contiguous or (y.flags.f_contiguous and x.flags.f_contiguous), what
        assert not np.shares_memory(y, x)
        for got, want in zip(forward(x, derivative=True), _general_derivative(name, x)):
            _same_bits(got, want)
        saved = x if spec.saved == "x" else y
        for g in (grad, np.asfortranarray(grad), np.ascontiguousarray(grad)):
            assert fastpath.backward(slot, g, saved) is not None, what
            got = backward(g, saved)
            _same_bits(got, _general_backward(name, g, saved))
            assert not np.shares_memory(got, g) and not np.shares_memory(got, saved)
        np.testing.assert_array_equal(x, before)
        np.testing.assert_array_equal(grad, grad_before)
        if x.flags.f_contiguous:  # out= of the same order is written directly
            out = np.asfortranarray(np.full(x.shape, 7.0, dtype))
            assert fastpath.forward(slot, x, out) is out, what
            _same_bits(out, y)
            inplace = x.copy(order="F")
            assert forward(inplace, out=inplace) is inplace
            _same_bits(inplace, y)
        # an out= of another order or a strided input with out=: the Python path, same bits
        out = np.full(x.shape, 7.0, dtype, order="C" if x.flags.f_contiguous else "F")
        if not (out.flags.c_contiguous and x.flags.c_contiguous):
            assert fastpath.forward(slot, x, out) is None, what
        assert forward(x, out=out) is out
        _same_bits(out, y)
    # rows run along the last axis of C-contiguous arrays only
    grid = np.linspace(-3, 3, 48, dtype=dtype).reshape(6, 8)
    for row_op in ROW_OPS:
        assert fastpath.forward(_api.FAST_SLOTS[row_op], grid.T) is None
        _same_bits(getattr(fusedact, row_op)(grid.T), _general_forward(row_op, grid.T))


@pytest.mark.parametrize("what, a", _declined(), ids=[w for w, _ in _declined()])
def test_calls_the_entry_declines_keep_their_meaning(what, a):
    fusedact.sigmoid(np.ones(4, np.float32))  # the dispatcher has chosen c for sigmoid
    slot = _api.FAST_SLOTS["sigmoid"]
    assert fastpath.forward(slot, a) is None
    assert fastpath.backward(slot, a, a) is None
    assert fastpath.derivative(slot, a) is None
    got, want = fusedact.sigmoid(a), fusedact.sigmoid(a, backend="c")
    assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)


def test_backward_mismatches_go_to_the_python_path_and_its_errors():
    fusedact.tanh(np.ones(4))
    slot = _api.FAST_SLOTS["tanh"]
    g32, y32 = np.ones(8, np.float32), np.full(8, 0.5, np.float32)
    assert fastpath.backward(slot, g32, y32.astype(np.float64)) is None
    assert fusedact.tanh_backward(g32, y32.astype(np.float64)).dtype == np.float64
    assert fastpath.backward(slot, g32, y32[:4]) is None
    with pytest.raises(ValueError, match="no broadcasting"):
        fusedact.tanh_backward(g32, y32[:4])


def test_parameters_other_than_the_defaults_are_applied():
    x = np.linspace(-3, 3, 50)
    np.testing.assert_allclose(fusedact.leaky_relu(x, 0.2), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(fusedact.leaky_relu_backward(np.ones_like(x), x, 0.2),
                               np.where(x > 0, 1.0, 0.2))
    np.testing.assert_allclose(fusedact.leaky_relu(x), np.where(x > 0, x, 0.01 * x))
    # gelu's approximate='tanh' is another kernel: the fast path must not run 'none' for it
    tanh_form = fusedact.gelu(x, approximate="tanh", backend="c")
    assert not np.array_equal(tanh_form, fusedact.gelu(x, backend="c"))
    np.testing.assert_array_equal(fusedact.gelu(x, approximate="tanh"), tanh_form)


def _given_values(name):
    """Parameter values a user may give name, as tuples in catalogue order: floats, ints,
    negative values, swish's beta = 1.0 (silu's kernel), and values the kernels must carry
    through unchanged (NaN, inf, a huge int)."""
    values = {
        "leaky_relu": [(0.2,), (1,), (-0.5,), (0.0,), (float("nan"),), (10**20,)],
        "hardtanh": [(-2.0, 2.0), (0, 6), (0.5, -0.5), (-float("inf"), 1.5)],
        "elu": [(0.5,), (2,), (-1.0,), (0.0,)],
        "celu": [(0.5,), (2,), (-3.0,), (1e-30,)],
        "swish": [(1.5,), (1.0,), (1,), (-2.0,), (0.0,)],
        "softplus": [(2.0, 20.0), (0.5, 5), (3, 1.0), (-1.0, 20.0), (1.0, -float("inf"))],
    }
    return values[name]


def _general(name, params, x, derivative=False, grad=None, saved=None, out=None):
    """The Python layers' answer, never the entry's."""
    spec = OPS[name]
    given = dict(zip(spec.param_names, params))
    if grad is not None:
        return _api.elementwise_backward(spec, grad, saved, given, out, "c")
    return _api.elementwise_forward(spec, x, given, out, derivative, "c")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NUMERIC_PARAM_OPS)
def test_given_parameters_take_the_entry_and_match_the_general_path(name, dtype):
    spec = OPS[name]
    forward, backward = getattr(fusedact, name), getattr(fusedact, f"{name}_backward")
    slot = _api.FAST_SLOTS[name]
    forward(np.ones(4, dtype))  # the dispatcher chooses c for the op
    rng = np.random.default_rng(13)
    for params in _given_values(name):
        for shape in [(1,), (7,), (33,), (3, 5), (LIMIT + 9,)]:
            x = _inputs(dtype, spec, int(np.prod(shape))).reshape(shape)
            before = x.copy()
            assert fastpath.forward(slot, x, None, *params) is not None, params
            y = forward(x, *params)
            _same_bits(y, _general(name, params, x))
            _same_bits(forward(x, *params, backend="c"), y)
            assert fastpath.derivative(slot, x, *params) is not None
            yd = forward(x, *params, derivative=True)
            for got, want in zip(yd, _general(name, params, x, derivative=True)):
                _same_bits(got, want)
            grad = rng.standard_normal(shape).astype(dtype)
            saved = x if spec.saved == "x" else y
            assert fastpath.backward(slot, grad, saved, None, *params) is not None
            g = backward(grad, saved, *params)
            _same_bits(g, _general(name, params, x, grad=grad, saved=saved))
            out = np.full_like(x, 7.0)
            assert forward(x, *params, out=out) is out
            _same_bits(out, y)
            np.testing.assert_array_equal(x, before)  # inputs untouched
    # keywords reach the entry the same way
    x = _inputs(dtype, spec, 40)
    given = dict(zip(spec.param_names, _given_values(name)[0]))
    _same_bits(forward(x, **given), _general(name, tuple(given.values()), x))


def test_given_parameters_choose_the_kernel_the_python_layers_choose():
    x = np.linspace(-4, 4, 101, dtype=np.float32)
    # swish with beta 1 is silu's kernel (other roundings than swish's with beta 1)
    np.testing.assert_array_equal(fusedact.swish(x, 1.0), fusedact.silu(x))
    np.testing.assert_array_equal(fusedact.swish(x, 1), fusedact.silu(x))
    assert not np.array_equal(fusedact.swish(x, 1.5), fusedact.silu(x))
    np.testing.assert_allclose(fusedact.swish(x, 1.5), x / (1 + np.exp(-1.5 * x)), rtol=1e-6)
    np.testing.assert_allclose(fusedact.hardtanh(x, 0, 6), np.clip(x, 0, 6))
    # gelu's tanh form through its own slot, bit for bit the Python path's
    fusedact.gelu(x)  # the dispatcher chooses c for gelu, which binds both its slots
    slot = _api.FAST_SLOTS["gelu:tanh"]
    assert fastpath.forward(slot, x) is not None
    for dtype in (np.float32, np.float64):
        xd = _inputs(dtype, OPS["gelu"], 300)
        want = _api.elementwise_forward(OPS["gelu"], xd, {"approximate": "tanh"}, None,
                                        False, "c")
        _same_bits(fusedact.gelu(xd, approximate="tanh"), want)
        _same_bits(fusedact.gelu(xd, "tanh", backend="c"), want)
        g = np.ones_like(xd)
        _same_bits(fusedact.gelu_backward(g, xd, approximate="tanh"),
                   _api.elementwise_backward(OPS["gelu"], g, xd, {"approximate": "tanh"},
                                             None, "c"))
        for got, want_d in zip(fusedact.gelu(xd, approximate="tanh", derivative=True),
                               _api.elementwise_forward(OPS["gelu"], xd,
                                                        {"approximate": "tanh"}, None, True,
                                                        "c")):
            _same_bits(got, want_d)
    # "none" given as another string object than the default: the Python path, same bits
    none = "".join(["no", "ne"])
    np.testing.assert_array_equal(fusedact.gelu(x, approximate=none), fusedact.gelu(x))


@pytest.mark.parametrize("call", [
    lambda x: fusedact.leaky_relu(x, True),
    lambda x: fusedact.leaky_relu(x, "0.2"),
    lambda x: fusedact.leaky_relu(x, None),
    lambda x: fusedact.celu(x, 0.0),
    lambda x: fusedact.celu(x, 0),
    lambda x: fusedact.softplus(x, beta=0.0),
    lambda x: fusedact.softplus_backward(x, x, beta=0),
    lambda x: fusedact.gelu(x, approximate="exact"),
    lambda x: fusedact.gelu(x, approximate=1.0),
    lambda x: fusedact.leaky_relu(x, 10**400),
], ids=["bool", "str", "None", "celu 0.0", "celu 0", "softplus 0.0", "softplus_backward 0",
        "gelu choice", "gelu number", "int beyond double"])
def test_given_parameters_the_entry_declines_keep_their_errors(call):
    x = np.linspace(-2, 2, 16, dtype=np.float32)
    with pytest.raises((TypeError, ValueError, OverflowError)):
        call(x)


def test_given_parameters_of_other_numeric_types_take_the_python_path():
    x = np.linspace(-3, 3, 33)
    slot = _api.FAST_SLOTS["leaky_relu"]
    for value in (np.float64(0.2), np.float32(0.25), np.int64(2), 0.2):
        if type(value) is not float:
            assert fastpath.forward(slot, x, None, value) is None
        np.testing.assert_array_equal(fusedact.leaky_relu(x, value),
                                      np.where(x > 0, x, x * float(value)))
    # the wrong number of values: declined, never read past the slot's own
    assert fastpath.forward(_api.FAST_SLOTS["hardtanh"], x, None, 1.0) is None
    assert fastpath.forward(_api.FAST_SLOTS["relu"], x, None, 1.0) is None
    assert fastpath.forward(_api.FAST_SLOTS["softmax"], x, None, 1.0) is None
    with pytest.raises(TypeError, match="forward"):
        fastpath.forward(_api.FAST_SLOTS["hardtanh"], x, None, 1.0, 2.0, 3.0)


def test_backend_c_and_the_catalogue_defaults_take_the_entry(monkeypatch):
    from fusedact.backends.c_backend import CBackend

    x = np.linspace(-3, 3, 40, dtype=np.float32)
    fusedact.leaky_relu(x)  # the dispatcher chooses c for leaky_relu
    calls = []
    original = CBackend.elementwise
    monkeypatch.setattr(CBackend, "elementwise",
                        lambda self, *a: calls.append(1) or original(self, *a))
    fusedact.leaky_relu(x)
    fusedact.leaky_relu(x, backend="c")
    fusedact.leaky_relu(x, **OPS["leaky_relu"].defaults())
    fusedact.leaky_relu(x, 0.2)
    fusedact.leaky_relu(x, negative_slope=0.2, backend="c")
    assert calls == []  # all five ran in the entry, none through the Python backend
    fusedact.leaky_relu(x, np.float32(0.2))
    fusedact.leaky_relu(x, backend="auto")
    assert len(calls) == 2


def test_use_backend_turns_the_entry_off_in_every_thread(monkeypatch):
    from fusedact.backends.numpy_backend import NumpyBackend

    x = np.linspace(-3, 3, 100, dtype=np.float32)
    fusedact.silu(x)
    slot = _api.FAST_SLOTS["silu"]
    calls = []
    original = NumpyBackend.elementwise
    monkeypatch.setattr(NumpyBackend, "elementwise",
                        lambda self, *a: calls.append(1) or original(self, *a))
    with fusedact.use_backend("numpy"):
        assert fastpath.forward(slot, x) is None
        assert fastpath.derivative(slot, x) is None
        fusedact.silu(x)
        with fusedact.use_backend("c"):
            fusedact.silu(x)
        assert fastpath.forward(slot, x) is None  # still inside the outer block
        fusedact.silu(x)
    assert len(calls) == 2
    assert fastpath.forward(slot, x) is not None


def test_re_registering_a_backend_unroutes_until_the_dispatcher_chooses_again():
    x = np.linspace(-3, 3, 100)
    fusedact.elu(x)
    slot = _api.FAST_SLOTS["elu"]
    assert fastpath.forward(slot, x) is not None
    _dispatch.register_backend("numpy", "fusedact.backends.numpy_backend", "NumpyBackend")
    assert fastpath.forward(slot, x) is None
    np.testing.assert_array_equal(fusedact.elu(x), fusedact.elu(x, backend="c"))
    assert fastpath.forward(slot, x) is not None


def test_only_the_process_wide_choice_routes_the_entry():
    _dispatch.register_backend("numpy", "fusedact.backends.numpy_backend", "NumpyBackend")
    x = np.linspace(-2, 2, 9)
    slot = _api.FAST_SLOTS["relu"]
    fusedact.relu(x, backend="c")
    fusedact.relu(x, backend="auto")
    with fusedact.use_backend("c"):
        fusedact.relu(x)
    with fusedact.use_backend("auto"):
        fusedact.relu(x)
    assert fastpath.forward(slot, x) is None  # none of those was the process-wide choice
    fusedact.relu(x)
    assert fastpath.forward(slot, x) is not None


def test_backend_c_binds_its_own_slots_which_use_backend_does_not_suspend(monkeypatch):
    from fusedact.backends.c_backend import CBackend

    _dispatch.register_backend("numpy", "fusedact.backends.numpy_backend", "NumpyBackend")
    x = np.linspace(-3, 3, 70, dtype=np.float32)
    slot = _api.FAST_SLOTS["softplus"]
    keyword_slot = slot + fastpath.KEYWORD_BASE
    assert fastpath.forward(keyword_slot, x) is None  # unbound by register_backend
    calls = []
    original = CBackend.elementwise
    monkeypatch.setattr(CBackend, "elementwise",
                        lambda self, *a: calls.append(1) or original(self, *a))
    first = fusedact.softplus(x, backend="c")  # resolves the keyword: the Python path, binds
    assert fastpath.forward(keyword_slot, x) is not None
    assert fastpath.forward(slot, x) is None  # backend=None calls still wait for auto's choice
    _same_bits(fusedact.softplus(x, backend="c"), first)
    with fusedact.use_backend("numpy"):
        assert fastpath.forward(slot, x) is None
        _same_bits(fusedact.softplus(x, backend="c"), first)  # the keyword outranks the block
        assert fastpath.forward(keyword_slot, x) is not None
    assert len(calls) == 1  # only the first call, which bound the slot, went through cffi


def test_backend_c_reaches_a_re_registered_c_backend():
    class Recording(type(_dispatch._load("c")[0])):
        seen = []

        def elementwise(self, spec, x, values, out):
            Recording.seen.append(spec.name)
            return super().elementwise(spec, x, values, out)

    x = np.linspace(-3, 3, 20)
    fusedact.selu(x, backend="c")
    assert fastpath.forward(_api.FAST_SLOTS["selu"] + fastpath.KEYWORD_BASE, x) is not None
    module = sys.modules[__name__]
    module.Recording = Recording
    try:
        _dispatch.register_backend("c", __name__, "Recording")
        fusedact.selu(x, backend="c")
        fusedact.selu(x, backend="c")
        assert Recording.seen == ["selu", "selu"]  # neither call ran the old binding
    finally:
        _dispatch.register_backend("c", "fusedact.backends.c_backend", "CBackend")
        del module.Recording


@pytest.mark.parametrize("env, routed", [("numpy", False), ("c", True)])
def test_fusedact_backend_routes_the_entry_only_to_c(env, routed):
    code = ("import numpy as np, fusedact\n"
            "from fusedact import _api, _dispatch\n"
            "x = np.linspace(-1, 1, 5)\n"
            "y = fusedact.tanh(x)\n"
            "print(_dispatch._fastpath.forward(_api.FAST_SLOTS['tanh'], x) is not None)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FUSEDACT_BACKEND": env})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(routed)


# float64 elements whose output (plus the 64 bytes of placement room) reaches the entry's
# large-output cache (CACHE_MIN_BYTES, 4 MiB, in csrc/pyext/fastpath.c)
CACHED = 1 << 19


def test_large_outputs_reuse_released_blocks_and_never_share_live_ones():
    x = np.linspace(-9, 9, CACHED)
    flipped = x[::-1].copy()
    # the references first (the Python layers take large outputs from the cache too), held
    # to the end so that only the blocks under test come and go
    want_a, want_b = _general_forward("sigmoid", x), _general_forward("tanh", x)
    want_c = _general_forward("sigmoid", flipped)
    fusedact.sigmoid(x), fusedact.tanh(x)  # the dispatcher routes both to the entry
    fastpath.cache_clear()
    start = fastpath.cache_info()
    assert start["blocks"] == 0 and start["limit"] > 0
    a, b = fusedact.sigmoid(x), fusedact.tanh(x)
    assert type(a.base).__name__ == "Block" and not np.shares_memory(a, b)
    _same_bits(a, want_a)
    del a  # its block goes back to the cache
    assert fastpath.cache_info()["blocks"] == 1
    c = fusedact.sigmoid(flipped)  # takes it again: every element rewritten
    info = fastpath.cache_info()
    assert info["hits"] == start["hits"] + 1 and info["blocks"] == 0
    _same_bits(c, want_c)
    _same_bits(b, want_b)  # b untouched by c's writes
    assert not np.shares_memory(b, c)
    # a cached block is not spent on an output much smaller than it (over 5/4 of it)
    del b, c
    fastpath.cache_clear()
    big = fusedact.sigmoid(np.linspace(-9, 9, 2 * CACHED))
    del big
    info = fastpath.cache_info()
    assert info["blocks"] == 1
    small = fusedact.sigmoid(x)
    assert fastpath.cache_info()["hits"] == info["hits"]
    assert fastpath.cache_info()["misses"] == info["misses"] + 1
    _same_bits(small, want_a)
    fastpath.cache_clear()
    assert fastpath.cache_info()["bytes"] == 0


def test_large_outputs_from_many_threads_stay_apart():
    import threading

    fusedact.silu(np.ones(4))
    inputs = [np.linspace(-8, 8, CACHED) * (k + 1) for k in range(4)]
    wants = [_general_forward("silu", x) for x in inputs]
    failures = []

    def work(k):
        held = []
        for i in range(12):
            y = fusedact.silu(inputs[k])
            held.append(y)
            if len(held) > 2:
                held.pop(0)  # releases a block while other threads take theirs
            if not np.array_equal(y, wants[k]):
                failures.append((k, i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("value, blocks", [("0", False), ("64", True), ("lots", None)])
def test_fusedact_output_cache_mb(value, blocks):
    code = ("import numpy as np, fusedact\n"
            "from fusedact import _dispatch\n"
            f"x = np.ones({CACHED})\n"
            "fusedact.relu(x)\n"
            "y = fusedact.relu(x)\n"
            "print(type(y.base).__name__, _dispatch._fastpath.cache_info()['limit'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FUSEDACT_OUTPUT_CACHE_MB": value})
    if blocks is None:
        assert done.returncode != 0
        assert "FUSEDACT_OUTPUT_CACHE_MB=lots: expected a whole number of MiB" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    kind, limit = done.stdout.split()
    assert kind == ("Block" if blocks else "ndarray") and int(limit) == int(value) << 20


@pytest.mark.parametrize("backend", ["c", "numba"])
def test_the_python_layers_take_large_outputs_from_the_cache_too(backend):
    if backend not in fusedact.available_backends():
        pytest.skip(f"the {backend} backend is not available here")
    x = np.linspace(-9, 9, CACHED)
    y, d = fusedact.sigmoid(x, derivative=True, backend=backend)
    z = fusedact.leaky_relu(x, 0.2, backend=backend)  # a parameter: not the entry
    g = fusedact.tanh_backward(x, y, backend=backend)
    outputs = [y, d, z, g]
    for i, a in enumerate(outputs):
        assert type(a.base).__name__ == "Block" and a.flags.c_contiguous and a.flags.writeable
        assert not any(np.shares_memory(a, b) for b in outputs[i + 1:])
    np.testing.assert_allclose(y, fusedact.sigmoid(x, backend="numpy"), rtol=1e-15)
    np.testing.assert_allclose(d, y * (1 - y), rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(z, np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(g, fusedact.tanh_backward(x, y, backend="numpy"), rtol=1e-15)


def test_the_cache_allocator_refuses_what_it_cannot_place():
    for bad in (np.ones(8, ">f8"), np.ones(8, np.float16), np.ones((4, 4))[:, ::2],
                np.ones(0), np.ones(8, np.int64)):
        with pytest.raises(TypeError, match="C-contiguous, aligned, native"):
            fastpath.empty(bad, True)
        assert not _api._cacheable(bad) or bad.size == 0
    # large inputs the allocator refuses still get right results through the Python layers
    swapped = np.linspace(-9, 9, CACHED).astype(">f8")
    transposed = np.linspace(-9, 9, CACHED).reshape(512, -1).T
    for x in (swapped, transposed):
        np.testing.assert_array_equal(fusedact.sigmoid(x, derivative=True)[0],
                                      fusedact.sigmoid(np.ascontiguousarray(x, np.float64)))


# ---- the fused ops: bias_act (forward, backward) and softmax_cross_entropy ----------------
def _bias_inputs(act, dtype, shape, seed):
    rng = np.random.default_rng(seed)
    domain = OPS[act].domain if act in OPS else (-10.0, 10.0)
    x = _inputs(dtype, OPS.get(act, OPS["relu"]), int(np.prod(shape))).reshape(shape)
    bias = rng.uniform(domain[0] / 4, domain[1] / 4, shape[-1]).astype(dtype)
    return x, bias, rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["identity"] + FAST_OPS)
def test_bias_act_calls_match_the_general_path(act, dtype):
    slot = _api.FAST_SLOTS[f"bias_act:{act}"]
    for shape in [(1,), (7,), (3, 5), (2, 3, 17), (4, 64), (LIMIT // 64 + 3, 64)]:
        x, bias, g = _bias_inputs(act, dtype, shape, seed=len(shape))
        before = (x.copy(), bias.copy(), g.copy())
        y = fusedact.bias_act(x, bias, act)
        assert fastpath.bias_forward(slot, x, bias) is not None, "declined a plain call"
        want = _api.bias_act(x, bias, act, None, "c", {})
        _same_bits(y, want)
        _same_bits(fusedact.bias_act(x, bias, act, backend="c"), want)
        out = np.full_like(x, 7.0)
        assert fusedact.bias_act(x, bias, act, out=out) is out
        _same_bits(out, want)
        inplace = x.copy()
        assert fastpath.bias_forward(slot, inplace, bias, inplace) is inplace
        _same_bits(inplace, want)
        gx, gb = fusedact.bias_act_backward(g, x, bias, act)
        assert fastpath.bias_backward(slot, g, x, bias) is not None
        want_gx, want_gb = _api.bias_act_backward(g, x, bias, act, None, "c", {})
        _same_bits(gx, want_gx)
        _same_bits(gb, want_gb)
        for a, b in zip((x, bias, g), before):
            np.testing.assert_array_equal(a, b)  # inputs untouched
    if act == "identity":
        _same_bits(fusedact.bias_act(x, bias, None), x + bias)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", NUMERIC_PARAM_OPS + ["gelu"])
def test_bias_act_calls_that_give_parameters_take_the_entry(act, dtype):
    choices = [{"approximate": "tanh"}, {"approximate": "none"}] if act == "gelu" else [
        dict(zip(OPS[act].param_names, values)) for values in _given_values(act)]
    if len(OPS[act].params) == 2:  # one of the two given, the other left at its default
        choices += [{OPS[act].param_names[1]: 3.0}, {OPS[act].param_names[0]: 0.5}]
    fusedact.bias_act(np.ones((2, 3), dtype), np.ones(3, dtype), act)  # c chosen for bias_act
    for params in choices:
        for shape in [(1,), (3, 5), (2, 3, 17), (LIMIT // 64 + 3, 64)]:
            x, bias, g = _bias_inputs(act, dtype, shape, seed=len(shape))
            before = (x.copy(), bias.copy(), g.copy())
            slot, given = _api._bias_given(act, params)
            assert slot is not None
            assert fastpath.bias_forward(slot, x, bias, None, *given) is not None, params
            want = _api.bias_act(x, bias, act, None, "c", params)
            _same_bits(fusedact.bias_act(x, bias, act, **params), want)
            _same_bits(fusedact.bias_act(x, bias, act, backend="c", **params), want)
            out = np.full_like(x, 7.0)
            assert fusedact.bias_act(x, bias, act, out=out, **params) is out
            _same_bits(out, want)
            assert fastpath.bias_backward(slot, g, x, bias, *given) is not None
            gx, gb = fusedact.bias_act_backward(g, x, bias, act, **params)
            want_gx, want_gb = _api.bias_act_backward(g, x, bias, act, None, "c", params)
            _same_bits(gx, want_gx)
            _same_bits(gb, want_gb)
            for a, b in zip((x, bias, g), before):
                np.testing.assert_array_equal(a, b)  # inputs untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_calls_match_the_general_path(dtype):
    slot = _api.FAST_SLOTS["softmax_cross_entropy"]
    rng = np.random.default_rng(17)
    for shape in [(5,), (1, 7), (4, 33), (3, 2, 17), (70, 1024)]:
        z = (rng.standard_normal(shape) * 4).astype(dtype)
        labels = rng.integers(0, shape[-1], shape[:-1])
        if labels.size > 1:
            labels.flat[1] = -100  # ignored: loss 0, a zero gradient row
        before = z.copy()
        loss, grad = fusedact.softmax_cross_entropy(z, labels)
        assert fastpath.xent(slot, z, labels, -100) is not None, "declined a plain call"
        want_loss, want_grad = _api.softmax_cross_entropy(z, labels, -100, None, "c")
        assert loss.shape == labels.shape and loss.dtype == dtype
        _same_bits(loss, want_loss)
        _same_bits(grad, want_grad)
        third = labels.copy()
        third[...] = 3 % shape[-1]
        _same_bits(fusedact.softmax_cross_entropy(z, third, ignore_index=3 % shape[-1])[1],
                   np.zeros_like(z))
        np.testing.assert_array_equal(z, before)


def test_fused_calls_the_entry_declines_keep_their_meaning():
    rng = np.random.default_rng(19)
    x = rng.standard_normal((6, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    fusedact.bias_act(x, bias, "silu")  # the dispatcher chooses c for bias_act
    slot = _api.FAST_SLOTS["bias_act:silu"]
    want = _api.bias_act(x, bias, "silu", None, "c", {})
    declined = [
        ("short bias", (x, bias[:-1]), ValueError),
        ("2-D bias", (x, bias[None, :]), ValueError),
        ("float64 bias", (x, bias.astype(np.float64)), None),
        ("transposed x", (np.asfortranarray(x), bias), None),
        ("strided bias", (x, np.repeat(bias, 2)[::2]), None),
        ("list bias", (x, list(bias)), None),
    ]
    for what, (a, b), error in declined:
        assert fastpath.bias_forward(slot, a, b) is None, what
        if error is not None:
            with pytest.raises(error, match="bias"):
                fusedact.bias_act(a, b, "silu")
            continue
        got = fusedact.bias_act(a, b, "silu")
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=what)
    room = np.zeros(x.size + 16, np.float32)
    room[:16] = bias
    over_bias = room[:x.size].reshape(x.shape)  # out's first row is the bias itself
    assert fastpath.bias_forward(slot, x, room[:16], over_bias) is None
    assert fusedact.bias_act(x, room[:16], "silu", out=over_bias) is over_bias
    _same_bits(over_bias, want)
    shifted = np.zeros(x.size + 1, np.float32)
    shifted[:-1] = x.ravel()
    partial = shifted[1:].reshape(x.shape)  # overlaps x but is not x
    assert fastpath.bias_forward(slot, shifted[:-1].reshape(x.shape), bias, partial) is None
    fusedact.bias_act(shifted[:-1].reshape(x.shape), bias, "silu", out=partial)
    _same_bits(partial, want)
    leaky = fusedact.bias_act(x, bias, "leaky_relu", negative_slope=0.25)
    np.testing.assert_allclose(leaky, np.where(x + bias > 0, x + bias, 0.25 * (x + bias)))
    # parameters the entry declines: the Python path's errors and results
    for act, params, error in [("leaky_relu", {"slope": 0.2}, "parameter"),
                               ("leaky_relu", {"negative_slope": True}, "real number"),
                               ("celu", {"alpha": 0}, "must not be 0"),
                               ("softplus", {"beta": 2.0, "threshold": 5.0, "gamma": 1}, "param"),
                               ("gelu", {"approximate": "exact"}, "one of"),
                               ("relu", {"alpha": 1.0}, "param"),
                               ("identity", {"alpha": 1.0}, "no parameters"),
                               (None, {"alpha": 1.0}, "no parameters")]:
        with pytest.raises((TypeError, ValueError), match=error):
            fusedact.bias_act(x, bias, act, **params)
        with pytest.raises((TypeError, ValueError), match=error):
            fusedact.bias_act_backward(x, x, bias, act, **params)
    np.testing.assert_array_equal(
        fusedact.bias_act(x, bias, "leaky_relu", negative_slope=np.float32(0.25)), leaky)
    with pytest.raises(ValueError, match="not an elementwise op"):
        fusedact.bias_act(x, bias, "softmax")

    zslot = _api.FAST_SLOTS["softmax_cross_entropy"]
    fusedact.softmax_cross_entropy(x, np.zeros(6, np.int64))
    labels = np.arange(6)
    loss, grad = _api.softmax_cross_entropy(x, labels, -100, None, "c")
    for what, lab, ignore in [("int32 labels", labels.astype(np.int32), -100),
                              ("strided labels", np.repeat(labels, 2)[::2], -100),
                              ("NumPy int ignore_index", labels, np.int64(-100)),
                              ("huge ignore_index", labels, 2**70)]:
        assert fastpath.xent(zslot, x, lab, ignore) is None, what
        got_loss, got_grad = fusedact.softmax_cross_entropy(x, lab, ignore_index=ignore)
        _same_bits(got_loss, loss)
        _same_bits(got_grad, grad)
    for what, lab, match in [("label 16 of 16 classes", np.full(6, 16), "out of range"),
                             ("negative label", np.full(6, -1), "out of range"),
                             ("labels of another shape", np.zeros(5, np.int64), "shape"),
                             ("float labels", labels.astype(np.float64), "integer")]:
        assert fastpath.xent(zslot, x, lab, -100) is None, what
        with pytest.raises((ValueError, TypeError), match=match):
            fusedact.softmax_cross_entropy(x, lab)


def test_use_backend_turns_the_fused_entry_off_and_backend_c_binds_its_own_slots():
    _dispatch.register_backend("numpy", "fusedact.backends.numpy_backend", "NumpyBackend")
    x = np.linspace(-3, 3, 48, dtype=np.float32).reshape(3, 16)
    bias, labels = np.ones(16, np.float32), np.arange(3)
    slot, zslot = _api.FAST_SLOTS["bias_act:gelu"], _api.FAST_SLOTS["softmax_cross_entropy"]
    assert fastpath.bias_forward(slot, x, bias) is None  # unbound by register_backend
    fusedact.bias_act(x, bias, "gelu", backend="c")
    fusedact.softmax_cross_entropy(x, labels, backend="c")
    base = fastpath.KEYWORD_BASE
    assert fastpath.bias_forward(slot + base, x, bias) is not None
    assert fastpath.xent(zslot + base, x, labels, -100) is not None
    assert fastpath.bias_forward(slot, x, bias) is None  # backend=None waits for auto's choice
    fusedact.bias_act(x, bias, "gelu")
    fusedact.softmax_cross_entropy(x, labels)
    assert fastpath.bias_backward(slot, x, x, bias) is not None
    assert fastpath.xent(zslot, x, labels, -100) is not None
    with fusedact.use_backend("numpy"):
        assert fastpath.bias_forward(slot, x, bias) is None
        assert fastpath.bias_backward(slot, x, x, bias) is None
        assert fastpath.xent(zslot, x, labels, -100) is None
        assert fastpath.bias_forward(slot + base, x, bias) is not None  # the keyword's own
    assert fastpath.xent(zslot, x, labels, -100) is not None


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_fused_calls_follow_the_thread_count(threads):
    before = fusedact.get_num_threads()
    fusedact.set_num_threads(threads)
    try:
        rng = np.random.default_rng(23)
        x = rng.standard_normal((301, 1031)).astype(np.float32)
        bias = rng.standard_normal(1031).astype(np.float32)
        fusedact.bias_act(x, bias, "tanh")
        assert fastpath.bias_forward(_api.FAST_SLOTS["bias_act:tanh"], x, bias) is not None
        _same_bits(fusedact.bias_act(x, bias, "tanh"), _api.bias_act(x, bias, "tanh", None,
                                                                     "c", {}))
        for got, want in zip(fusedact.bias_act_backward(x, x, bias, "tanh"),
                             _api.bias_act_backward(x, x, bias, "tanh", None, "c", {})):
            _same_bits(got, want)
        labels = rng.integers(0, 1031, 301)
        for got, want in zip(fusedact.softmax_cross_entropy(x, labels),
                             _api.softmax_cross_entropy(x, labels, -100, None, "c")):
            _same_bits(got, want)
    finally:
        fusedact.set_num_threads(before)


def test_derivative_with_out_or_on_a_row_slot_goes_the_python_way():
    x = np.linspace(-4, 4, 50)
    fusedact.tanh(x)
    y, d = np.empty_like(x), np.empty_like(x)
    got = fusedact.tanh(x, derivative=True, out=(y, d))
    assert got[0] is y and got[1] is d
    for a, b in zip(got, _general_derivative("tanh", x)):
        _same_bits(a, b)
    fusedact.softmax(x)
    assert fastpath.derivative(_api.FAST_SLOTS["softmax"], x) is None
    fusedact.bias_act(x[None, :], x, "tanh")
    assert fastpath.derivative(_api.FAST_SLOTS["bias_act:tanh"], x) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxout_calls_match_the_general_path(dtype):
    slot = _api.FAST_SLOTS["maxout"]
    alphabet = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1.0, np.inf], dtype)
    rng = np.random.default_rng(29)
    for shape, pieces in [((4,), 2), ((3, 12), 3), ((2, 5, 16), 4), ((7, 96), 8), ((1, 9), 9),
                          ((300, 1024), 2), ((LIMIT // 64 + 1, 64), 16)]:
        x = alphabet[rng.integers(0, 7, shape)] if shape[-1] < 100 else \
            rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape[:-1] + (shape[-1] // pieces,)).astype(dtype)
        before = x.copy()
        y = fusedact.maxout(x, pieces)
        assert fastpath.maxout_forward(slot, x, pieces) is not None, "declined a plain call"
        _same_bits(y, _api.axis_forward("maxout", x, -1, None, "c", pieces))
        gx = fusedact.maxout_backward(g, x, pieces)
        assert fastpath.maxout_backward(slot, g, x, pieces) is not None
        _same_bits(gx, _api.axis_backward("maxout", g, x, -1, None, "c", pieces))
        np.testing.assert_array_equal(x, before)


def test_maxout_calls_the_entry_declines_keep_their_meaning():
    x = np.linspace(-3, 3, 48).reshape(4, 12)
    fusedact.maxout(x, 3)
    slot = _api.FAST_SLOTS["maxout"]
    want = _api.axis_forward("maxout", x, -1, None, "c", 3)
    for what, pieces in [("5 does not divide 12", 5), ("zero", 0), ("negative", -3),
                         ("huge", 2**70), ("NumPy int", np.int64(3)), ("bool", True)]:
        assert fastpath.maxout_forward(slot, x, pieces) is None, what
    with pytest.raises(ValueError, match="multiple of pieces"):
        fusedact.maxout(x, 5)
    _same_bits(fusedact.maxout(x, np.int64(3)), want)
    out = np.empty((4, 4))
    assert fusedact.maxout(x, 3, out=out) is out  # out= goes the Python way
    _same_bits(out, want)
    _same_bits(fusedact.maxout(x.T.copy().T, 3), want)  # Fortran order: declined, same result
    g = np.ones((4, 4))
    assert fastpath.maxout_backward(slot, np.ones((4, 3)), x, 3) is None
    with pytest.raises(ValueError, match="grad_out has shape"):
        fusedact.maxout_backward(np.ones((4, 3)), x, 3)
    _same_bits(fusedact.maxout_backward(g, x, 3),
               _api.axis_backward("maxout", g, x, -1, None, "c", 3))
    with fusedact.use_backend("numpy"):
        assert fastpath.maxout_forward(slot, x, 3) is None


def test_without_the_entry_every_call_takes_the_python_path():
    """Where the extension is not built, _api's stand-ins answer None for every call the
    generated code makes, parameters and an axis included (they took no parameters before,
    and `leaky_relu(x, 0.2)` raised a TypeError)."""
    code = (
        "import sys; sys.modules['fusedact._fastpath'] = None\n"
        "import numpy as np, fusedact\n"
        "assert fusedact._dispatch._fastpath is None\n"
        "x = np.linspace(-3, 3, 12).reshape(3, 4); b = np.ones(4); g = np.ones((3, 4))\n"
        "assert np.allclose(fusedact.leaky_relu(x, 0.2), np.where(x > 0, x, 0.2 * x))\n"
        "fusedact.leaky_relu_backward(g, x, 0.2)\n"
        "fusedact.gelu(x, approximate='tanh', derivative=True)\n"
        "fusedact.bias_act(x, b, 'elu', alpha=0.5); fusedact.bias_act_backward(g, x, b, 'elu', alpha=0.5)\n"
        "y = fusedact.softmax(x, axis=0); fusedact.softmax_backward(g, y, axis=0)\n"
        "assert np.allclose(y.sum(axis=0), 1)\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split()[-1] == "ok", r.stderr
