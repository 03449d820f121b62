"""The models of a stack of layers: ``Sequential`` (a chain of layers, with its fused
Dense-stack path) and ``MLP`` (a Sequential from layer sizes).

What every model shares -- the loss, the flat parameter vector, the training step
``_step`` (docs/ARCHITECTURE.md: how a step flows) -- is ``_Network`` in ``_network.py``;
looking inside a model (summary, plot, profile, compute_gradients, get_layer) is in
``_inspection.py``; the graph ``Model`` is in ``graph.py``. This module re-exports the names
other code imports from it (LOSSES, the layers, ``_Network``...).
"""

from __future__ import annotations

import inspect
import math
from types import SimpleNamespace
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np

from ._network import LOSS_ALIASES, LOSSES, REDUCTIONS, _Network, check_loss  # noqa: F401
from ._typing import Device, DType, OptimizerLike
from ._validation import check_float, check_int
from .kernels.codes import ACTIVATIONS, IDENTITY, NEEDS_PREACTIVATION, activation_code  # noqa: F401
from .layers import (FUSED_OUTPUTS, SOFTMAX_LOSSES, LAYERS, Activation, BatchNorm, Dense,  # noqa: F401
                     Dropout, Layer, check_activation)
from .optim import Optimizer, get_optimizer  # noqa: F401
from ._validation import check_inputs, check_sample_weights, check_targets  # noqa: F401


def _input_size(layers):
    """The model's input size: the first layer that knows its input size, reached through
    size-preserving layers (Dropout, BatchNorm, Activation) only."""
    for layer in layers:
        if isinstance(layer, Dense) and layer.in_features is not None:
            return layer.in_features
        if isinstance(layer, BatchNorm) and layer.features is not None:
            return layer.features
        if not isinstance(layer, (Dropout, BatchNorm, Activation)):
            break
    raise ValueError("the input size is unknown: start with Dense(in_features, out_features) or BatchNorm(features)")


class Sequential(_Network):
    """A stack of layers (Dense, Dropout, BatchNorm, Activation) trained with a fused loss
    and an optimizer.

    Parameters
    ----------
    layers : list of layers; each Dense layer's in_features must equal the size before it
        (``Dense(units)`` after the first layer takes it from there). Layers of another
        model keep their weights: this model shares them (see fastmlp.Model).
    loss : None (the default): chosen once, from the targets of the first fit (or evaluate,
        train_step), by one rule for MLP, Sequential and Model (``_validation.infer_loss``):
        class labels or one-hot rows give "cross_entropy" for several outputs, integer 0/1
        labels "binary_cross_entropy" for one output, real-valued targets "mse", and targets
        that fit more than one loss (0/1 floats, whole numbers for one output, rows of
        probabilities) a ValueError asking for ``loss=``; a softmax or sigmoid output layer
        names its loss itself. ``model.loss_reason`` and the summary say which rule chose
        it, and verbose fit says it on its first line. Or one of: "cross_entropy" (softmax
        fused; integer labels or one-hot/probability targets),
        "kl_divergence" (softmax fused; probability targets, rows summing to 1: the
        cross-entropy minus the targets' entropy, ``KLDivLoss(reduction="batchmean")`` of
        PyTorch on log_softmax outputs; Keras' "kld" is an alias),
        "binary_cross_entropy" (sigmoid fused; 0/1 labels), "mse" or "poisson" (counts or
        rates >= 0; log link: the outputs are log-means, ``predict`` returns their exp; the
        loss is the half Poisson deviance up to its constant, PyTorch's
        ``PoissonNLLLoss(log_input=True)``); Keras' names
        (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
        mean_squared_error) are aliases. The last layer of a classification model has the
        identity activation (logits) or the loss's own (softmax / sigmoid, fused into the
        loss: the model still computes logits, predict_proba applies it).
    optimizer : an Optimizer (``fastmlp.SGD(...)``, ``fastmlp.Adam(...)``...), a name, or None
        for ``SGD(lr=0.01)``.
    device : "auto", "cpu", "cuda" or "reference" (the NumPy oracle, slow). ``model.device``
        says which backend was picked.
    dtype : "float32" (default) or "float64".
    seed : int or None. The same seed gives the same initial weights, the same shuffling and
        the same dropout masks.
    label_smoothing : for cross_entropy, PyTorch's label smoothing in [0, 1).
    reduction : "mean" (default) or "sum": the batch's loss the optimizer minimises is the mean
        over the samples (over all elements for binary_cross_entropy, mse, poisson) or the
        sum, PyTorch's ``reduction=``; with "sum" the gradients and train_step's loss are the
        mean's times that count. fit's history and evaluate report the mean per sample either way.
    """

    def __init__(self, layers: Sequence[Layer], loss: Optional[str] = None,
                 optimizer: Optional[OptimizerLike] = None, device: Device = "auto",
                 dtype: DType = "float32", seed: Optional[int] = None,
                 label_smoothing: float = 0.0,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError(f"layers must be a non-empty list of layers (Dense, Dropout, BatchNorm); got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer) or layer.n_inputs != 1:
                raise TypeError(f"layers[{i}] must be a layer (Dense, Dropout, BatchNorm, Activation); "
                                f"got {layer!r} (Add and Concatenate need a graph: fastmlp.Model)")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("layers lists the same layer object twice (share weights in a graph Model)")
        size = _input_size(layers)
        sizes = [size]
        for i, layer in enumerate(layers):
            if isinstance(layer, Dense) and layer.in_features is None:
                layer.in_features = size
            if isinstance(layer, Dense) and layer.in_features != size:
                raise ValueError(
                    f"layers[{i}].in_features must equal the size before it ({size}); "
                    f"got {layer.in_features}"
                )
            try:
                size = layer.build(size)
            except ValueError as exc:
                raise ValueError(f"layers[{i}]: {exc}") from None
            sizes.append(size)
        for i, layer in enumerate(layers[:-1]):
            if layer.activation == "softmax":
                raise ValueError(f"layers[{i}] has activation 'softmax', which only the last layer may "
                                 "have (fused into cross_entropy)")
        self.layers = list(layers)
        self.sizes = sizes
        self._input_widths, self._input_names = (sizes[0],), ("input",)
        self._output_layer, self._output_width = self.layers[-1], sizes[-1]
        self._setup(loss, optimizer, device, dtype, seed, label_smoothing, reduction)
        self._act = tuple(layer.act for layer in self.layers)
        self._parameters_moved()
        dense = [slot for slot, layer in zip(self._slots, self.layers) if isinstance(layer, Dense)]
        self.dW, self.db = tuple(s.dW for s in dense), tuple(s.db for s in dense)
        #: a plain stack of Dense layers (no Dropout, BatchNorm) runs its forward and backward
        #: passes as one kernel call each (kernels' mlp_forward / mlp_backward)
        self._dense_only = len(dense) == len(self.layers)
        #: sparse input goes straight into the first layer's sparse kernels (else: each batch
        #: is densified)
        self._sparse_first_layer = self._dense_only

    def _set_loss(self, loss, label_smoothing=0.0):
        super()._set_loss(loss, label_smoothing)
        self._act = tuple(layer.act for layer in self.layers)

    def _parameters_moved(self):
        self.W, self.b = self._dense_parameters(self._slots)

    @property
    def inputs(self) -> list[Node]:
        """[the input node] of the stack seen as a graph (Keras' ``model.inputs``): with
        ``model.get_layer(name).output``, ``fastmlp.Model(model.inputs, ...)`` builds a
        sub-model that shares this model's weights."""
        if getattr(self, "_chain_nodes", None) is None:
            from .graph import Node

            nodes = [Node(None, (), self.sizes[0], "input")]
            for layer, width in zip(self.layers, self.sizes[1:]):
                nodes.append(Node(layer, (nodes[-1],), width, layer.name))
                layer._output_node = nodes[-1]
            self._chain_nodes = nodes
        return [self._chain_nodes[0]]

    @property
    def output(self) -> Node:
        """The output node of the stack seen as a graph (see ``inputs``)."""
        self.inputs
        return self._chain_nodes[-1]

    def _output_node_of(self, layer):
        """The node of this stack's graph that `layer` outputs (see ``inputs``)."""
        self.inputs
        index = next(i for i, other in enumerate(self.layers) if other is layer)
        return self._chain_nodes[1 + index]

    def get_layer(self, name: Optional[str] = None, index: Optional[int] = None) -> Layer:
        layer = super().get_layer(name, index)
        # its .output: this stack's node (a layer may be in several stacks: see inputs)
        layer._output_node = self._output_node_of(layer)
        return layer

    def _weight_slots(self):
        """Names W1, b1, ... for Dense layers (1-based, as in the lecture), layers[l].name
        for the others."""
        out, n_dense = [], 0
        for l, (layer, slot) in enumerate(zip(self.layers, self._slots)):
            n_dense += isinstance(layer, Dense)
            for name in layer._weight_names():
                label = f"{name}{n_dense}" if isinstance(layer, Dense) else f"layers[{l}].{name}"
                out.append((label, getattr(slot, name)))
        return out

    # ------------------------------------------------------------------------------------
    # buffers: A[l] (B, sizes[l]), Z[l] where f' needs the pre-activation, delta[l]

    def _allocate_activations(self, capacity, training, sparse=False):
        k, dtype = self._kernels, self.dtype
        a = SimpleNamespace()
        # sparse input multiplied by the first layer directly: no dense input rows
        a.A = [k.empty((capacity, 0 if sparse and l == 0 else s), dtype) for l, s in enumerate(self.sizes)]
        a.Z = [None] + [k.empty((capacity, s), dtype) if layer.needs_preactivation else None
                        for layer, s in zip(self.layers, self.sizes[1:])]
        if training:
            a.delta = [k.empty((capacity, s), dtype) for s in self.sizes[1:]]
            a.scratch = [  # per layer: {name: (per_row, buffer)}
                {name: (per_row, k.empty((capacity,) + shape if per_row else shape, dtype))
                 for name, (per_row, shape) in layer.scratch_shapes(l == 0).items()}
                for l, layer in enumerate(self.layers)
            ]
        return a

    def _activation_views(self, a, n, v, training):
        v.A = tuple(x[:n] for x in a.A)
        v.Z = tuple(None if z is None else z[:n] for z in a.Z)
        v.D = tuple(x if z is None else z for x, z in zip(v.A, v.Z))  # what f' is computed from
        v.X, v.out, v.D_out = (v.A[0],), v.A[-1], v.D[-1]
        v.s = ()
        if training:
            v.delta = tuple(d[:n] for d in a.delta)
            v.dout = v.delta[-1]
            v.s = []
            for slot, scratch in zip(self._slots, a.scratch):
                views = {name: buf[:n] if per_row else buf for name, (per_row, buf) in scratch.items()}
                v.s.append(SimpleNamespace(**vars(slot), **views))

    def _dense_parameters(self, slots):
        """(W, b): tuples of the Dense layers' weights and biases, for mlp_forward."""
        dense = [s for s, layer in zip(slots, self.layers) if isinstance(layer, Dense)]
        return tuple(s.W for s in dense), tuple(s.b for s in dense)

    def _inference_parameters(self, slots):
        W, b = self._dense_parameters(slots)
        return SimpleNamespace(slots=slots, W=W, b=b)

    # ------------------------------------------------------------------------------------
    # the two passes of a chain

    def _forward(self, v, training, X0=None, params=None):
        """A[1..L] from A[0] (or from the CSR rows X0); with `params` (a copy from
        _copy_parameters), inference on those weights instead of the model's own."""
        W, b = (self.W, self.b) if params is None else (params.W, params.b)
        if X0 is not None:  # sparse input rows (CSR triple)
            if not v.A[0].shape[1]:
                return self._sparse_forward(v, X0, W, b)
            self._kernels.csr_to_dense(*X0, v.A[0])  # densify this batch only
        if self._dense_only:  # the layer loop inside one kernel call
            self._kernels.mlp_forward(v.A, v.D, W, b, self._act)
            return
        slots = v.s if training else self._slots if params is None else params.slots
        for l, layer in enumerate(self.layers):
            layer.forward(self._kernels, v.A[l], v.A[l + 1], v.Z[l + 1], slots[l], training)

    def _sparse_forward(self, v, X0, W, b):
        """The first Dense layer on CSR rows, then the rest of the stack."""
        k, act = self._kernels, self._act[0]
        if act in NEEDS_PREACTIVATION:
            k.sparse_linear_forward(*X0, W[0], b[0], IDENTITY, v.D[1])
            k.activate(v.D[1], act, v.A[1])
        else:
            k.sparse_linear_forward(*X0, W[0], b[0], act, v.A[1])
        if len(W) > 1:
            k.mlp_forward(v.A[1:], v.D[1:], W[1:], b[1:], self._act[1:])

    def _sparse_backward(self, v, X0):
        k = self._kernels
        if len(self.W) > 1:
            k.mlp_backward(v.delta[1:], v.A[1:], v.D[1:], self.W[1:], self.dW[1:], self.db[1:],
                           self._act[1:])
            k.delta_backward(v.delta[1], self.W[1], v.D[1], self._act[0], v.delta[0])
        k.sparse_weight_grad(v.delta[0], *X0, self.dW[0], self.db[0])

    def _backward(self, v, X0=None):
        if X0 is not None and not v.A[0].shape[1]:
            return self._sparse_backward(v, X0)
        if self._dense_only:
            self._kernels.mlp_backward(v.delta, v.A, v.D, self.W, self.dW, self.db, self._act)
            return
        for l in reversed(range(len(self.layers))):
            if l > 0:
                self.layers[l].backward(self._kernels, v.delta[l], v.A[l], v.D[l], self._act[l - 1],
                                        v.delta[l - 1], v.s[l])
            else:
                self.layers[0].backward(self._kernels, v.delta[0], v.A[0], None, IDENTITY, None, v.s[0])

    # ------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {"layers": [{"type": type(layer).__name__, **layer.get_config()} for layer in self.layers],
                **self._config_common()}

    def _summary_rows(self):
        prev = "input"
        for i, layer in enumerate(self.layers):
            n = sum(math.prod(s) for s in layer.param_shapes().values())
            yield layer.name, type(layer).__name__, self.sizes[i + 1], n, [prev]
            prev = layer.name

    def __repr__(self):
        loss = None if self._loss_pending else self.loss
        return f"{type(self).__name__}(sizes={self.sizes}, loss={loss!r}, device={self.device!r})"


class MLP(Sequential):
    """A multi-layer perceptron from layer sizes, e.g. ``MLP([784, 256, 128, 10])``.

    activation: one name for every hidden layer or a list, one per hidden layer: identity,
    relu, leaky_relu (slope 0.01), elu (alpha 1), sigmoid, tanh, gelu, softplus.
    output: the last layer's activation, "identity" (logits) unless given; "softmax" with
    cross_entropy and "sigmoid" with binary_cross_entropy are fused into the loss. dropout: a
    probability p > 0 adds Dropout(p) after every hidden layer. batch_norm=True puts a
    BatchNorm before every hidden activation. residual=True adds a skip connection around
    every hidden layer whose width equals the one before it (``h = h + f(W h + b)``); the
    model is then a graph ``fastmlp.Model``. The other arguments are Sequential's.
    """

    def __new__(cls, sizes=None, *args, residual=False, **kwargs):
        if residual is True:
            from .graph import residual_mlp

            return residual_mlp(sizes, *args, **kwargs)
        if residual is not False:
            raise TypeError(f"residual must be True or False; got {residual!r}")
        return super().__new__(cls)

    def __init__(self, sizes: Sequence[int],
                 activation: Union[Optional[str], Sequence[Optional[str]]] = "relu",
                 output: Optional[str] = "identity", loss: Optional[str] = None,
                 optimizer: Optional[OptimizerLike] = None, device: Device = "auto",
                 dtype: DType = "float32", seed: Optional[int] = None, dropout: float = 0.0,
                 batch_norm: bool = False, label_smoothing: float = 0.0,
                 residual: bool = False,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        layers = mlp_layers(sizes, activation, output, dropout, batch_norm)
        super().__init__(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype,
                         seed=seed, label_smoothing=label_smoothing, reduction=reduction)


# __new__ takes (sizes, *args, **kwargs) to pick the graph class for residual=True: the
# signature users (and help(), IDEs) see is __init__'s
MLP.__signature__ = inspect.signature(MLP.__init__).replace(
    parameters=list(inspect.signature(MLP.__init__).parameters.values())[1:])


def mlp_layers(sizes, activation="relu", output="identity", dropout=0.0, batch_norm=False):
    """MLP's arguments, checked: a list of (Dense, [BatchNorm], [Dropout]) per hidden layer,
    then the output Dense."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"sizes must be a list of layer sizes like [784, 256, 10]; got {sizes!r}")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least 2 sizes (inputs and outputs); got {sizes}")
    sizes = [check_int(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
    n_hidden = len(sizes) - 2
    if isinstance(activation, (list, tuple)):
        if len(activation) != n_hidden:
            raise ValueError(
                f"activation must be one name or a list of {n_hidden} names (one per hidden "
                f"layer); got {len(activation)} names"
            )
        acts = list(activation)
    else:
        acts = [activation] * n_hidden
    acts = [check_activation(a, f"activation[{i}]" if isinstance(activation, (list, tuple))
                             else "activation", allow_softmax=False) for i, a in enumerate(acts)]
    output = check_activation(output, "output")
    dropout = check_float(dropout, "dropout", low=0, high=1, high_open=True)
    if not isinstance(batch_norm, (bool, np.bool_)):
        raise TypeError(f"batch_norm must be True or False; got {batch_norm!r}")
    layers = []  # named as in the lecture: hidden1, hidden2, ..., output
    for i, a in enumerate(acts):
        if batch_norm:
            layers += [Dense(sizes[i], sizes[i + 1], name=f"hidden{i + 1}"),
                       BatchNorm(sizes[i + 1], activation=a, name=f"batch_norm{i + 1}")]
        else:
            layers.append(Dense(sizes[i], sizes[i + 1], a, name=f"hidden{i + 1}"))
        if dropout:
            layers.append(Dropout(dropout, name=f"dropout{i + 1}"))
    layers.append(Dense(sizes[-2], sizes[-1], output, name="output"))
    return layers


__all__ = ["Dense", "Dropout", "BatchNorm", "Activation", "Sequential", "MLP", "LOSSES",
           "LOSS_ALIASES", "ACTIVATIONS", "Optimizer", "LAYERS"]


# the annotations' Node (at the end: graph imports this module)
from .graph import Node  # noqa: E402
