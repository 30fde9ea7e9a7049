"""The op catalogue: the one table every other part of fusedact is driven by.

The public functions (``fusedact.gelu``, ``fusedact.gelu_backward``, ...), the tests, the
accuracy tool, the benchmarks and the README's API table are all generated from ``OPS``.
Adding an operation means one entry here plus one kernel per backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ELEMENTWISE = "elementwise"
AXIS = "axis"
FUSED = "fused"


REQUIRED = object()  # default of a parameter that has none (maxout's pieces)


@dataclass(frozen=True)
class Param:
    """A keyword parameter of an operation, named and defaulted as in PyTorch."""

    name: str
    default: object
    choices: tuple = ()  # non-empty for string-valued parameters
    doc: str = ""
    kind: str = "float"  # "float", "int" or "choice" (inferred from choices)
    nonzero: bool = False  # the op divides by it (celu's alpha, softplus's beta)

    def coerce(self, op_name: str, value):
        """Check one value of this parameter and return it as the kernels want it."""
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{op_name}: {self.name} must be an integer, got {value!r}")
            return int(value)
        if self.choices:
            if value not in self.choices:
                raise ValueError(
                    f"{op_name}: {self.name}={value!r} is not one of {list(self.choices)}"
                )
            return value
        if isinstance(value, (bool, str, bytes)) or value is None:
            raise TypeError(f"{op_name}: {self.name} must be a real number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"{op_name}: {self.name} must be a real number, got {value!r}"
            ) from None
        if self.nonzero and number == 0.0:
            raise ValueError(f"{op_name}: {self.name} must not be 0 (the formula divides by it)")
        return number


@dataclass(frozen=True)
class OpSpec:
    """One operation of SPEC section 2."""

    name: str
    family: str
    formula: str  # forward, in the README's notation
    derivative: str  # d op / dx, or "" where the formula is long
    numpy_equivalent: str  # what a user would write in plain NumPy
    params: tuple = ()
    saved: str = "x"  # what backward reads: the input "x" or the output "y"
    # The interval where the function is not trivially constant or linear; the
    # accuracy tool sweeps it and the tests draw from it.
    domain: tuple = (-20.0, 20.0)
    # Piecewise-linear ops whose derivative is exactly 0 on whole intervals: their backward
    # selects (grad or 0) instead of multiplying, so an inf/NaN grad_out in a flat region
    # gives 0, as PyTorch's threshold_backward/hardtanh_backward do.
    piecewise: bool = False

    @property
    def param_names(self) -> tuple:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def coerce_params(self, values: dict) -> tuple:
        """Return the parameter values in catalogue order, checked."""
        if values == self._default_values[0]:
            return self._default_values[1]  # the defaults, checked once
        return tuple(p.coerce(self.name, values[p.name]) for p in self.params)

    def __post_init__(self):
        defaults = {p.name: p.default for p in self.params}
        checked = (tuple(p.coerce(self.name, p.default) for p in self.params)
                   if all(p.default is not REQUIRED for p in self.params) else None)
        object.__setattr__(self, "_default_values", (defaults if checked is not None else
                                                     object(), checked))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

OPS: dict[str, OpSpec] = {}


def _add(spec: OpSpec) -> None:
    OPS[spec.name] = spec


# ---- elementwise -------------------------------------------------------------------------
_add(OpSpec("sigmoid", ELEMENTWISE, "1/(1+e^-x)", "y(1-y)", "1/(1+np.exp(-x))",
            saved="y", domain=(-105.0, 40.0)))
_add(OpSpec("tanh", ELEMENTWISE, "tanh x", "1-y^2", "np.tanh(x)", saved="y",
            domain=(-20.0, 20.0)))
_add(OpSpec("relu", ELEMENTWISE, "max(x,0)", "y>0", "np.maximum(x, 0)", saved="y",
            domain=(-4.0, 4.0), piecewise=True))
_add(OpSpec("leaky_relu", ELEMENTWISE, "x>0 ? x : s x", "x>0 ? 1 : s",
            "np.where(x > 0, x, 0.01 * x)",
            params=(Param("negative_slope", 0.01, doc="slope s for x < 0"),),
            domain=(-4.0, 4.0), piecewise=True))
_add(OpSpec("relu6", ELEMENTWISE, "min(max(x,0),6)", "0<x<6", "np.clip(x, 0, 6)",
            domain=(-8.0, 8.0), piecewise=True))
_add(OpSpec("hardtanh", ELEMENTWISE, "clamp(x, min_val, max_val)", "min_val<x<max_val",
            "np.clip(x, -1, 1)",
            params=(Param("min_val", -1.0), Param("max_val", 1.0)), domain=(-3.0, 3.0), piecewise=True))
_add(OpSpec("elu", ELEMENTWISE, "x>0 ? x : a(e^x-1)", "x>0 ? 1 : a e^x",
            "np.where(x > 0, x, np.exp(x) - 1)",
            params=(Param("alpha", 1.0),), domain=(-40.0, 4.0)))
_add(OpSpec("selu", ELEMENTWISE, "l*elu(x, a0)", "l*(x>0 ? 1 : a0 e^x)",
            f"{_SELU_SCALE} * np.where(x > 0, x, {_SELU_ALPHA} * (np.exp(x) - 1))",
            domain=(-40.0, 4.0)))
_add(OpSpec("celu", ELEMENTWISE, "max(0,x)+min(0,a(e^(x/a)-1))", "x>0 ? 1 : e^(x/a)",
            "np.maximum(x, 0) + np.minimum(0, np.exp(x) - 1)",
            params=(Param("alpha", 1.0, nonzero=True),), domain=(-40.0, 4.0)))
_add(OpSpec("silu", ELEMENTWISE, "x sigmoid(x)", "s(1+x(1-s))", "x / (1 + np.exp(-x))",
            domain=(-100.0, 30.0)))
_add(OpSpec("swish", ELEMENTWISE, "x sigmoid(b x)", "s(1+b x(1-s)), s = sigmoid(b x)",
            "x / (1 + np.exp(-x))",
            params=(Param("beta", 1.0),), domain=(-100.0, 30.0)))
_add(OpSpec("mish", ELEMENTWISE, "x tanh(softplus(x))", "t + x s (1-t^2)",
            "x * np.tanh(np.log1p(np.exp(x)))", domain=(-100.0, 30.0)))
_add(OpSpec("gelu", ELEMENTWISE, "x Phi(x) (or the tanh form)", "Phi(x) + x phi(x)",
            "x * 0.5 * (1 + scipy.special.erf(x / np.sqrt(2)))",
            params=(Param("approximate", "none", choices=("none", "tanh")),),
            domain=(-40.0, 10.0)))
_add(OpSpec("softplus", ELEMENTWISE, "b x > thr ? x : log1p(e^(b x))/b",
            "b x > thr ? 1 : sigmoid(b x)", "np.log1p(np.exp(x))",
            params=(Param("beta", 1.0, nonzero=True), Param("threshold", 20.0)),
            domain=(-105.0, 25.0)))
_add(OpSpec("logsigmoid", ELEMENTWISE, "-softplus(-x)", "sigmoid(-x)",
            "-np.log1p(np.exp(-x))", domain=(-40.0, 105.0)))
_add(OpSpec("hardsigmoid", ELEMENTWISE, "relu6(x+3)/6", "-3<x<3 ? 1/6 : 0",
            "np.clip(x + 3, 0, 6) / 6", domain=(-5.0, 5.0), piecewise=True))
_add(OpSpec("hardswish", ELEMENTWISE, "x relu6(x+3)/6",
            "x<=-3: 0; x<3: x/3+1/2; else 1", "x * np.clip(x + 3, 0, 6) / 6",
            domain=(-5.0, 5.0), piecewise=True))
_add(OpSpec("softsign", ELEMENTWISE, "x/(1+|x|)", "1/(1+|x|)^2", "x / (1 + np.abs(x))",
            domain=(-1e3, 1e3)))

# ---- along an axis -----------------------------------------------------------------------
_add(OpSpec("softmax", AXIS, "e^x / sum(e^x) along axis", "y(g - sum(g y))",
            "e = np.exp(x - x.max(axis, keepdims=True)); e / e.sum(axis, keepdims=True)",
            params=(Param("axis", -1, kind="int"),), saved="y", domain=(-30.0, 30.0)))
_add(OpSpec("log_softmax", AXIS, "x - logsumexp(x) along axis", "g - e^y sum(g)",
            "x - scipy.special.logsumexp(x, axis, keepdims=True)",
            params=(Param("axis", -1, kind="int"),), saved="y", domain=(-30.0, 30.0)))
_add(OpSpec("maxout", AXIS, "max over groups of `pieces` consecutive entries",
            "1 at the first maximum of each group",
            "x.reshape(..., n // pieces, pieces).max(-1)",
            params=(Param("pieces", REQUIRED, kind="int"), Param("axis", -1, kind="int")),
            domain=(-10.0, 10.0)))

# ---- fused -------------------------------------------------------------------------------
_add(OpSpec("bias_act", FUSED, "act(x + bias), bias along the last axis",
            "(grad_x, grad_bias = grad_x summed over leading axes)",
            "act(x + bias)", domain=(-10.0, 10.0)))
_add(OpSpec("softmax_cross_entropy", FUSED,
            "loss_i = logsumexp(z_i) - z_i[label_i]; grad = softmax(z) - onehot",
            "", "-log_softmax(z)[np.arange(n), labels]", domain=(-30.0, 30.0)))

ELEMENTWISE_OPS = tuple(n for n, s in OPS.items() if s.family == ELEMENTWISE)
AXIS_OPS = tuple(n for n, s in OPS.items() if s.family == AXIS)
FUSED_OPS = tuple(n for n, s in OPS.items() if s.family == FUSED)

SELU_ALPHA = _SELU_ALPHA
SELU_SCALE = _SELU_SCALE

# Parameter values the tests and benchmarks use besides the defaults, to reach the
# branches the defaults leave alone (beta != 1 in softplus, a wide hardtanh, ...).
EXTRA_PARAMS: dict[str, tuple] = {
    "leaky_relu": ({"negative_slope": 0.2},),
    "hardtanh": ({"min_val": -2.0, "max_val": 3.5},),
    "elu": ({"alpha": 0.5},),
    "celu": ({"alpha": 2.0},),
    "swish": ({"beta": 1.702},),
    "gelu": ({"approximate": "tanh"},),
    "softplus": ({"beta": 2.0, "threshold": 10.0},),
}


def markdown_table() -> str:
    """The README's API table, generated from the catalogue (a test keeps them equal)."""

    def cell(text):
        return text.replace("|", "\\|")

    rows = ["| op | params (defaults) | backward reads | forward | d/dx |",
            "|---|---|---|---|---|"]
    for name, spec in OPS.items():
        if spec.family == FUSED:
            continue
        params = ", ".join(p.name if p.default is REQUIRED else f"{p.name}={p.default!r}"
                           for p in spec.params) or "-"
        rows.append(f"| `{name}` | {params} | {spec.saved} | {cell(spec.formula)} "
                    f"| {cell(spec.derivative)} |")
    return "\n".join(rows)
