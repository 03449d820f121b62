"""Weights in and out: PyTorch modules and scikit-learn's MLPs.

``model.to_torch()`` gives the ``torch.nn.Sequential`` that computes what the fastmlp model
computes (its outputs: logits for classification, as ``nn.CrossEntropyLoss`` expects), with
the weights copied; for a graph Model a ``GraphModule`` whose ``forward(*inputs)`` takes the
model's inputs in order and runs its nodes in topological order (a shared layer is one
module called at each use); ``fastmlp.from_torch(module, loss=...)`` goes the other way
(from an ``nn.Sequential``);
``fastmlp.from_sklearn(fitted)`` turns a fitted ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` into a fastmlp model with the same predictions.

The layer correspondence (weights are ``(out, in)`` on both sides, as in PyTorch)::

    Dense(n_in, n_out, f)        <->  nn.Linear(n_in, n_out), then f's module
    BatchNorm(n, f, momentum, eps) <-> nn.BatchNorm1d(n, eps, momentum), then f's module
    Dropout(p)                   <->  nn.Dropout(p)
    relu, leaky_relu, elu, sigmoid, tanh, gelu, softplus
                                 <->  nn.ReLU, nn.LeakyReLU(0.01), nn.ELU(1.0), nn.Sigmoid,
                                      nn.Tanh, nn.GELU() (exact), nn.Softplus(1, 20)

(``nn.Softplus`` returns x itself above its threshold 20, where log(1 + e^x) differs from x
by less than 2.1e-9.) torch and scikit-learn are optional: each is imported only inside the
function that needs it.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, Optional

import numpy as np

from ._typing import Device, OptimizerLike
from ._validation import check_dtype
from .model import Sequential

#: fastmlp activation -> torch.nn module class name
_TORCH_ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "elu": "ELU",
                      "sigmoid": "Sigmoid", "tanh": "Tanh", "gelu": "GELU", "softplus": "Softplus"}
#: scikit-learn activation -> fastmlp activation
_SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                        "relu": "relu"}


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch / from_torch need PyTorch: pip install torch") from None
    return torch


def _torch_dtype(torch, dtype):
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


# ----------------------------------------------------------------------------------------
# fastmlp -> torch


def _torch_activation(nn, name):
    from .kernels.codes import ELU_ALPHA, LEAKY_SLOPE

    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "elu":
        return nn.ELU(ELU_ALPHA)
    return getattr(nn, _TORCH_ACTIVATIONS[name])()


def _torch_layer(nn, torch, layer, w, dtype):
    """The torch modules of one fastmlp layer (its activation last), weights copied."""
    from .layers import Activation, Add, BatchNorm, Concatenate, Dense, Dropout
    from .onnx_io import layer_activation

    if isinstance(layer, (Add, Concatenate)):
        return []  # steps of the GraphModule's forward, no modules
    if isinstance(layer, Dense):
        module = nn.Linear(layer.in_features, layer.out_features, bias="b" in w, dtype=dtype)
        module.weight.copy_(torch.from_numpy(w["W"]))
        if "b" in w:  # Dense(use_bias=False): nn.Linear(bias=False)
            module.bias.copy_(torch.from_numpy(w["b"]))
        modules = [module]
    elif isinstance(layer, BatchNorm):
        module = nn.BatchNorm1d(layer.features, eps=layer.eps, momentum=layer.momentum, dtype=dtype)
        for name, value in zip(("weight", "bias", "running_mean", "running_var"),
                               ("gamma", "beta", "running_mean", "running_var")):
            getattr(module, name).copy_(torch.from_numpy(w[value]))
        modules = [module]
    elif isinstance(layer, Dropout):
        modules = [nn.Dropout(layer.p)]
    elif isinstance(layer, Activation):
        modules = []
    else:
        raise TypeError(f"to_torch: no PyTorch form for the layer {layer!r}")
    if layer_activation(layer) != "identity":  # a fused output activation is the loss's
        modules.append(_torch_activation(nn, layer_activation(layer)))
    return modules


def to_torch(model):
    """A ``torch.nn.Module`` computing `model`'s outputs, with its weights copied (in the
    model's dtype, on the CPU): an ``nn.Sequential`` for Sequential / MLP models, a
    ``GraphModule`` for graph Models. Its output is the model's last layer's: logits for
    the classification losses (apply ``softmax`` / ``sigmoid`` for probabilities)."""
    from .onnx_io import layer_weights

    torch = _torch()
    nn = torch.nn
    dtype = _torch_dtype(torch, model.dtype)
    with torch.no_grad():
        per_layer = [_torch_layer(nn, torch, layer, w, dtype)
                     for layer, w in zip(model.layers, layer_weights(model))]
    if not hasattr(model, "_graph"):
        return nn.Sequential(*[m for modules in per_layer for m in modules])
    return _graph_module(torch, model, per_layer)


def _graph_module(torch, model, per_layer):
    """The GraphModule of a graph Model: one module per fastmlp layer (a shared layer's is
    called at each of its uses), and the steps of its forward in topological order."""
    from .layers import Add, Concatenate

    nn = torch.nn
    g = model._graph
    where, modules = {}, []  # id(layer) -> index in modules
    for layer, m in zip(model.layers, per_layer):
        if not isinstance(layer, (Add, Concatenate)):
            where[id(layer)] = len(modules)
            modules.append(m[0] if len(m) == 1 else nn.Sequential(*m) if m else nn.Identity())
    steps = []
    for i in range(len(g.inputs), len(g.nodes)):
        layer = g.nodes[i].layer
        kind = "add" if isinstance(layer, Add) else "cat" if isinstance(layer, Concatenate) else "layer"
        steps.append((kind, where.get(id(layer)), tuple(g.ins[i])))
    return _graph_module_class(torch)(modules, steps, list(model._input_names), g.out)


_GRAPH_MODULE = None


def _graph_module_class(torch):
    """torch.nn.Module subclass for graph Models, made on first use (torch stays optional)."""
    global _GRAPH_MODULE, GraphModule
    if _GRAPH_MODULE is not None:
        return _GRAPH_MODULE

    class GraphModule(torch.nn.Module):
        """A fastmlp graph Model as a torch module: ``forward(*inputs)`` takes the model's
        inputs as positional arguments (in its input order) and runs ``steps``, one per
        node after the inputs, in topological order: ("layer", l, (j,)) applies
        ``layers[l]`` to node j's output, ("add", _, js) sums, ("cat", _, js) concatenates
        the features. Node i's output is ``A[i]``; the inputs are A[0], A[1], ..."""

        def __init__(self, layers, steps, input_names, output):
            super().__init__()
            self.layers = torch.nn.ModuleList(layers)
            self.steps, self.input_names, self.output = list(steps), list(input_names), output

        def forward(self, *inputs):
            if len(inputs) != len(self.input_names):
                raise TypeError(f"GraphModule.forward takes {len(self.input_names)} inputs "
                                f"({', '.join(self.input_names)}); got {len(inputs)}")
            A = list(inputs)
            for kind, l, ins in self.steps:
                if kind == "add":
                    out = A[ins[0]]
                    for j in ins[1:]:
                        out = out + A[j]
                elif kind == "cat":
                    out = torch.cat([A[j] for j in ins], dim=1)
                else:
                    out = self.layers[l](A[ins[0]])
                A.append(out)
            return A[self.output]

        def extra_repr(self):
            return f"inputs={self.input_names}, steps={len(self.steps)}"

    GraphModule.__module__ = __name__
    _GRAPH_MODULE = GraphModule  # module-level name: instances pickle
    return GraphModule


# ----------------------------------------------------------------------------------------
# torch -> fastmlp


def _activation_of(nn, module, where):
    """The fastmlp activation name of a torch activation module, or None if it is none."""
    from .kernels.codes import ELU_ALPHA, LEAKY_SLOPE

    checks = [
        (nn.ReLU, "relu", None),
        (nn.LeakyReLU, "leaky_relu", lambda m: m.negative_slope == LEAKY_SLOPE,
         f"negative_slope={LEAKY_SLOPE}"),
        (nn.ELU, "elu", lambda m: m.alpha == ELU_ALPHA, f"alpha={ELU_ALPHA}"),
        (nn.Sigmoid, "sigmoid", None),
        (nn.Tanh, "tanh", None),
        (nn.GELU, "gelu", lambda m: m.approximate == "none", "approximate='none'"),
        (nn.Softplus, "softplus", lambda m: m.beta == 1, "beta=1"),
        (nn.Identity, "identity", None),
    ]
    for cls, name, *check in checks:
        if type(module) is cls:
            if check[0] is not None and not check[0](module):
                raise ValueError(f"from_torch: {where} is {module!r}; fastmlp's {name} has "
                                 f"{check[1]}")
            return name
    return None


def _flatten(nn, module, prefix="module"):
    """(where, child) for every leaf of nested nn.Sequential containers, in order."""
    if type(module) is nn.Sequential:
        out = []
        for name, child in module.named_children():
            out += _flatten(nn, child, f"{prefix}[{name}]" if name.isdigit() else f"{prefix}.{name}")
        return out
    return [(prefix, module)]


def from_torch(module: Any,
               loss: Literal["cross_entropy", "binary_cross_entropy", "mse"] = "cross_entropy",
               optimizer: Optional[OptimizerLike] = None, device: Device = "auto",
               dtype: Optional[Literal["float32", "float64"]] = None,
               seed: Optional[int] = None) -> Sequential:
    """A fastmlp Sequential model from a ``torch.nn.Sequential`` of Linear, BatchNorm1d,
    Dropout and activation modules (ReLU, LeakyReLU(0.01), ELU(1), Sigmoid, Tanh,
    GELU(), Softplus(beta=1), Identity; nested Sequentials are flattened), weights copied.

    loss: "cross_entropy" (the module outputs logits), "binary_cross_entropy" or "mse". A
    final nn.Softmax (cross_entropy) or nn.Sigmoid (binary_cross_entropy) is taken as the
    loss's and dropped. dtype: None (the module's parameters': float32 or float64),
    "float32" or "float64". Any other module raises a ValueError naming it.
    """
    torch = _torch()
    nn = torch.nn
    from .layers import BatchNorm, Dense, Dropout
    from .model import LOSSES, Sequential

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Sequential; got {type(module).__name__}")
    if type(module) is not nn.Sequential:
        raise ValueError(f"module must be a torch.nn.Sequential of Linear / BatchNorm1d / Dropout "
                         f"/ activation modules; got {type(module).__name__} (from_torch builds "
                         "Sequential models only: for a graph, export it to ONNX and use "
                         "fastmlp.from_onnx)")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}; got {loss!r}")
    leaves = _flatten(nn, module)
    if leaves and loss in ("cross_entropy", "binary_cross_entropy"):
        where, last = leaves[-1]
        head = nn.Softmax if loss == "cross_entropy" else nn.Sigmoid
        if type(last) is head:
            if head is nn.Softmax and last.dim not in (1, -1):
                raise ValueError(f"from_torch: {where} is {last!r}; a softmax output must be "
                                 "over the features (dim=1)")
            leaves = leaves[:-1]
    layers, weights, dtypes = [], [], set()
    for where, m in leaves:
        if isinstance(m, nn.Linear) and type(m) is nn.Linear:
            layers.append(Dense(m.in_features, m.out_features))
            W = m.weight.detach().cpu().numpy()
            b = (m.bias.detach().cpu().numpy() if m.bias is not None
                 else np.zeros(m.out_features, W.dtype))
            weights += [W, b]
            dtypes.add(W.dtype)
        elif type(m) is nn.BatchNorm1d:
            if not (m.affine and m.track_running_stats) or m.momentum is None:
                raise ValueError(f"from_torch: {where} is {m!r}; fastmlp's BatchNorm needs "
                                 "affine=True, track_running_stats=True and a momentum (not None)")
            layers.append(BatchNorm(m.num_features, momentum=m.momentum, eps=m.eps))
            weights += [t.detach().cpu().numpy() for t in (m.weight, m.bias, m.running_mean,
                                                           m.running_var)]
            dtypes.add(weights[-1].dtype)
        elif type(m) is nn.Dropout:
            layers.append(Dropout(m.p))
        else:
            name = _activation_of(nn, m, where)
            if name is None:
                raise ValueError(
                    f"from_torch: {where} is {type(m).__name__}, which fastmlp cannot express "
                    "(supported: Linear, BatchNorm1d, Dropout, ReLU, LeakyReLU, ELU, Sigmoid, "
                    "Tanh, GELU, Softplus, Identity, and a final Softmax / Sigmoid)")
            if name == "identity":
                continue
            last = layers[-1] if layers else None
            if not isinstance(last, (Dense, BatchNorm)) or last.activation != "identity":
                raise ValueError(
                    f"from_torch: {where} ({type(m).__name__}) must follow a Linear or "
                    "BatchNorm1d: fastmlp layers carry their activation")
            last.activation = name
    if not layers:
        raise ValueError("from_torch: the module holds no Linear or BatchNorm1d layer")
    if dtype is None:
        known = {np.dtype(d) for d in dtypes}
        if len(known) > 1:
            raise ValueError(f"from_torch: the module mixes parameter dtypes {sorted(map(str, known))}; "
                             "give dtype='float32' or 'float64'")
        dtype = known.pop().name if known else "float32"
        if dtype not in ("float32", "float64"):
            raise ValueError(f"from_torch: the module's parameters are {dtype}; fastmlp computes "
                             "in float32 or float64 (give dtype=)")
    dtype = check_dtype(dtype).name
    model = Sequential(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype, seed=seed)
    model.set_weights(weights)
    return model


# ----------------------------------------------------------------------------------------
# scikit-learn -> fastmlp


def from_sklearn(fitted: Any, optimizer: Optional[OptimizerLike] = None, device: Device = "auto",
                 dtype: Optional[Literal["float32", "float64"]] = None,
                 seed: Optional[int] = None) -> Sequential:
    """A fastmlp Sequential model from a fitted ``sklearn.neural_network.MLPClassifier`` or
    ``MLPRegressor``, with the same predictions.

    The hidden layers keep their activation (logistic is sigmoid); the output is
    softmax + cross_entropy for multiclass problems, sigmoid + binary_cross_entropy for
    binary and multilabel ones, identity + mse for regression. ``model.predict_proba(X)``
    is the classifier's ``predict_proba`` (for a binary problem: its second column),
    ``fitted.classes_[model.predict(X)]`` its ``predict`` (single-label problems), and a
    regressor's ``predict`` is ``model.predict(X)``.

    optimizer: None gives the estimator's solver and learning_rate_init (``sgd``:
    SGD with its momentum and nesterovs_momentum; ``adam``: Adam with its betas and
    epsilon; ``lbfgs``: Adam with learning_rate_init). dtype: None (the weights': float32
    or float64), "float32" or "float64".
    """
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError:
        raise ImportError("from_sklearn needs scikit-learn: pip install 'fastmlp[sklearn]'") from None
    from .layers import Dense
    from .model import Sequential
    from .optim import SGD, Adam

    if not isinstance(fitted, (MLPClassifier, MLPRegressor)):
        raise TypeError("fitted must be a fitted sklearn.neural_network.MLPClassifier or "
                        f"MLPRegressor; got {type(fitted).__name__}")
    if not hasattr(fitted, "coefs_"):
        raise ValueError(f"fitted: this {type(fitted).__name__} is not fitted yet; call fit first")
    hidden = _SKLEARN_ACTIVATIONS.get(fitted.activation)
    if hidden is None:
        raise ValueError(f"fitted.activation is {fitted.activation!r}; expected one of "
                         f"{sorted(_SKLEARN_ACTIVATIONS)}")
    loss = {"softmax": "cross_entropy", "logistic": "binary_cross_entropy",
            "identity": "mse"}.get(fitted.out_activation_)
    if loss is None:
        raise ValueError(f"fitted.out_activation_ is {fitted.out_activation_!r}; expected "
                         "'softmax', 'logistic' or 'identity'")
    coefs, intercepts = list(fitted.coefs_), list(fitted.intercepts_)
    layers = [Dense(W.shape[0], W.shape[1], hidden if l < len(coefs) - 1 else "identity")
              for l, W in enumerate(coefs)]
    weights = []
    for W, b in zip(coefs, intercepts):
        weights += [np.ascontiguousarray(W.T), np.asarray(b)]
    if dtype is None:
        dtype = np.result_type(*weights).name
    dtype = check_dtype(dtype).name
    if optimizer is None:
        lr = float(fitted.learning_rate_init)
        if fitted.solver == "sgd":
            momentum = float(fitted.momentum)
            optimizer = SGD(lr=lr, momentum=momentum,
                            nesterov=bool(fitted.nesterovs_momentum and momentum > 0))
        else:
            optimizer = Adam(lr=lr, beta1=float(fitted.beta_1), beta2=float(fitted.beta_2),
                             eps=float(fitted.epsilon), decoupled=False)
    if seed is None and isinstance(fitted.random_state, numbers.Integral):
        seed = int(fitted.random_state)
    model = Sequential(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype, seed=seed)
    model.set_weights(weights)
    return model


__all__ = ["to_torch", "from_torch", "from_sklearn"]
