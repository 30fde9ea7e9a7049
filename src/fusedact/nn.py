"""Small NumPy layers for hand-written training loops, on fusedact's fused kernels.

Each layer has ``forward(x)``, which keeps what its backward needs, and ``backward(grad)``,
which returns the gradient with respect to its input and stores the gradients of its
parameters (``layer.grads``, in the order of ``layer.params``). What is kept follows the
catalogue: an activation whose backward reads y keeps y, the others keep x; nothing else is
copied.

    net = nn.Sequential([nn.Linear(64, 128, act="relu", rng=rng), nn.Linear(128, 10, rng=rng)])
    loss_fn = nn.SoftmaxCrossEntropy()
    opt = nn.SGD(net.params, net.grads, lr=0.1, momentum=0.9)
    for xb, yb in batches:
        loss = loss_fn.forward(net.forward(xb), yb)
        net.backward(loss_fn.backward())
        opt.step()

``Linear(..., act=name)`` runs ``x @ W`` and then one fused ``bias_act`` pass (bias and
activation together); its backward is one ``bias_act_backward`` pass, which also sums the bias
gradient, then the two matrix products. Every call takes the layer's ``backend`` (None:
fusedact's usual choice).
"""

from __future__ import annotations

import numpy as np

import fusedact as _fa
from ._catalogue import ELEMENTWISE, OPS


class Layer:
    params: list
    grads: list

    def __init__(self):
        self.params, self.grads = [], []

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)


class Activation(Layer):
    """One elementwise op as a layer: ``Activation("leaky_relu", negative_slope=0.2)``."""

    def __init__(self, name, backend=None, **params):
        super().__init__()
        spec = OPS.get(name)
        if spec is None or spec.family != ELEMENTWISE:
            raise ValueError(f"Activation: {name!r} is not an elementwise op; expected one of "
                             f"{', '.join(n for n, s in OPS.items() if s.family == ELEMENTWISE)}")
        unknown = set(params) - set(spec.param_names)
        if unknown:
            raise TypeError(f"Activation({name!r}): unknown parameter(s) {sorted(unknown)}; "
                            f"its parameters are {list(spec.param_names)}")
        self.name, self.op_params, self.backend = name, params, backend
        self._fwd = getattr(_fa, name)
        self._bwd = getattr(_fa, f"{name}_backward")
        self._keeps_y = spec.saved == "y"
        self._saved = None

    def forward(self, x):
        y = self._fwd(x, **self.op_params, backend=self.backend)
        self._saved = y if self._keeps_y else x
        return y

    def backward(self, grad):
        if self._saved is None:
            raise RuntimeError(f"{self!r}: backward() before forward()")
        return self._bwd(grad, self._saved, **self.op_params, backend=self.backend)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.op_params.items())
        return f"Activation({self.name!r}{extra})"


def _activation_class(name):
    spec = OPS[name]
    class_name = "".join(p.capitalize() for p in name.split("_"))

    def __init__(self, backend=None, **params):
        Activation.__init__(self, name, backend=backend, **params)

    doc = f"The {name} activation as a layer ({spec.formula}); parameters as fusedact.{name}."
    return type(class_name, (Activation,), {"__init__": __init__, "__doc__": doc,
                                            "__module__": __name__})


# Sigmoid, Tanh, Relu, LeakyRelu, Gelu, Silu, Mish, ... one per elementwise op.
for _name, _spec in OPS.items():
    if _spec.family == ELEMENTWISE:
        _cls = _activation_class(_name)
        globals()[_cls.__name__] = _cls
del _name, _spec, _cls


class Linear(Layer):
    """y = act(x @ W + b); W is (in_features, out_features), Glorot-uniform initialised
    (He-uniform for the relu family), b zeros. ``act=None`` is the plain affine map."""

    _HE = {"relu", "leaky_relu", "relu6", "elu", "selu", "celu", "gelu", "silu", "swish",
           "mish", "hardswish"}

    def __init__(self, in_features, out_features, act=None, *, rng=None, dtype=np.float64,
                 backend=None, **act_params):
        super().__init__()
        if act is not None:
            spec = OPS.get(act)
            if spec is None or spec.family != ELEMENTWISE:
                raise ValueError(f"Linear: act={act!r} is not an elementwise op")
        rng = np.random.default_rng(rng)
        gain = 6.0 if act in self._HE else 6.0 * in_features / (in_features + out_features)
        limit = np.sqrt(gain / in_features)
        self.W = rng.uniform(-limit, limit, (in_features, out_features)).astype(dtype)
        self.b = np.zeros(out_features, dtype)
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        self.params, self.grads = [self.W, self.b], [self.dW, self.db]
        self.act, self.act_params, self.backend = act or "identity", act_params, backend
        self._x = self._h = None

    def forward(self, x):
        self._x = x
        self._h = x @ self.W  # bias_act_backward takes the pre-bias product
        return _fa.bias_act(self._h, self.b, self.act, backend=self.backend, **self.act_params)

    def backward(self, grad):
        if self._x is None:
            raise RuntimeError("Linear: backward() before forward()")
        g_pre, g_bias = _fa.bias_act_backward(grad, self._h, self.b, self.act,
                                              backend=self.backend, **self.act_params)
        # The activation's gradient and the bias sum came out of one pass; now the products.
        self.db[...] = g_bias
        self.dW[...] = self._x.reshape(-1, self._x.shape[-1]).T @ g_pre.reshape(-1, g_pre.shape[-1])
        return g_pre @ self.W.T

    def __repr__(self):
        return f"Linear({self.W.shape[0]}, {self.W.shape[1]}, act={self.act!r})"


class Maxout(Layer):
    """Max over groups of `pieces` consecutive features (axis -1 by default)."""

    def __init__(self, pieces, axis=-1, backend=None):
        super().__init__()
        self.pieces, self.axis, self.backend = pieces, axis, backend
        self._x = None

    def forward(self, x):
        self._x = x
        return _fa.maxout(x, self.pieces, axis=self.axis, backend=self.backend)

    def backward(self, grad):
        return _fa.maxout_backward(grad, self._x, self.pieces, axis=self.axis,
                                   backend=self.backend)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of logits against integer labels, on the fused op: forward returns
    the mean loss (a float); backward returns d(mean loss)/d(logits), kept from the forward
    pass (softmax - onehot, divided by the number of counted rows)."""

    def __init__(self, ignore_index=-100, backend=None):
        self.ignore_index, self.backend = ignore_index, backend
        self._grad = None

    def forward(self, logits, labels):
        loss, grad = _fa.softmax_cross_entropy(logits, labels, ignore_index=self.ignore_index,
                                               backend=self.backend)
        counted = max(int(np.count_nonzero(np.asarray(labels) != self.ignore_index)), 1)
        grad /= counted
        self._grad = grad
        return float(loss.sum() / counted)

    def backward(self):
        if self._grad is None:
            raise RuntimeError("SoftmaxCrossEntropy: backward() before forward()")
        return self._grad

    __call__ = forward


class Sequential(Layer):
    def __init__(self, layers):
        super().__init__()
        self.layers = list(layers)
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def __repr__(self):
        return "Sequential([" + ", ".join(map(repr, self.layers)) + "])"


class SGD:
    """Plain SGD, or heavy-ball momentum (PyTorch's form: v = m v + g; p -= lr v), with
    optional L2 weight decay added to the gradient. Updates the parameter arrays in place."""

    def __init__(self, params, grads, lr=0.01, momentum=0.0, weight_decay=0.0):
        if len(params) != len(grads):
            raise ValueError("SGD: params and grads must pair up")
        if lr <= 0:
            raise ValueError(f"SGD: lr must be positive, got {lr}")
        self.params, self.grads = list(params), list(grads)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity = [np.zeros_like(p) for p in self.params] if momentum else None

    def step(self):
        for i, (p, g) in enumerate(zip(self.params, self.grads)):
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self._velocity is not None:
                v = self._velocity[i]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g
