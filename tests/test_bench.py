"""The benchmark's contenders compute what they claim: a table row that times the wrong
formula (or a variant mapped to the wrong op) would compare nothing."""

from __future__ import annotations

import numpy as np
import pytest

import fusedact
from fusedact import _bench


@pytest.mark.parametrize("op", [op for op in _bench.BENCH_OPS
                                if _bench.base_op(op) in fusedact.ELEMENTWISE_OPS])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_elementwise_contenders_agree_with_the_reference(op, direction):
    """Every contender of an elementwise row (each fusedact backend, the naive NumPy formula,
    PyTorch when installed) returns the numpy backend's result for the op and its
    parameters (gelu_tanh: gelu with approximate='tanh') on the benchmark's float64 data."""
    case = _bench.Case(op, direction, "float64", 2048)
    inp = _bench.make_inputs(case)
    params = _bench._params(op)
    base = _bench.base_op(op)
    if direction == "forward":
        want = getattr(fusedact, base)(inp["x"], **params, backend="numpy")
    else:
        want = getattr(fusedact, base + "_backward")(inp["g"], inp["saved"], **params,
                                                     backend="numpy")
    table = _bench.contenders(case, inp, backends=fusedact.available_backends())
    checked = []
    for label, fn in table.items():
        if label == _bench.COPY or label.startswith("scipy") or label.startswith("exp-based"):
            continue
        got = np.asarray(fn())
        # the naive formulas are the classic ones (1 - s^2, 1 + tanh), which lose digits
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=f"{op} {label}")
        checked.append(label)
    assert "fusedact[numpy]" in checked and _bench.NAIVE in checked, checked
