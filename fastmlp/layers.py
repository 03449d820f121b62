"""Layers: each one's forward and backward side by side, as calls of the backend's kernels.

A layer maps A_in (B, n_in) to A_out (B, n_out). ``forward(k, A_in, A_out, Z, s, training)``
writes A_out (and Z, the pre-activation, for the activations whose derivative needs it);
``backward(k, delta, A_in, D_prev, act_prev, delta_prev, s)`` takes delta = d loss / d (this
layer's pre-activation), writes the layer's parameter gradients and, unless this is the first
layer, ``delta_prev = f'_prev(D_prev) * (d loss / d A_in)``, the delta of the layer before,
in the same pass. ``s`` holds the layer's parameters, gradients, state and scratch buffers.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_float, check_int
from .kernels.codes import (ACTIVATIONS, IDENTITY, NEEDS_PREACTIVATION, activation_code,
                            activation_name)
from .kernels.stack import dense_backward, dense_backward_sgd, dense_forward

#: output activations a model fuses into its loss (the model computes logits; predict_proba
#: applies them): softmax with cross_entropy, sigmoid with binary_cross_entropy
FUSED_OUTPUTS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}
#: losses over a softmax of the outputs (fused): classification, predict_proba is the softmax
SOFTMAX_LOSSES = ("cross_entropy", "kl_divergence")

_names_lock = threading.Lock()
#: counts the changes of any layer's ``trainable`` (models keep their trainable ranges until
#: it moves, so a step allocates nothing to check them)
_trainable_changes = 0
_name_counts = {}


def _unique_name(base):
    """Keras' automatic names: dense, dense_1, dense_2, ... (one counter per base)."""
    with _names_lock:
        n = _name_counts.get(base, 0)
        _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _same_width(layer, width):
    """A width-preserving layer called again (shared) must see the same width."""
    seen = getattr(layer, "_width_seen", None)
    if seen is not None and seen != width:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__} on width {seen}) was "
                         f"called on a node of width {width}")
    layer._width_seen = width


def check_activation(activation, name="activation", allow_softmax=True):
    """An activation's name as the table spells it (case does not matter; None and Keras'
    "linear" are "identity"); 'softmax' too where a model may fuse it into its loss."""
    if activation is None:
        return "identity"
    if isinstance(activation, str) and activation.strip().lower() == "softmax":
        if allow_softmax:
            return "softmax"
        raise ValueError(f"{name}='softmax' is for an output layer only (fused into the "
                         f"cross_entropy loss); here {name} must be one of {sorted(ACTIVATIONS)}")
    return activation_name(activation, name)


# ----------------------------------------------------------------------------------------
# how much memory a model's weights need, checked before any of it is allocated

#: the bound where the operating system does not say how much physical memory there is
FALLBACK_MEMORY_BYTES = 1 << 40


def memory_bound():
    """The bytes a model's weights may take at most: this machine's physical memory
    (SC_PHYS_PAGES x SC_PAGE_SIZE), or FALLBACK_MEMORY_BYTES where the system cannot say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_BYTES
    if pages <= 0 or page_size <= 0:
        return FALLBACK_MEMORY_BYTES
    return pages * page_size


def _bytes_text(n):
    """A byte count as people read it: 3136000000000000 bytes (2.79 PiB)."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            break
        size /= 1024
    return f"{n} bytes ({size:.3g} {unit})"


def describe_layer(layer):
    """A layer's kind and sizes for messages: 'Dense 784 -> 256', 'BatchNorm 256'."""
    kind = type(layer).__name__
    if isinstance(layer, Dense):
        return f"{kind} {layer.in_features} -> {layer.out_features}"
    features = getattr(layer, "features", None)
    return kind if features is None else f"{kind} {features}"


def check_parameter_memory(layers, dtype, bound=None):
    """Raise a ValueError, before anything is allocated, when the weights of `layers`
    (built layers, e.g. a model's; their parameters and state) would not fit in `bound`
    bytes in `dtype` (None: ``memory_bound()``, the machine's physical memory).

    The layers are added up in order; the message names the first one with which the total
    passes the bound (``layers[0] 'hidden1' (Dense 784 -> 1000000000000)``), its parameter
    count, the bytes needed and the bound. Training needs a few times the weights' bytes
    (gradients, optimizer state), so passing this check is necessary, not sufficient.
    Returns the bytes the weights need."""
    itemsize = np.dtype(dtype).itemsize
    limit = ("this machine's physical memory" if bound is None else "the bound") + ", "
    bound = memory_bound() if bound is None else int(bound)
    total = 0
    for i, layer in enumerate(layers):
        shapes = list(layer.param_shapes().values()) + list(layer.state_shapes().values())
        count = sum(_prod(shape) for shape in shapes)
        total += count * itemsize
        if total > bound:
            mine = count * itemsize
            so_far = "" if total == mine else \
                f"; with the layers before it the weights need {_bytes_text(total)}"
            raise ValueError(
                f"layers[{i}] {layer.name!r} ({describe_layer(layer)}) is too large: its {count} "
                f"parameters need {_bytes_text(mine)} in {np.dtype(dtype).name}{so_far}, more "
                f"than {limit}{_bytes_text(bound)}; make the layer smaller")
    return total


def _prod(shape):
    """The number of elements of `shape`, as a Python int (no overflow)."""
    n = 1
    for s in shape:
        n *= int(s)
    return n


class Layer:
    """Base class of the layers: a Sequential model's stack, or nodes of a graph Model.

    Calling a layer on a node (``Dense(64)(x)``, x from ``fastmlp.Input``) connects it in a
    graph and returns its output node; calling it again on another node shares its weights.
    """

    activation = "identity"
    #: set by the model whose output this layer is when it fuses a softmax/sigmoid into the loss
    _fused = False
    #: (model, slot) of the first model built over this layer: its weights are views into
    #: that model's parameters, and every later model on the same device and dtype shares them
    _owner = None
    #: {(device, dtype name): (model, slot)}: where the layer has weights; a model on another
    #: device or dtype cannot share memory, so it starts from copies and keeps its own there
    _placed = None
    #: how many inputs the layer takes (None: two or more, a merge layer)
    n_inputs = 1

    def __call__(self, inputs):
        from .graph import connect

        return connect(self, inputs)

    @property
    def trainable(self) -> bool:
        """False freezes the layer: fit and train_step leave its parameters (and their
        optimizer state) as they are, while gradients still flow through it to the layers
        before. Settable between fits (transfer learning: freeze a trained base, train a
        new head)."""
        return getattr(self, "_trainable", True)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"trainable of layer {self.name!r} must be True or False; got {value!r}")
        self._trainable = bool(value)
        global _trainable_changes
        _trainable_changes += 1  # models recompute which parameters they train

    @property
    def output(self) -> Any:  # a fastmlp.graph.Node
        """The node this layer's call returned (Keras' ``layer.output``): for a sub-model
        ``fastmlp.Model(model.inputs, model.get_layer("hidden2").output)``, which shares the
        weights with `model`."""
        node = getattr(self, "_output_node", None)
        if node is None:
            raise ValueError(f"layer {self.name!r} has no output node yet: call it on a node "
                             "(fastmlp.Input, another layer's output) or take it from a model's "
                             "model.get_layer(name).output")
        if node == "shared":
            raise ValueError(f"layer {self.name!r} is called on several nodes (shared weights), so "
                             "it has several outputs: use the node each call returned")
        return node

    @property
    def name(self) -> str:
        if getattr(self, "_name", None) is None:
            self._name = _unique_name(_snake(type(self).__name__))
        return self._name

    @name.setter
    def name(self, value: Optional[str]) -> None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise TypeError(f"name must be a non-empty string; got {value!r}")
        self._name = value

    def connect(self, widths: Sequence[int]) -> int:
        """Fix the input width(s) when called on node(s); return the output width."""
        return self.build(widths[0])

    def build(self, in_features: int) -> int:
        """Fix the input size; return the output size."""
        raise NotImplementedError

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """{name: shape} of the trainable parameters, in order."""
        return {}

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """{name: shape} of the non-trainable state (e.g. running statistics), in order."""
        return {}

    def scratch_shapes(self, first: bool) -> dict[str, tuple[bool, tuple[int, ...]]]:
        """{name: (per_row, shape)}: buffers a training step needs. per_row ones have a
        leading batch dimension (shape is then the rest)."""
        return {}

    def initialize(self, params: dict[str, np.ndarray], state: dict[str, np.ndarray],
                   rng: np.random.Generator) -> None:
        pass

    def fixed_zeros(self) -> dict[str, tuple[int, ...]]:
        """{name: shape} of parameters the layer does without, which its kernels still take
        as constant zeros (a bias-free Dense: b = 0; its db is computed into a scratch array
        and never used). Not trained, not in get_weights, not saved."""
        return {}

    @property
    def act(self) -> int:
        """The activation code the kernels run: the identity for a fused output activation."""
        if self._fused:
            return IDENTITY
        if self.activation == "softmax":
            raise ValueError(
                f"layer {self.name!r}: activation 'softmax' is only allowed on the output "
                "layer of a model with loss='cross_entropy' (it is fused into the loss)"
            )
        return activation_code(self.activation)

    def get_weights(self) -> list[np.ndarray]:
        """This layer's weights as host copies: its parameters then its state (Dense:
        [W, b], W of shape (out, in); BatchNorm: [gamma, beta, running_mean, running_var])."""
        owner, slot = self._owned()
        return [owner._kernels.to_host(getattr(slot, n)) for n in self._weight_names()]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set this layer's weights from a list in get_weights' layout (shapes checked)."""
        owner, slot = self._owned()
        names = self._weight_names()
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights of layer {self.name!r} must be a list {names}; "
                            f"got {type(weights).__name__}")
        if len(weights) != len(names):
            raise ValueError(f"layer {self.name!r} has {len(names)} weights {names}; got {len(weights)} arrays")
        owner._write_weights([(f"{self.name}.{n}", getattr(slot, n)) for n in names], weights)

    def _weight_names(self):
        return list(self.param_shapes()) + list(self.state_shapes())

    def _owned(self):
        if self._owner is None:
            raise ValueError(
                f"layer {self.name!r} has no weights yet: they are made when a model is built "
                "from it (Sequential([...]) or Model(inputs, outputs))"
            )
        if len(self._placed) > 1 and self._weight_names():
            places = ", ".join(f"{device} ({dtype})" for device, dtype in self._placed)
            raise ValueError(
                f"layer {self.name!r} has a set of weights on each of {places} (models on "
                "different devices or dtypes cannot share one): read or write them through a "
                "model, model.get_weights() / model.set_weights(...)")
        return self._owner

    @property
    def needs_preactivation(self) -> bool:
        return self.act in NEEDS_PREACTIVATION

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """A fully-connected layer: ``A_out = activation(A_in @ W.T + b)``, W of shape (out, in).

    use_bias=False: ``A_out = activation(A_in @ W.T)``, no b parameter (get_weights gives
    [W] for the layer; as ``torch.nn.Linear(bias=False)``). trainable=False freezes it.

    Initialisation: He normal N(0, 2 / fan_in) before relu, leaky_relu, elu, gelu and
    softplus; Glorot uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out)) before the others
    (tanh, sigmoid, identity). Biases start at zero.
    """

    _HE = ("relu", "leaky_relu", "elu", "gelu", "softplus")

    def __init__(self, in_features: Optional[int] = None,
                 out_features: Union[int, str, None] = None,
                 activation: Optional[str] = "identity", *, units: Optional[int] = None,
                 name: Optional[str] = None, use_bias: bool = True,
                 trainable: bool = True) -> None:
        if isinstance(out_features, str):  # Dense(10, "softmax"): Keras' (units, activation)
            out_features, activation = None, out_features
        if units is not None:
            if out_features is not None:
                raise TypeError("give units or out_features, not both")
            out_features = units
        if out_features is None:  # Dense(units): in_features from the node it is called on
            in_features, out_features = None, in_features
            if out_features is None:
                raise TypeError("Dense needs its number of units: Dense(units) or Dense(in_features, out_features)")
        self.in_features = None if in_features is None else check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        self.activation = check_activation(activation)
        self.name = name
        self.trainable = trainable
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"use_bias must be True or False; got {use_bias!r}")
        self.use_bias = bool(use_bias)

    def connect(self, widths: Sequence[int]) -> int:
        if self.in_features is None:
            self.in_features = widths[0]
        elif widths[0] != self.in_features:
            raise ValueError(
                f"layer {self.name!r} (Dense with in_features={self.in_features}) was called on "
                f"a node of width {widths[0]}"
            )
        return self.out_features

    def build(self, in_features: int) -> int:
        return self.out_features

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.in_features is None:
            raise ValueError(f"layer {self.name!r} does not know its input size yet: call it on a "
                             "node or give Dense(in_features, out_features)")
        if not self.use_bias:
            return {"W": (self.out_features, self.in_features)}
        return {"W": (self.out_features, self.in_features), "b": (self.out_features,)}

    def fixed_zeros(self) -> dict[str, tuple[int, ...]]:
        return {} if self.use_bias else {"b": (self.out_features,)}

    def initialize(self, params: dict[str, np.ndarray], state: dict[str, np.ndarray],
                   rng: np.random.Generator) -> None:
        W = params["W"]
        fan_in, fan_out = self.in_features, self.out_features
        if self.activation in self._HE:
            W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-limit, limit, W.shape)
        if "b" in params:
            params["b"][...] = 0

    def forward(self, k: Any, A_in: Any, A_out: Any, Z: Any, s: Any, training: bool) -> None:
        """A_out = f(A_in @ W.T + b); Z, where given, keeps the pre-activation for f'."""
        dense_forward(k, A_in, s.W, s.b, self.act, A_out, Z)

    def backward(self, k: Any, delta: Any, A_in: Any, D_prev: Any, act_prev: int,
                 delta_prev: Any, s: Any, acc_grads: bool = False,
                 acc_delta: bool = False) -> None:
        """acc_grads: add to dW, db (a shared layer's later use); acc_delta: add to
        delta_prev (a producer feeding several consumers) -- both GEMMs with beta = 1."""
        dense_backward(k, delta, A_in, s.W, s.dW, s.db, D_prev, act_prev, delta_prev,
                       acc_grads, acc_delta)

    def backward_sgd(self, k: Any, delta: Any, A_in: Any, D_prev: Any, act_prev: int,
                     delta_prev: Any, s: Any, lr: float, acc_delta: bool = False) -> None:
        """backward, with plain SGD's update of W and b (learning rate lr) folded into it:
        no gradients are written (a graph Model's fit, see Model._plain_sgd_fuses); delta
        is scaled by -lr in place."""
        dense_backward_sgd(k, delta, A_in, s.W, s.b, lr, D_prev, act_prev, delta_prev, acc_delta)

    def get_config(self) -> dict[str, Any]:
        config = {"in_features": self.in_features, "out_features": self.out_features,
                  "activation": self.activation}
        if not self.use_bias:
            config["use_bias"] = False
        if not self.trainable:
            config["trainable"] = False
        return config

    def __repr__(self):
        if self.in_features is None:
            return f"Dense({self.out_features}, activation={self.activation!r})"
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"


class _SameWidth(Layer):
    """A layer whose output is as wide as its input (Dropout, Activation): its width is the
    input's; called again (shared), it must see the same width."""

    def build(self, in_features: int) -> int:
        self.features = in_features
        return in_features

    def connect(self, widths: Sequence[int]) -> int:
        _same_width(self, widths[0])
        return self.build(widths[0])


class Dropout(_SameWidth):
    """Inverted dropout: in training each unit is zeroed with probability p and the others
    scaled by 1 / (1 - p); in predict/evaluate it passes its input through. The masks come
    from the model's seeded generator, so a seed makes them reproducible."""

    def __init__(self, p: float = 0.5, *, name: Optional[str] = None) -> None:
        self.p = check_float(p, "p", low=0, high=1, high_open=True)
        self.features = None
        self.name = name

    def scratch_shapes(self, first: bool) -> dict[str, tuple[bool, tuple[int, ...]]]:
        return {"U": (True, (self.features,))}

    def forward(self, k: Any, A_in: Any, A_out: Any, Z: Any, s: Any, training: bool) -> None:
        if training and self.p > 0:
            if not s.freeze_masks:  # gradcheck keeps one set of masks
                k.fill_uniform(s.U, s.rng)
            k.dropout_forward(A_in, s.U, self.p, A_out)
        else:
            k.activate(A_in, IDENTITY, A_out)

    def backward(self, k: Any, delta: Any, A_in: Any, D_prev: Any, act_prev: int,
                 delta_prev: Any, s: Any, acc_grads: bool = False,
                 acc_delta: bool = False) -> None:
        if delta_prev is None:
            return
        if acc_delta:  # into scratch, then summed into delta_prev
            k.dropout_backward(delta, s.U, self.p, D_prev, IDENTITY, s.acc_delta)
            k.add(delta_prev, s.acc_delta, delta_prev)
        else:
            k.dropout_backward(delta, s.U, self.p, D_prev, act_prev, delta_prev)

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}


class BatchNorm(Layer):
    """Batch normalisation (as torch.nn.BatchNorm1d), optionally followed by an activation:
    ``A_out = activation(gamma * (A_in - mean) / sqrt(var + eps) + beta)``.

    Training uses the batch's statistics and updates the running ones
    (``running = (1 - momentum) * running + momentum * batch``, unbiased variance);
    predict/evaluate use the running statistics. gamma starts at 1, beta at 0. Put it
    between a Dense layer with the identity activation and the nonlinearity:
    ``Dense(784, 256), BatchNorm(256, activation="relu")``.
    """

    def __init__(self, features: Optional[int] = None, activation: Optional[str] = "identity",
                 momentum: float = 0.1, eps: float = 1e-5, *, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        self.features = None if features is None else check_int(features, "features")
        self.activation = check_activation(activation, allow_softmax=False)
        self.momentum = check_float(momentum, "momentum", low=0, high=1)
        self.eps = check_float(eps, "eps", low=0, low_open=True)
        self.name = name
        self.trainable = trainable

    def build(self, in_features: int) -> int:
        if self.features is not None and self.features != in_features:
            raise ValueError(
                f"BatchNorm features must equal the previous layer's outputs ({in_features}); "
                f"got {self.features}"
            )
        self.features = in_features
        return in_features

    def connect(self, widths: Sequence[int]) -> int:
        try:
            return self.build(widths[0])
        except ValueError:
            raise ValueError(f"layer {self.name!r} (BatchNorm of {self.features} features) was "
                             f"called on a node of width {widths[0]}") from None

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"gamma": (self.features,), "beta": (self.features,)}

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"running_mean": (self.features,), "running_var": (self.features,)}

    def scratch_shapes(self, first: bool) -> dict[str, tuple[bool, tuple[int, ...]]]:
        shapes = {"Xhat": (True, (self.features,)), "inv_std": (False, (self.features,))}
        if first:  # d loss / d input, computed by the kernel though nobody reads it
            shapes["dX"] = (True, (self.features,))
        return shapes

    def initialize(self, params: dict[str, np.ndarray], state: dict[str, np.ndarray],
                   rng: np.random.Generator) -> None:
        params["gamma"][...] = 1
        params["beta"][...] = 0
        state["running_mean"][...] = 0
        state["running_var"][...] = 1

    def forward(self, k: Any, A_in: Any, A_out: Any, Z: Any, s: Any, training: bool) -> None:
        out, act = (A_out, self.act) if Z is None else (Z, IDENTITY)
        if training:
            if A_in.shape[0] < 2:
                raise ValueError(
                    "BatchNorm needs at least 2 samples per training batch to compute batch "
                    "statistics; got a batch of 1 (use a larger batch_size)"
                )
            k.batchnorm_forward(A_in, s.gamma, s.beta, s.running_mean, s.running_var,
                                self.momentum, self.eps, act, s.Xhat, s.inv_std, out)
        else:
            k.batchnorm_inference(A_in, s.gamma, s.beta, s.running_mean, s.running_var,
                                  self.eps, act, out)
        if Z is not None:
            k.activate(Z, self.act, A_out)

    def backward(self, k: Any, delta: Any, A_in: Any, D_prev: Any, act_prev: int,
                 delta_prev: Any, s: Any, acc_grads: bool = False,
                 acc_delta: bool = False) -> None:
        if delta_prev is None:
            delta_prev, D_prev, act_prev = s.dX, A_in, IDENTITY
        elif acc_delta:  # into scratch, then summed into delta_prev
            delta_prev, summed, act_prev = s.acc_delta, delta_prev, IDENTITY
        dgamma, dbeta = (s.acc_dgamma, s.acc_dbeta) if acc_grads else (s.dgamma, s.dbeta)
        k.batchnorm_backward(delta, s.Xhat, s.inv_std, s.gamma, dgamma, dbeta,
                             D_prev, act_prev, delta_prev)
        if acc_delta and delta_prev is s.acc_delta:
            k.add(summed, s.acc_delta, summed)
        if acc_grads:  # a shared BatchNorm's later use: gradients summed over uses
            k.add(s.dgamma.reshape(1, -1), dgamma.reshape(1, -1), s.dgamma.reshape(1, -1))
            k.add(s.dbeta.reshape(1, -1), dbeta.reshape(1, -1), s.dbeta.reshape(1, -1))

    def get_config(self) -> dict[str, Any]:
        config = {"features": self.features, "activation": self.activation,
                  "momentum": self.momentum, "eps": self.eps}
        if not self.trainable:
            config["trainable"] = False
        return config


class Activation(_SameWidth):
    """An activation on its own, ``A_out = f(A_in)`` (Keras' ``Activation("relu")``):
    identity, relu, leaky_relu, elu, sigmoid, tanh, gelu, softplus, or softmax as a model's
    output (fused into cross_entropy)."""

    def __init__(self, activation: Optional[str], *, name: Optional[str] = None) -> None:
        self.activation = check_activation(activation)
        self.features = None
        self.name = name

    def forward(self, k: Any, A_in: Any, A_out: Any, Z: Any, s: Any, training: bool) -> None:
        k.activate(A_in, self.act, A_out)
        if Z is not None:  # f' of gelu is taken from its input
            k.activate(A_in, IDENTITY, Z)

    def backward(self, k: Any, delta: Any, A_in: Any, D_prev: Any, act_prev: int,
                 delta_prev: Any, s: Any, acc_grads: bool = False,
                 acc_delta: bool = False) -> None:
        """delta (this layer's, f' applied) is d loss / d A_in: passed on, times f'_prev."""
        if delta_prev is None:
            return
        if acc_delta:
            k.add(delta_prev, delta, delta_prev)
        else:
            k.activate(delta, IDENTITY, delta_prev)
        k.activation_backward(D_prev, act_prev, delta_prev)

    def get_config(self) -> dict[str, Any]:
        return {"activation": self.activation}


class _Merge(Layer):
    """A layer on two or more nodes (Add, Concatenate): no parameters, nothing to configure."""

    n_inputs = None

    def __init__(self, *, name: Optional[str] = None) -> None:
        self.name = name

    def _check_inputs(self, widths):
        if len(widths) < 2:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs two or more "
                             f"inputs; got {len(widths)}")

    def get_config(self) -> dict[str, Any]:
        return {}


class Add(_Merge):
    """The elementwise sum of two or more nodes of one width (a residual connection:
    ``Add()([h, Dense(width)(h)])``). Backward, each input receives the same delta (passed
    on without a copy where the input has no other consumer)."""

    #: the inputs' width, once connected
    features = None

    def connect(self, widths: Sequence[int]) -> int:
        self._check_inputs(widths)
        if len(set(widths)) != 1:
            raise ValueError(f"layer {self.name!r} (Add) needs inputs of one width; got widths {list(widths)}")
        self.features = widths[0]
        return widths[0]

    def forward(self, k: Any, A_ins: Sequence[Any], A_out: Any) -> None:
        k.add(A_ins[0], A_ins[1], A_out)
        for A in A_ins[2:]:
            k.add(A_out, A, A_out)


class Concatenate(_Merge):
    """Two or more nodes side by side along the features: widths w1 + w2 + ... Producers
    with no other consumer write straight into their columns of its output, and receive the
    matching columns of its delta (views, no copies)."""

    #: the inputs' widths, once connected
    widths = None

    def connect(self, widths: Sequence[int]) -> int:
        self._check_inputs(widths)
        self.widths = list(widths)
        return sum(widths)


LAYERS = {"Dense": Dense, "Dropout": Dropout, "BatchNorm": BatchNorm, "Activation": Activation,
          "Add": Add, "Concatenate": Concatenate}
