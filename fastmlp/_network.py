"""The model: layers, parameters, buffers, and the training step as a sequence of kernel calls.

Notation (docs/ARCHITECTURE.md): Layer l (0-based) maps ``A[l]`` to ``A[l+1]``; for a Dense
layer ``A[l+1] = f_l(A[l] @ W[l].T + b[l])``. ``delta[l]`` is d loss / d (pre-activation of
layer l), and ``D[l+1]`` is what f_l' is computed from: the activation A[l+1] itself (or the
pre-activation Z for gelu). One step::

    forward:   for l in 0..L-1:  layer[l].forward(A[l])                        -> A[l+1]
    loss:      loss_and_grad(A[L], T)                                          -> loss, delta[L-1]
    backward:  for l in L-1..0:  layer[l].backward(delta[l], A[l], D[l], f[l-1])
                                     -> its gradients (dW, db), and delta[l-1] if l > 0
    update:    optimizer kernel over all parameters at once

For a Dense layer, backward is ``weight_grad(delta[l], A[l]) -> dW[l], db[l]`` and
``delta_backward(delta[l], W[l], D[l], f[l-1]) -> delta[l-1]``. The trainable parameters of
all layers are views into one flat array ``theta`` and their gradients views into one flat
array ``grad`` (as llm.c does), so the update is one kernel call. Buffers (A, delta, targets,
the layers' scratch) are allocated once per batch size and reused.

``_Network`` (this module) holds what every model shares: the loss, the flat parameters,
the step ``_step``, weights, saving; fit and train_step come from ``_training.py``, predict
and evaluate from ``_inference.py``, summary / plot / profile / compute_gradients / get_layer
from ``_inspection.py``, the buffers from ``_buffers.py``. ``Sequential`` (fastmlp/model.py)
is the chain above (with the fused Dense-stack path) and the graph ``Model``
(fastmlp/graph.py) runs the same step over the nodes of a graph.
"""

from __future__ import annotations

import math
import threading
import weakref
from contextlib import ExitStack
from types import FunctionType, SimpleNamespace
from typing import Any, Literal, Optional, Sequence, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike

from . import kernels as _kernels
from . import layers as _layers
from ._buffers import _Buffers
from ._concurrency import BufferPool, TrainingGuard
from ._inference import _Inference
from ._inspection import _Inspection
from ._training import _Training
from ._typing import OptimizerLike, PathLike
from ._validation import (check_choice, check_dtype, check_finite, check_float, check_int,
                          infer_loss)
from .errors import DivergenceError
from .kernels.codes import IDENTITY
from .layers import FUSED_OUTPUTS, SOFTMAX_LOSSES, check_parameter_memory
from .optim import SGD, get_optimizer

#: loss name -> name of the fused kernel (loss and d loss / d output in one pass)
LOSSES = {
    "cross_entropy": "softmax_cross_entropy",
    "kl_divergence": "softmax_kl_divergence",  # probability targets; softmax fused
    "binary_cross_entropy": "sigmoid_binary_cross_entropy",
    "mse": "mse",
    "poisson": "poisson",  # log link: the output is log(mean), predict gives exp of it
}
#: Keras' loss names, accepted as aliases
LOSS_ALIASES = {
    "categorical_crossentropy": "cross_entropy",        # one-hot (or probability) targets
    "sparse_categorical_crossentropy": "cross_entropy",  # integer labels
    "binary_crossentropy": "binary_cross_entropy",
    "mean_squared_error": "mse",
    "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
}
#: how many of each parameter's first values a layer keeps from its initialisation, so that
#: a model can tell it was never trained (_still_initial): training moves all of them
INIT_SAMPLE = 16
#: the reductions of the batch's loss: its mean (the default) or its sum
REDUCTIONS = ("mean", "sum")
#: the model's own class in the methods that return the model
_Self = TypeVar("_Self", bound="_Network")


def check_loss(loss, output_layer):
    """The loss's canonical name (Keras' names are aliases), checked against the output
    layer's activation: a softmax output needs cross_entropy, a sigmoid one with
    binary_cross_entropy is fused; other activations before a classification loss fail."""
    if isinstance(loss, str) and loss.strip().lower() in LOSS_ALIASES:
        loss = LOSS_ALIASES[loss.strip().lower()]
    loss = check_choice(loss, "loss", tuple(LOSSES) + tuple(LOSS_ALIASES))
    act = output_layer.activation
    if act == "softmax" and loss not in SOFTMAX_LOSSES:
        raise ValueError(f"the output layer {output_layer.name!r} has activation 'softmax', which needs "
                         f"loss='cross_entropy' (or 'categorical_crossentropy') or 'kl_divergence'; "
                         f"got loss={loss!r}")
    if loss == "poisson" and act != "identity":
        raise ValueError(f"the last layer must have activation 'identity' with loss='poisson' (the "
                         f"exp (log link) is fused into the loss); got {act!r} on layer {output_layer.name!r}")
    fused = {v: k for k, v in FUSED_OUTPUTS.items()}.get(loss, "softmax" if loss == "kl_divergence" else None)
    if fused is not None and act not in ("identity", fused):
        raise ValueError(
            f"the last layer must have activation 'identity' (logits) or {fused!r} with loss={loss!r} "
            f"(the {fused} is fused into the loss); got {act!r} on layer {output_layer.name!r}"
        )
    return loss


def _has_weights(layer):
    """Whether `layer` already has weights (parameters or state) in some model."""
    return layer._owner is not None and bool(layer.param_shapes() or layer.state_shapes())


def _weights_at(layer, place):
    """(model, slot) of the model `layer`'s weights live in on `place` ((device, dtype
    name)), or None: a layer has one set of weights per device and dtype (Layer._placed)."""
    if not _has_weights(layer):
        return None
    return layer._placed.get(place)


def _store_offsets(layer, place):
    """{parameter name: its offset in the store} of a layer's weights on `place`."""
    owner, _ = _weights_at(layer, place)
    l = next(i for i, other in enumerate(owner.layers) if other is layer)
    return {name: owner._lo + offset
            for (m, name, _), offset in zip(owner._param_shapes, owner._param_offsets) if m == l}


def _placement(layers, device, dtype):
    """The device and dtype of a model over `layers`. Where the first of them with weights
    has them on the device and dtype asked for, there; else where it has them ("auto"
    follows its device, the default float32 its dtype); else the place asked for, where the
    model starts from copies of those weights (_allocate_parameters)."""
    first = next((layer for layer in layers if _has_weights(layer)), None)
    if first is None:
        return device, dtype
    asked = check_dtype(dtype)
    wanted = None if device == "auto" else _kernels.backend(device).name
    on_device = [(d, t) for d, t in first._placed if wanted in (None, d)]
    exact = [(d, t) for d, t in on_device if t == asked.name]
    if exact or (on_device and asked == np.dtype(np.float32)):
        return (exact or on_device)[0]
    return device, dtype


class _Store:
    """The flat vector that the parameters of one or more models live in (``theta``), and
    the one TrainingGuard of every model over them (see _Network._allocate_parameters)."""

    def __init__(self, theta, guard):
        self.theta, self.guard = theta, guard
        self.models = weakref.WeakSet()

    @classmethod
    def merged(cls, stores, host, kernels):
        """One store holding each of `stores`' parameters in turn, then `host` (new layers'
        initial parameters); every model on the old stores is moved onto it. Returns the
        store and where `host`'s part starts. Runs while none of those models trains
        (another thread's fit: RuntimeError) and no other thread reads their live weights."""
        with ExitStack() as held:
            for store in stores:
                if store.guard._trainer == threading.get_ident():  # e.g. from fit's callback
                    raise RuntimeError(
                        "a model that adds new layers to layers being trained (a callback of "
                        "fit) would move the weights fit works on: build it before or after fit")
                held.enter_context(store.guard.training("building a model over its layers"))
                held.enter_context(store.guard.step_lock)
            parts = [kernels.to_host(store.theta) for store in stores] + [host]
            merged = cls(kernels.to_device(np.concatenate(parts)), stores[0].guard)
            start = 0
            for store in stores:
                for model in list(store.models):
                    model._move_to(merged, start + model._lo)
                start += int(store.theta.size)
        return merged, start


class _Network(_Training, _Inference, _Inspection):
    """What every model shares: the loss, the optimizer, the flat parameter vector, the
    training step and the loop around it (fit, evaluate, predict, train_step, weights,
    saving). ``Sequential`` (a chain of layers, with its fused Dense-stack path) and the
    graph ``Model`` add how their layers are wired: ``_allocate_activations`` /
    ``_activation_views`` (the buffers), ``_forward`` and ``_backward``.

    Attributes every model sets before ``_setup``: ``layers`` (each layer once),
    ``_input_widths`` / ``_input_names`` (one per input), ``_output_layer``.
    """

    def _setup(self, loss, optimizer, device, dtype, seed, label_smoothing, reduction="mean"):
        device, dtype = _placement(self.layers, device, dtype)  # shared weights stay put
        self._kernels = _kernels.backend(device)
        self.device = self._kernels.name
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.optimizer = get_optimizer(optimizer)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        #: no loss given: it is read from the targets at the first fit (infer_loss), unless
        #: the output layer's activation names it; until then a provisional one stands
        self._loss_pending = loss is None and not label_smoothing and not self._over_hidden \
            and self._output_layer.activation not in FUSED_OUTPUTS
        self.loss_reason = "given" if loss is not None else None
        if loss is None:
            loss = self._provisional_loss(label_smoothing)
            if self._over_hidden:
                self.loss_reason = "the output is another model's hidden layer: its features"
            elif not self._loss_pending:
                self.loss_reason = ("label_smoothing is for cross_entropy" if label_smoothing else
                                    f"the output layer's activation is "
                                    f"{self._output_layer.activation!r}")
        self._set_loss(loss, label_smoothing)
        #: the data lives on the device and losses are summed there, read once per epoch
        self._resident = self.device == "cuda"
        self.stop_training = False
        self._guard = TrainingGuard()  # see _concurrency: who may train, whole-step reads
        self._predict_pool = BufferPool()  # inference buffers, one set per call in flight
        self._allocate_parameters()

    #: a model over another model's hidden layer (a graph's sub-model): its provisional loss
    #: is mse, so that predict gives the layer's outputs
    _over_hidden = False

    def _provisional_loss(self, label_smoothing=0.0):
        """The loss of a model given none until its targets choose one (see _setup)."""
        act = self._output_layer.activation
        if self._over_hidden:
            return "mse"
        if act in FUSED_OUTPUTS:
            return FUSED_OUTPUTS[act]
        if label_smoothing:
            return "cross_entropy"
        return "cross_entropy" if self.n_outputs > 1 else "mse"

    def _choose_loss(self, y, name="y"):
        """The first targets a model given no loss sees choose its loss (infer_loss), once."""
        loss, reason = infer_loss(y, self.n_outputs, name)
        with self._guard.step_lock:
            if self._loss_pending:
                if loss != self.loss:
                    self._change_loss(loss, self.label_smoothing)
                self._loss_pending, self.loss_reason = False, f"chosen from {name}: {reason}"

    def _change_loss(self, loss, label_smoothing):
        self._set_loss(loss, label_smoothing)
        self._train_buffers = None
        self._predict_pool.clear()

    def _set_loss(self, loss, label_smoothing=0.0):
        self.loss = check_loss(loss, self._output_layer)
        if self.loss in SOFTMAX_LOSSES and self.n_outputs < 2:
            raise ValueError(
                f"loss={self.loss!r} needs at least 2 outputs; for one output unit use "
                "loss='binary_cross_entropy'"
            )
        self.label_smoothing = check_float(label_smoothing, "label_smoothing", 0, 1, high_open=True)
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing applies to loss='cross_entropy' only")
        for layer in self.layers:  # the model computes logits; predict_proba applies them
            layer._fused = layer is self._output_layer and layer.activation in FUSED_OUTPUTS \
                and (FUSED_OUTPUTS[layer.activation] == self.loss
                     or layer.activation == "softmax" and self.loss in SOFTMAX_LOSSES)
        loss_kernel = getattr(self._kernels, LOSSES[self.loss])
        extra = (self.label_smoothing,) if self.loss == "cross_entropy" else ()

        def loss_and_dZ(Z, T, dZ, w=None, total=None):
            if total is None:  # returns the batch-mean loss
                return loss_kernel(Z, T, dZ, w, *extra)
            return loss_kernel(Z, T, dZ, w, *extra, total=total)  # adds to a device scalar

        self._loss_kernel = loss_and_dZ
        self._out_act = self._output_layer.act

    def compile(self: _Self, optimizer: Optional[OptimizerLike] = None,
                loss: Optional[str] = None,
                metrics: Union[list[str], tuple[str, ...], None] = None,
                label_smoothing: Optional[float] = None,
                reduction: Optional[Literal["mean", "sum"]] = None) -> _Self:
        """Keras' compile: set the optimizer (an Optimizer or a name: 'sgd', 'adam',
        'adamw', 'rmsprop'; its state starts afresh) and the loss (fastmlp's or Keras'
        names); the weights are kept. metrics: names among those the loss reports
        ('accuracy' for classification, 'binary_accuracy' for multi-label, 'mae', 'r2' for
        regression); fit and evaluate always report them. reduction: "mean" or "sum" (see
        Sequential)."""
        if reduction is not None:
            reduction = check_choice(reduction, "reduction", REDUCTIONS)
        with self._guard.training("compile"), self._guard.step_lock:
            if reduction is not None:
                self.reduction = reduction
            if loss is not None or label_smoothing is not None:
                self._change_loss(self.loss if loss is None else loss,
                                  self.label_smoothing if label_smoothing is None
                                  else label_smoothing)
                if loss is not None:
                    self._loss_pending, self.loss_reason = False, "given"
            if optimizer is not None:
                self.optimizer = get_optimizer(optimizer)
                self._init_optimizer_state()
        if metrics is not None:
            if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
                raise TypeError(f"metrics must be a list of names such as ['accuracy']; got {metrics!r}")
            multilabel = self.loss == "binary_cross_entropy" and self.n_outputs > 1
            known = {"mse": ("mae", "r2", "mse", "loss")}.get(
                self.loss, ("accuracy", "acc", "binary_accuracy", "loss") if multilabel
                else ("accuracy", "acc", "loss", "categorical_accuracy", "sparse_categorical_accuracy"))
            for m in metrics:
                if m not in known:
                    raise ValueError(f"metrics: {m!r} is not reported for loss={self.loss!r}; "
                                     f"choose from {list(known)}")
        return self

    # ------------------------------------------------------------------------------------
    # parameters: each layer's parameters are views into theta, its gradients into grad

    @property
    def n_outputs(self) -> int:
        return self._output_width

    @property
    def n_parameters(self) -> int:
        return int(sum(math.prod(shape) for _, _, shape in self._param_shapes))

    @property
    def n_features(self) -> Union[int, tuple[int, ...]]:
        """The input width (a tuple of widths for a model with several inputs)."""
        return self._input_widths[0] if len(self._input_widths) == 1 else tuple(self._input_widths)

    def _still_initial(self):
        """Whether every layer's weights still start as its initialisation drew them (their
        first INIT_SAMPLE values): a model nothing has trained, loaded or set weights into.
        Weights copied from another model (a layer first built elsewhere) count as set."""
        k = self._kernels
        with self._guard.step_lock:
            for slot, layer in zip(self._slots, self.layers):
                if not layer.param_shapes():
                    continue
                sample = getattr(layer, "_init_sample", None)
                if sample is None:
                    return False
                for name, start in sample.items():
                    now = k.to_host(getattr(slot, name).reshape(-1)[:INIT_SAMPLE])
                    if not np.array_equal(now, start.astype(now.dtype)):
                        return False
        return True

    def _allocate_parameters(self):
        """Each layer's parameters as views into theta, the flat vector of a _Store.

        A layer has one set of weights, made by the first model built over it; every later
        model over it (a sub-model, the same graph again, a new head on a trained base, a
        Sequential of its layers) works on the same arrays, as Keras' models do. So this
        model's theta is a slice of the store its built layers' weights live in, with its
        own gradient and optimizer state over that slice: the layers it uses for the first
        time are initialised from the seed and appended to that store (grown, or several
        stores merged into one, the models on them moved over). A layer this model does not
        use may lie inside the slice: the optimizer then runs over this model's own
        parameters only (_trainable_runs), and a file holds _own_optimizer_state.

        Memory cannot be shared across devices or dtypes: a model on another one than the
        layer's weights (device="reference" over a CPU model's layers) starts from copies of
        them, and the models there share those (one set per place, Layer._placed)."""
        k = self._kernels
        check_parameter_memory(self.layers, self.dtype)  # before anything is allocated
        place = (self.device, self.dtype.name)
        shapes = [(l, name, shape) for l, layer in enumerate(self.layers)
                  for name, shape in layer.param_shapes().items()]
        built = [_weights_at(layer, place) is not None for layer in self.layers]
        # the layers without weights here, initialised on the host (from their weights on
        # another device or in another dtype where they have some)
        fresh_at, n_fresh = {}, 0
        for l, name, shape in shapes:
            if not built[l]:
                fresh_at[(l, name)], n_fresh = n_fresh, n_fresh + math.prod(shape)
        host = np.zeros(n_fresh, self.dtype)
        states = []
        for l, layer in enumerate(self.layers):
            if built[l]:  # its state (BatchNorm's running statistics) is shared as it is
                _, slot = _weights_at(layer, place)
                states.append({name: getattr(slot, name) for name in layer.state_shapes()})
                continue
            params = {name: host[fresh_at[(l, name)]:][: math.prod(shape)].reshape(shape)
                      for name, shape in layer.param_shapes().items()}
            state = {name: np.zeros(shape, self.dtype)
                     for name, shape in layer.state_shapes().items()}
            layer.initialize(params, state, self._rng)
            if not _has_weights(layer):  # the start of its weights, to tell "never trained"
                layer._init_sample = {name: arr.reshape(-1)[:INIT_SAMPLE].copy()
                                      for name, arr in params.items()}
            if _has_weights(layer):  # copies of its weights elsewhere
                other, slot = layer._owner
                with other._guard.step_lock:
                    for name, arr in list(params.items()) + list(state.items()):
                        arr[...] = other._kernels.to_host(getattr(slot, name))
            states.append({name: k.to_device(arr) for name, arr in state.items()})
        stores = []
        for l, layer in enumerate(self.layers):
            if built[l] and all(_weights_at(layer, place)[0]._store is not s for s in stores):
                stores.append(_weights_at(layer, place)[0]._store)
        if not stores:  # a model of new layers: a store of its own
            store, fresh_from = _Store(k.to_device(host), self._guard), 0
        elif len(stores) == 1 and n_fresh == 0:  # only built layers of one store: share it
            store, fresh_from = stores[0], 0
        else:
            store, fresh_from = _Store.merged(stores, host, k)
        at = {}
        for l, layer in enumerate(self.layers):
            if built[l]:
                at.update({(l, name): offset
                           for name, offset in _store_offsets(layer, place).items()})
        at.update({key: fresh_from + offset for key, offset in fresh_at.items()})
        offsets = [at[(l, name)] for l, name, _ in shapes]
        ends = [offset + math.prod(shape) for offset, (_, _, shape) in zip(offsets, shapes)]
        lo, hi = (min(offsets), max(ends)) if shapes else (0, 0)
        self._store, self._lo = store, lo
        store.models.add(self)
        self._guard = store.guard  # one guard over the one set of weights
        self._param_shapes, self._param_offsets = shapes, [offset - lo for offset in offsets]
        self._theta = store.theta[lo:hi]
        self._grad = k.zeros(hi - lo, self.dtype)
        self._finish_parameters(states)
        for layer, slot in zip(self.layers, self._slots):
            if layer._owner is None:
                layer._owner, layer._placed = (self, slot), {}
            layer._placed.setdefault(place, (self, slot))

    def _move_to(self, store, lo):
        """Point this model's parameters at `store`, which holds their values from `lo` on
        (a store merged into a larger one). Gradients, optimizer state and layer state
        stay where they are; so do the slot objects, only their parameter arrays change."""
        self._store, self._lo = store, lo
        store.models.add(self)
        self._guard = store.guard
        self._theta = store.theta[lo : lo + self._theta.size]
        for (l, name, shape), offset in zip(self._param_shapes, self._param_offsets):
            view = self._theta[offset : offset + math.prod(shape)].reshape(shape)
            setattr(self._slots[l], name, view)
        self.params = [getattr(self._slots[l], name) for l, name, _ in self._param_shapes]
        self._train_buffers = None  # their views copied the old arrays
        self._predict_pool.clear()
        self._parameters_moved()

    def _parameters_moved(self):
        """What a model keeps besides its slots that points at its parameters (Sequential:
        the W, b tuples of its Dense stack)."""

    def _finish_parameters(self, states):
        self._slots = self._parameter_slots(self._theta, self._grad, states)
        self.params = [getattr(self._slots[l], name) for l, name, _ in self._param_shapes]
        self.grads = [getattr(self._slots[l], "d" + name) for l, name, _ in self._param_shapes]
        self._init_optimizer_state()
        self._train_buffers = None
        self._predict_pool.clear()
        self._submodels = {}

    def _own_optimizer_state(self):
        """{state name: host array} of the optimizer state of this model's own parameters,
        in the layout a model built from its config has (its layers' parameters in order,
        nothing between them): what a file holds. theta may also span parameters of layers
        other models use (see _allocate_parameters), so _opt_state may be longer."""
        k = self._kernels
        sizes = [math.prod(shape) for _, _, shape in self._param_shapes]
        # the usual case: theta holds this model's parameters only, in order (no copy)
        in_order = list(self._param_offsets) == list(np.cumsum([0] + sizes[:-1])) \
            and sum(sizes) == self._theta.size
        with self._guard.step_lock:
            out = {}
            for name in self.optimizer.state_names:
                full = k.to_host(self._opt_state[name])
                if in_order and full.shape == (sum(sizes),):
                    out[name] = full
                    continue
                parts = [full[offset : offset + size]
                         for size, offset in zip(sizes, self._param_offsets)]
                out[name] = np.concatenate(parts) if parts else full[:0].copy()
            return out

    def _init_optimizer_state(self):
        """The optimizer's state, fresh (zero moments, step 0), over the flat theta."""
        size = int(self._theta.size)
        bounds = {0, size}
        for (_, _, shape), offset in zip(self._param_shapes, self._param_offsets):
            bounds |= {offset, offset + math.prod(shape)}
        self._opt_state = self.optimizer.init_state(size, self.dtype, self._kernels.zeros,
                                                    np.array(sorted(bounds)), self._kernels.write)

    def _parameter_slots(self, theta, grad, states):
        """Per layer a namespace of its parameters as views into `theta` (and gradients as
        views into `grad`, unless None), with its state arrays `states[l]`."""
        slots = [SimpleNamespace(rng=self._rng, freeze_masks=False, **state) for state in states]
        for layer, slot in zip(self.layers, slots):  # e.g. a bias-free Dense's b = 0
            for name, shape in layer.fixed_zeros().items():
                setattr(slot, name, self._kernels.zeros(shape, self.dtype))
                if grad is not None:
                    setattr(slot, "d" + name, self._kernels.zeros(shape, self.dtype))
        for (l, name, shape), offset in zip(self._param_shapes, self._param_offsets):
            size = math.prod(shape)
            setattr(slots[l], name, theta[offset : offset + size].reshape(shape))
            if grad is not None:
                setattr(slots[l], "d" + name, grad[offset : offset + size].reshape(shape))
        return slots

    def _trainable_runs(self):
        """None when every parameter of theta is trained, else the (lo, hi) ranges of the
        trainable layers' parameters, adjacent ones merged (the optimizer runs over each)."""
        cached = getattr(self, "_runs_cache", None)
        if cached is not None and cached[0] == _layers._trainable_changes:
            return cached[1]
        key = _layers._trainable_changes
        runs = []
        for (l, _, shape), offset in sorted(zip(self._param_shapes, self._param_offsets), key=lambda x: x[1]):
            if not self.layers[l].trainable:
                continue
            hi = offset + math.prod(shape)
            if runs and runs[-1][1] == offset:
                runs[-1] = (runs[-1][0], hi)
            else:
                runs.append((offset, hi))
        if runs == [(0, int(self._theta.size))]:
            runs = None
        frozen = [(o, o + math.prod(sh)) for (l, _, sh), o in zip(self._param_shapes, self._param_offsets)
                  if not self.layers[l].trainable]
        self._runs_cache = (key, runs, frozen)
        return runs

    def _copy_parameters(self):
        """A private copy of the parameters and layer state, for inference while another
        thread trains (called under the guard's step_lock): the model's own form of them
        (``_inference_parameters``) over copied slots."""
        k = self._kernels
        theta = k.to_device(k.to_host(self._theta))
        states = [{name: k.to_device(k.to_host(getattr(slot, name))) for name in layer.state_shapes()}
                  for layer, slot in zip(self.layers, self._slots)]
        return self._inference_parameters(self._parameter_slots(theta, None, states))

    def _weight_slots(self):
        """(name, array) of every weight get_weights returns, in order: each layer's
        trainable parameters, then its state (e.g. BatchNorm's running statistics)."""
        return [(f"{layer.name}.{name}", getattr(slot, name))
                for layer, slot in zip(self.layers, self._slots) for name in layer._weight_names()]

    def get_weights(self) -> list[np.ndarray]:
        """[W1, b1, W2, b2, ...] as host copies, W of shape (out, in); BatchNorm layers add
        [gamma, beta, running_mean, running_var]. Those of one whole training step, also
        while another thread trains the model."""
        with self._guard.step_lock:
            return [self._kernels.to_host(arr) for _, arr in self._weight_slots()]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set all weights from a list in get_weights' layout; shapes and values checked."""
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list [W1, b1, W2, b2, ...]; got {type(weights).__name__}")
        slots = self._weight_slots()
        if len(weights) != len(slots):
            raise ValueError(
                f"weights must hold {len(slots)} arrays ({', '.join(n for n, _ in slots)}); "
                f"got {len(weights)}"
            )
        self._write_weights(slots, weights, "weights")

    def _write_weights(self, slots, weights, what="weights"):
        checked = []
        for i, (new, (where, old)) in enumerate(zip(weights, slots)):
            name = f"{what}[{i}] ({where})"
            if isinstance(new, (str, bytes)):
                raise TypeError(f"{name} must be a real array; got a string")
            arr = np.asarray(new)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be a real array; got dtype {arr.dtype}")
            if arr.shape != old.shape:
                raise ValueError(f"{name} must have shape {old.shape}; got {arr.shape}")
            check_finite(arr, name, self.dtype)
            checked.append(np.ascontiguousarray(arr, self.dtype))
        with self._guard.training("set_weights"), self._guard.step_lock:
            for arr, (_, old) in zip(checked, slots):
                self._kernels.write(old, arr)

    # ------------------------------------------------------------------------------------
    # the training step, as a sequence of kernel calls

    def _sum_factor(self, n):
        """reduction='sum': the batch's loss and d loss / d outputs are the mean's times the
        count the mean is over (rows for the softmax losses, all elements for the others;
        PyTorch's reduction='sum')."""
        return n if self.loss in SOFTMAX_LOSSES else n * self.n_outputs

    def _loss_and_grad(self, v, total=None):
        """The batch's loss (reduced as self.reduction says; None when it goes into the
        device scalar `total`, which always gets the per-sample sum) and d loss / d outputs."""
        loss = self._loss_kernel(v.out, v.T, v.dout, v.w, total)
        if self.reduction == "sum":
            factor = self._sum_factor(v.n)
            self._kernels.scale(v.dout.reshape(-1), factor)
            loss = None if loss is None else loss * factor
        if self._out_act != IDENTITY:  # mse after a non-identity output: chain through f'
            self._kernels.activation_backward(v.D_out, self._out_act, v.dout)
        return loss

    def _update(self):
        opt = self.optimizer
        runs = self._trainable_runs()
        if opt.clip_norm is not None:
            for lo, hi in self._runs_cache[2]:  # frozen layers' gradients count for nothing
                self._kernels.write(self._grad[lo:hi], np.zeros(hi - lo, self.dtype))
            if self._resident:  # decided on the device: the norm goes to a device scalar
                if getattr(self, "_grad_norm", None) is None:
                    self._grad_norm = self._kernels.zeros(1, np.float64)
                self._kernels.clip_grad_norm(self._grad, opt.clip_norm, self._grad_norm)
            else:
                self._kernels.clip_grad_norm(self._grad, opt.clip_norm)
        opt.update(self._kernels, self._theta, self._grad, self._opt_state, runs)

    def _step(self, v, total=None, X0=None, sgd_lr=None, check_gradient=False):
        """One step on the batch already in the buffers `v` (X0: its CSR rows, for sparse
        input); returns the batch-mean loss (or, given a device scalar `total`, adds the
        batch's loss sum to it and returns None). sgd_lr (from _fused_sgd_lr): plain SGD's
        update folded into the backward pass, no gradients written.

        A loss that is not finite ends the step before it touches the weights; with
        check_gradient (train_step: fit checks its weights after each epoch instead), so does
        a gradient that overflowed where the loss did not (e.g. poisson's exp in float32)."""
        self._forward(v, True, X0)
        loss = self._loss_and_grad(v, total)
        if loss is not None and not math.isfinite(loss):
            return loss
        if sgd_lr is None:
            self._backward(v, X0)
            if check_gradient and not self._finite_gradient():
                raise DivergenceError(
                    f"training diverged: the gradient became non-finite (the loss was "
                    f"{loss:.6g}: a {self.dtype.name} overflow); the weights were not updated. "
                    + self._divergence_advice())
            self._update()
        else:
            self._backward(v, X0, sgd_lr)
            self._opt_state["step"] += 1
        return loss

    def _finite_gradient(self):
        """Whether the flat gradient is finite: its min and max, where NaN and inf carry
        through (read in place on the host backends, copied from a GPU)."""
        g = self._grad if isinstance(self._grad, np.ndarray) else self._kernels.to_host(self._grad)
        return g.size == 0 or (math.isfinite(g.min()) and math.isfinite(g.max()))

    def _plain_sgd_fuses(self):
        """Whether fit's step-by-step path may fold plain SGD's update into the backward
        pass (a graph Model says when; a Sequential's full batches fuse it in _fast_fit)."""
        return False

    def _fused_sgd_lr(self):
        """Plain SGD's learning rate when this step's update can be folded into the backward
        pass (SGD without momentum, weight decay or clipping, every layer trainable; the
        caller has checked _plain_sgd_fuses and the callbacks), else None. Asked each step:
        callbacks may change the optimizer's settings or freeze layers between steps."""
        opt = self.optimizer
        if (type(opt) is SGD and opt.momentum == 0 and opt.weight_decay == 0
                and opt.clip_norm is None and self._trainable_runs() is None):
            return opt.lr
        return None

    def _freeze_masks(self, v, frozen):
        """Keep the dropout masks drawn (gradcheck's finite differences) or draw anew."""
        for s in list(self._slots) + list(v.s):
            if s is not None:
                s.freeze_masks = frozen

    # ------------------------------------------------------------------------------------
    # buffers

    def _buffers_for(self, n, T, weighted=False, sparse=False):
        """Training buffers for batches of up to n rows with targets like T (made once)."""
        width, dtype = (1, np.dtype(np.int64)) if T.ndim == 1 else (T.shape[1], self.dtype)
        buf = self._train_buffers
        if buf is None or not buf.fits(n, width, dtype, weighted, sparse):
            buf = self._train_buffers = _Buffers(self, n, width, dtype, weighted, sparse)
        return buf

    # ------------------------------------------------------------------------------------
    # the training loop: _training.py; inference: _inference.py; looking inside:
    # _inspection.py. Files and exchange:

    def save(self, path: PathLike) -> None:
        """Save config, weights and optimizer state to an .npz file, atomically."""
        from .saving import save

        save(self, path)

    def __reduce__(self):
        """Pickling (``pickle``, ``copy.deepcopy``, joblib, multiprocessing) goes through the
        bytes ``save`` writes (config, weights, optimizer and random state; no pickled
        code or device arrays): the copy is an equal model with weights of its own, on the
        same device where that device is there, else on "auto"."""
        from .saving import to_bytes

        return (_unpickle, (to_bytes(self), self.device, type(self)))

    def to_onnx(self, path: PathLike,
                dtype: Optional[Literal["float32", "float64"]] = None) -> Any:
        """Export to an ONNX file for inference (fastmlp.onnx_io); returns the ModelProto.
        One graph input per model input, named after it."""
        from .onnx_io import to_onnx

        return to_onnx(self, path, dtype)

    def to_torch(self) -> Any:
        """An equivalent torch.nn.Module with the weights copied (fastmlp.interop): an
        nn.Sequential for Sequential / MLP models, a GraphModule (inputs as positional
        arguments, in the model's input order) for graph Models."""
        from .interop import to_torch

        return to_torch(self)

    def _config_common(self):
        return {
            "loss": None if self._loss_pending else self.loss,
            "label_smoothing": self.label_smoothing,
            **({"reduction": self.reduction} if self.reduction != "mean" else {}),
            "optimizer": {"name": type(self.optimizer).__name__, "config": self.optimizer.get_config()},
            "dtype": self.dtype.name,
            "seed": self.seed,
        }


def _unpickle(data, device, cls=None):
    """A pickled model (``_Network.__reduce__``) back from its model-file bytes, on `device`
    when this machine has it (a model pickled on a GPU machine loads on a CPU-only one), of
    its class again where that class only builds what the file's class does (an MLP comes
    back an MLP, not the Sequential its file describes)."""
    from .saving import from_bytes

    if device != "cpu" and device != "reference" and _kernels.backend("auto").name != device:
        device = "auto"
    model = from_bytes(data, device)
    if isinstance(cls, type) and cls is not type(model) and issubclass(cls, type(model)):
        model.__class__ = cls
    return model


# The methods every model shares are defined on the private classes above; Python names a
# function by its __qualname__ in the errors of a call, so "model.fit() got an unexpected
# keyword argument 'lr'" (not "_Training.fit() ...") is how those errors read.
for _part in (_Network, _Training, _Inference, _Inspection):
    for _name, _method in vars(_part).items():
        if isinstance(_method, FunctionType) and not _name.startswith("_"):
            _method.__qualname__ = f"model.{_name}"
del _part, _name, _method
