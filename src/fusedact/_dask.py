"""Calls with dask arrays: every fusedact function builds a lazy dask array, block by block.

- elementwise forward/backward: one task per block (backward operands are rechunked to
  grad_out's chunks when they differ); ``derivative=True`` computes (y, dy/dx) in one task per
  block, stacked along a new leading axis and split lazily;
- softmax, log_softmax, maxout and their backwards: the reduction axis is rechunked to a
  single chunk when it is split (a row must be whole), then one task per block;
- bias_act: the bias is cut to x's chunks along the last axis and broadcast per block;
  bias_act_backward: grad_x per block, grad_bias the sum of grad_x over the leading axes;
- softmax_cross_entropy: classes in one chunk; loss and gradient from one task per block.

The backend is decided when the graph is built (the ``backend=`` keyword, else
``use_backend()``, else ``FUSEDACT_BACKEND``) and written into every task, so workers in
other processes or on other machines run the backend the caller chose; ``auto`` stays
``auto`` and lets each worker choose for itself. ``out=`` is not supported for dask arrays
(they are immutable); it raises.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _dispatch


def is_dask(*arrays) -> bool:
    return any(type(a).__module__.startswith("dask.array") for a in arrays if a is not None)


def _da():
    import dask.array as da

    return da


def _backend_name(keyword):
    """The backend every task will be told to use (None: let each worker choose)."""
    if keyword is not None:
        name = _dispatch._check_name(keyword, "backend= keyword")
    else:
        name = _dispatch.get_backend()
    return None if name == _dispatch.AUTO else name


def _no_out(out, op):
    if out is not None:
        raise TypeError(f"{op}: out= is not supported for dask arrays (they are immutable); "
                        "compute the result, or store it with dask.array.store")


def _as_dask(a, like=None):
    da = _da()
    if is_dask(a):
        return a
    a = np.asarray(a)
    if like is not None and a.shape == like.shape:
        return da.from_array(a, chunks=like.chunks)
    return da.from_array(a, chunks=a.shape or ())


def _result_dtype(*arrays):
    from ._api import _result_dtype as rule

    dtype = None
    for i, a in enumerate(arrays):
        d = rule(np.dtype(a.dtype), "dask", f"argument {i}")
        dtype = d if dtype is None else np.promote_types(dtype, d)
    return dtype


def _call(fn, *blocks, **kw):
    return fn(*blocks, **kw)


def elementwise_forward(spec, x, params, out, derivative, backend):
    import fusedact

    _no_out(out, spec.name)
    x = _as_dask(x)
    dtype = _result_dtype(x)
    fn = functools.partial(getattr(fusedact, spec.name), **params, backend=_backend_name(backend))
    if not derivative:
        return x.map_blocks(fn, dtype=dtype)

    def both(block, fn=fn):
        y, d = fn(block, derivative=True)
        return np.stack([y, d])

    pair = x.map_blocks(both, dtype=dtype, new_axis=0, chunks=((2,),) + x.chunks)
    return pair[0], pair[1]


def elementwise_backward(spec, grad, saved, params, out, backend):
    import fusedact

    op = f"{spec.name}_backward"
    _no_out(out, op)
    g = _as_dask(grad)
    s = _as_dask(saved, like=g)
    if g.shape != s.shape:
        raise ValueError(f"{op}: grad_out has shape {g.shape} but {spec.saved} has shape "
                         f"{s.shape}; they must be equal (no broadcasting)")
    if s.chunks != g.chunks:
        s = s.rechunk(g.chunks)
    fn = functools.partial(getattr(fusedact, op), **params, backend=_backend_name(backend))
    return _da().map_blocks(fn, g, s, dtype=_result_dtype(g, s))


def _whole_axis(a, axis):
    """a with `axis` in one chunk (rows must be whole for a reduction along it)."""
    return a if len(a.chunks[axis]) == 1 else a.rechunk({axis: -1})


def _rows_ready(a, axis, backend, op, pieces):
    """(a with the axis in one chunk, the axis, the keywords every task gets); checks the
    axis exists and, for maxout, that its length is a multiple of pieces."""
    if a.ndim == 0:
        raise ValueError(f"{op}: the array must have at least one dimension, got a 0-d array")
    ax = axis % a.ndim
    if pieces is not None and (pieces < 1 or a.shape[ax] % pieces):
        raise ValueError(f"{op}: x.shape[{ax}] = {a.shape[ax]} is not a multiple of "
                         f"pieces = {pieces}")
    return _whole_axis(a, ax), ax, {"backend": _backend_name(backend), "axis": ax}


def axis_forward(name, x, axis, out, backend, pieces=None):
    import fusedact

    _no_out(out, name)
    x, ax, kw = _rows_ready(_as_dask(x), axis, backend, name, pieces)
    dtype = _result_dtype(x)
    if name == "maxout":
        fn = functools.partial(fusedact.maxout, pieces=pieces, **kw)
        chunks = x.chunks[:ax] + ((x.shape[ax] // pieces,),) + x.chunks[ax + 1:]
        return x.map_blocks(fn, dtype=dtype, chunks=chunks)
    return x.map_blocks(functools.partial(getattr(fusedact, name), **kw), dtype=dtype)


def axis_backward(name, grad, saved, axis, out, backend, pieces=None):
    import fusedact

    op = f"{name}_backward"
    _no_out(out, op)
    s, ax, kw = _rows_ready(_as_dask(saved), axis, backend, op, pieces)
    g = _as_dask(grad)
    dtype = _result_dtype(g, s)
    if name == "maxout":
        expected = s.shape[:ax] + (s.shape[ax] // pieces,) + s.shape[ax + 1:]
        if g.shape != expected:
            raise ValueError(f"{op}: grad_out has shape {g.shape}, expected {expected}")
        g = g.rechunk(s.chunks[:ax] + ((expected[ax],),) + s.chunks[ax + 1:])
        fn = functools.partial(fusedact.maxout_backward, pieces=pieces, **kw)
        return _da().map_blocks(fn, g, s, dtype=dtype, chunks=s.chunks)
    if g.shape != s.shape:
        raise ValueError(f"{op}: grad_out has shape {g.shape}, expected {s.shape}")
    g = g.rechunk(s.chunks)
    return _da().map_blocks(functools.partial(getattr(fusedact, op), **kw), g, s, dtype=dtype)


def _bias_for(x, bias, op):
    b = _as_dask(bias)
    if x.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension")
    if b.shape != (x.shape[-1],):
        raise ValueError(f"{op}: bias has shape {b.shape}, expected ({x.shape[-1]},) "
                         f"(the last axis of x, shape {x.shape})")
    return b.rechunk((x.chunks[-1],))


def bias_act(x, bias, act, out, backend, params, spec=None, values=None):
    """(spec and values, the checked activation, are for the device path's signature; the
    tasks re-check the parameters themselves.)"""
    import fusedact

    _no_out(out, "bias_act")
    x = _as_dask(x)
    b = _bias_for(x, bias, "bias_act")
    fn = functools.partial(fusedact.bias_act, act=act, backend=_backend_name(backend), **params)
    idx = tuple(range(x.ndim))
    return _da().blockwise(fn, idx, x, idx, b, (idx[-1],), dtype=_result_dtype(x, b))


def bias_act_backward(grad, x, bias, act, out, backend, params, spec=None, values=None):
    import fusedact

    op = "bias_act_backward"
    _no_out(out, op)
    x = _as_dask(x)
    g = _as_dask(grad, like=x)
    if g.shape != x.shape:
        raise ValueError(f"{op}: grad_out has shape {g.shape} but x has shape {x.shape}; "
                         "they must be equal")
    g = g.rechunk(x.chunks)
    b = _bias_for(x, bias, op)
    name = _backend_name(backend)

    def grad_x(gb, xb, bb):
        return fusedact.bias_act_backward(gb, xb, bb, act, backend=name, **params)[0]

    idx = tuple(range(x.ndim))
    dtype = _result_dtype(g, x, b)
    gx = _da().blockwise(grad_x, idx, g, idx, x, idx, b, (idx[-1],), dtype=dtype)
    return gx, gx.sum(axis=tuple(range(x.ndim - 1)), dtype=dtype)


def softmax_cross_entropy(logits, labels, ignore_index, out, backend):
    import fusedact

    op = "softmax_cross_entropy"
    _no_out(out, op)
    z = _as_dask(logits)
    if z.ndim == 0:
        raise ValueError(f"{op}: logits must have at least one dimension (classes last)")
    z = _whole_axis(z, z.ndim - 1)
    lab = _as_dask(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class indices, got dtype {lab.dtype}")
    if lab.shape != z.shape[:-1]:
        raise ValueError(f"{op}: labels has shape {lab.shape}, expected {z.shape[:-1]}")
    lab = lab.rechunk(z.chunks[:-1])
    name = _backend_name(backend)
    n_classes = z.shape[-1]

    def loss_and_grad(zb, lb):
        loss, grad = fusedact.softmax_cross_entropy(zb, lb, ignore_index=ignore_index,
                                                    backend=name)
        return np.concatenate([grad, loss[..., None]], axis=-1)

    idx = tuple(range(z.ndim))
    both = _da().blockwise(loss_and_grad, idx, z, idx, lab, idx[:-1], dtype=_result_dtype(z),
                           adjust_chunks={idx[-1]: n_classes + 1})
    return both[..., n_classes], both[..., :n_classes]
