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

``_Network`` holds what every model shares (the step ``_step``, weights, saving; fit and
train_step from ``_training.py``, predict and evaluate from ``_inference.py``, the buffers
in ``_buffers.py``); ``Sequential`` is the chain above (with the fused Dense-stack path) and
the graph ``Model`` (fastmlp/graph.py) runs the same step over the nodes of a graph.
"""

import math
from types import SimpleNamespace

import numpy as np

from . import kernels as _kernels
from . import layers as _layers
from ._buffers import _Buffers
from ._concurrency import BufferPool, TrainingGuard
from ._inference import _Inference
from ._training import _Training
from ._validation import check_choice, check_dtype, check_finite, check_float, check_int
from .kernels.codes import ACTIVATIONS, IDENTITY, NEEDS_PREACTIVATION, activation_code  # noqa: F401
from .layers import FUSED_OUTPUTS, SOFTMAX_LOSSES, LAYERS, Activation, BatchNorm, Dense, Dropout, Layer  # noqa: F401
from .optim import Optimizer, get_optimizer  # noqa: F401
from ._validation import check_inputs, check_sample_weights, check_targets  # noqa: F401
from .errors import DivergenceError
from .sparse import csr_run, issparse

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
#: the reductions of the batch's loss: its mean (the default) or its sum
REDUCTIONS = ("mean", "sum")


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


class _Network(_Training, _Inference):
    """What every model shares: the loss, the optimizer, the flat parameter vector, the
    training step and the loop around it (fit, evaluate, predict, train_step, weights,
    saving). ``Sequential`` (a chain of layers, with its fused Dense-stack path) and the
    graph ``Model`` add how their layers are wired: ``_allocate_activations`` /
    ``_activation_views`` (the buffers), ``_forward`` and ``_backward``.

    Attributes every model sets before ``_setup``: ``layers`` (each layer once),
    ``_input_widths`` / ``_input_names`` (one per input), ``_output_layer``.
    """

    def _setup(self, loss, optimizer, device, dtype, seed, label_smoothing, reduction="mean"):
        self._kernels = _kernels.backend(device)
        self.device = self._kernels.name
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.optimizer = get_optimizer(optimizer)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self._set_loss(loss, label_smoothing)
        #: the data lives on the device and losses are summed there, read once per epoch
        self._resident = self.device == "cuda"
        self.stop_training = False
        self._guard = TrainingGuard()  # see _concurrency: who may train, whole-step reads
        self._predict_pool = BufferPool()  # inference buffers, one set per call in flight
        self._allocate_parameters()

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

    def compile(self, optimizer=None, loss=None, metrics=None, label_smoothing=None, reduction=None):
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
                self._set_loss(self.loss if loss is None else loss,
                               self.label_smoothing if label_smoothing is None else label_smoothing)
                self._train_buffers = None
                self._predict_pool.clear()
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
    def n_outputs(self):
        return self._output_width

    @property
    def n_parameters(self):
        return int(sum(math.prod(shape) for _, _, shape in self._param_shapes))

    @property
    def n_features(self):
        """The input width (a tuple of widths for a model with several inputs)."""
        return self._input_widths[0] if len(self._input_widths) == 1 else tuple(self._input_widths)

    def _allocate_parameters(self):
        k = self._kernels
        owner = getattr(self, "_shared_owner", None)
        if owner is not None:  # a sub-model of `owner`: its weights are owner's (views)
            return self._share_parameters(owner)
        shapes = [(l, name, shape) for l, layer in enumerate(self.layers)
                  for name, shape in layer.param_shapes().items()]
        offsets = np.cumsum([0] + [math.prod(shape) for _, _, shape in shapes]).tolist()
        total = offsets.pop()
        # initialise on the host, then move to the backend
        host = np.zeros(total, self.dtype)
        host_params = [{} for _ in self.layers]
        for (l, name, shape), offset in zip(shapes, offsets):
            host_params[l][name] = host[offset : offset + math.prod(shape)].reshape(shape)
        host_state = [{name: np.zeros(shape, self.dtype) for name, shape in layer.state_shapes().items()}
                      for layer in self.layers]
        from .graph import _common_owner

        again = _common_owner(self.layers)  # all of one model's layers again: fresh weights
        fresh = again is not None and {id(l) for l in again.layers} <= {id(l) for l in self.layers}
        for layer, params, state in zip(self.layers, host_params, host_state):
            layer.initialize(params, state, self._rng)
            if layer._owner is not None and not fresh:  # a layer of another model: start from its weights
                other, slot = layer._owner
                for name, arr in list(params.items()) + list(state.items()):
                    arr[...] = other._kernels.to_host(getattr(slot, name))
        self._param_shapes, self._param_offsets = shapes, offsets
        self._theta = k.to_device(host)
        self._grad = k.zeros(total, self.dtype)
        states = [{n: k.to_device(a) for n, a in st.items()} for st in host_state]
        self._finish_parameters(states)
        for layer, slot in zip(self.layers, self._slots):
            layer._owner = (self, slot)

    def _share_parameters(self, owner):
        """A sub-model's parameters: views into `owner`'s theta (and its layers' state), so
        training either model changes both; gradients and optimizer state of its own."""
        where = {id(layer): l for l, layer in enumerate(owner.layers)}
        at = {(l, name): offset for (l, name, _), offset in zip(owner._param_shapes, owner._param_offsets)}
        shapes, offsets = [], []
        for l, layer in enumerate(self.layers):
            for name, shape in layer.param_shapes().items():
                shapes.append((l, name, shape))
                offsets.append(at[(where[id(layer)], name)])
        self._param_shapes, self._param_offsets = shapes, offsets
        self._theta = owner._theta
        self._grad = self._kernels.zeros(owner._theta.size, self.dtype)
        self._guard = owner._guard  # one guard over the one set of weights
        states = [{name: getattr(owner._slots[where[id(layer)]], name) for name in layer.state_shapes()}
                  for layer in self.layers]
        self._finish_parameters(states)

    def _finish_parameters(self, states):
        self._slots = self._parameter_slots(self._theta, self._grad, states)
        self.params = [getattr(self._slots[l], name) for l, name, _ in self._param_shapes]
        self.grads = [getattr(self._slots[l], "d" + name) for l, name, _ in self._param_shapes]
        self._init_optimizer_state()
        self._train_buffers = None
        self._predict_pool.clear()
        self._submodels = {}

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

    def get_weights(self):
        """[W1, b1, W2, b2, ...] as host copies, W of shape (out, in); BatchNorm layers add
        [gamma, beta, running_mean, running_var]. Those of one whole training step, also
        while another thread trains the model."""
        with self._guard.step_lock:
            return [self._kernels.to_host(arr) for _, arr in self._weight_slots()]

    def set_weights(self, weights):
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

    def _step(self, v, total=None, X0=None):
        """One step on the batch already in the buffers `v` (X0: its CSR rows, for sparse
        input); returns the batch-mean loss (or, given a device scalar `total`, adds the
        batch's loss sum to it and returns None).

        A loss that is not finite ends the step before it touches the weights."""
        self._forward(v, True, X0)
        loss = self._loss_and_grad(v, total)
        if loss is not None and not math.isfinite(loss):
            return loss
        self._backward(v, X0)
        self._update()
        return loss

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
    # the training loop: _training.py; inference: _inference.py

    def profile(self, X, y, steps=50, batch_size=32, gemm_gflops=None, verbose=1):
        """Where one training step's time goes, kernel call by kernel call.

        Runs `steps` training steps on mini-batches of (X, y), each kernel call timed on its
        own (gather, per layer the product and its epilogue, loss, weight and input
        gradients, update), and the step as `fit` runs it. Prints the table (verbose) and
        returns it as a list of dicts: per kernel ``kernel``, ``time_s`` (median),
        ``flop``, ``gflops`` and ``share`` of the kernels' sum (kind "kernel"), then the sum
        (kind "sum") and the fused step (kind "step") with ``fraction_of_limit``: the step's
        FLOP at the machine's sgemm rate (`gemm_gflops`, measured with a NumPy float32
        matmul when None) over its time. The weights and optimizer state are put back.
        """
        from .profile import profile_step

        return profile_step(self, X, y, steps, batch_size, gemm_gflops, verbose)

    def compute_gradients(self, X, y, sample_weight=None):
        """The loss of the batch (X, y) and every layer's gradients, without an update
        (PyTorch's ``loss.backward()`` without ``optimizer.step()``).

        Returns ``(loss, grads)``: the batch-mean loss (as train_step's) and a dict
        {layer name: {"dW": ..., "db": ...}} (BatchNorm: "dgamma", "dbeta"), host arrays of
        the parameters' shapes, in the order of ``model.layers``. The weights, BatchNorm's
        running statistics, the optimizer state and the random generator (dropout masks) are
        as they were before the call; frozen layers (``trainable=False``) get their
        gradients too."""
        Xs, T, labels = self._check_fit_data(X, y)
        n = Xs[0].shape[0]
        w = self._sample_weights(sample_weight, None, labels, n)
        sparse = issparse(Xs[0])
        k = self._kernels
        with self._guard.training("compute_gradients"), self._guard.step_lock:
            v = self._buffers_for(n, T, w is not None, sparse).views(n)
            X0 = csr_run(k, Xs[0], 0, n) if sparse else None
            if not sparse:
                for Xv, X_j in zip(v.X, Xs):
                    k.write(Xv, X_j)
            k.write(v.T, T)
            if w is not None:
                k.write(v.w, w)
            rng_state = self._rng.bit_generator.state
            states = [(getattr(slot, name), k.to_host(getattr(slot, name)))
                      for layer, slot in zip(self.layers, self._slots) for name in layer.state_shapes()]
            try:
                self._forward(v, True, X0)
                loss = self._loss_and_grad(v)
                if math.isfinite(loss):
                    self._backward(v, X0)
            finally:  # a forward pass in training mode moves BatchNorm's running statistics
                for arr, host in states:
                    k.write(arr, host)
                self._rng.bit_generator.state = rng_state
            if not math.isfinite(loss):
                raise DivergenceError(f"the loss is {loss} on this batch: no gradients. "
                                      + self._divergence_advice())
            grads = {}
            for layer, slot in zip(self.layers, self._slots):
                names = layer.param_shapes()
                if names:
                    grads[layer.name] = {"d" + name: k.to_host(getattr(slot, "d" + name)) for name in names}
        return float(loss), grads

    # ------------------------------------------------------------------------------------
    # looking inside: layers by name, sub-models that share the weights

    def get_layer(self, name=None, index=None):
        """The layer called `name` (or at position `index` of ``model.layers``), as Keras."""
        if (name is None) == (index is None):
            raise TypeError("get_layer takes a name or an index: model.get_layer('hidden2')")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"index must be an int; got {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"index must be in [{-len(self.layers)}, {len(self.layers)}) "
                                 f"(the model has {len(self.layers)} layers); got {index}")
            return self.layers[index]
        if not isinstance(name, str):
            raise TypeError(f"name must be a layer's name (a string); got {name!r}")
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in this model; its layers are "
                         f"{[layer.name for layer in self.layers]}")

    def freeze(self, *names):
        """Set ``trainable = False`` on the named layers (all layers when no name is given);
        ``unfreeze`` undoes it. Returns the model."""
        return self._set_trainable(names, False)

    def unfreeze(self, *names):
        """Set ``trainable = True`` on the named layers (all layers when no name is given)."""
        return self._set_trainable(names, True)

    def _set_trainable(self, names, value):
        layers = [self.get_layer(name) for name in names] if names else self.layers
        for layer in layers:
            layer.trainable = value
        return self

    def _submodel(self, layer):
        """The graph Model from the inputs to `layer`'s output, sharing the weights (made
        once per layer, kept)."""
        sub = self._submodels.get(id(layer))
        if sub is None:
            from .graph import Model

            sub = Model(self.inputs, layer.output, loss="mse")
            self._submodels[id(layer)] = sub
        return sub

    def save(self, path):
        """Save config, weights and optimizer state to an .npz file, atomically."""
        from .saving import save

        save(self, path)

    def to_onnx(self, path, dtype=None):
        """Export to an ONNX file for inference (fastmlp.onnx_io); returns the ModelProto.
        One graph input per model input, named after it."""
        from .onnx_io import to_onnx

        return to_onnx(self, path, dtype)

    def to_torch(self):
        """An equivalent torch.nn.Module with the weights copied (fastmlp.interop): an
        nn.Sequential for Sequential / MLP models, a GraphModule (inputs as positional
        arguments, in the model's input order) for graph Models."""
        from .interop import to_torch

        return to_torch(self)

    def _summary_rows(self):
        """(name, kind, output width, parameters, connected to) per node."""
        raise NotImplementedError

    def summary(self):
        """A table of the layers: name (type), output width, parameters and, as in Keras,
        what each is connected to."""
        rows = [("Layer (type)", "Output", "Params", "Connected to")]
        for name, kind, width, n, conn in self._summary_rows():
            rows.append((f"{name} ({kind})", str(width), str(n), ", ".join(conn)))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = lambda r: "  ".join(x.ljust(w_) for x, w_ in zip(r, widths)).rstrip()  # noqa: E731
        out = [f"{type(self).__name__} on {self.device} ({self.dtype.name}), loss={self.loss!r}",
               line(rows[0]), "-" * len(line(rows[0]))]
        out += [line(r) for r in rows[1:]]
        out.append(f"total parameters: {self.n_parameters}; optimizer: {self.optimizer!r}")
        return "\n".join(out)

    def plot(self, path=None, ax=None):
        """Draw the model's layers as a graph (matplotlib, the ``plot`` extra); saves to
        `path` when given; returns the figure."""
        from .graph import Model
        from .plot import plot_graph

        return plot_graph(self if isinstance(self, Model) else _ChainView(self), path, ax)

    def _config_common(self):
        return {
            "loss": self.loss,
            "label_smoothing": self.label_smoothing,
            **({"reduction": self.reduction} if self.reduction != "mean" else {}),
            "optimizer": {"name": type(self.optimizer).__name__, "config": self.optimizer.get_config()},
            "dtype": self.dtype.name,
            "seed": self.seed,
        }


class Sequential(_Network):
    """A stack of layers (Dense, Dropout, BatchNorm, Activation) trained with a fused loss
    and an optimizer.

    Parameters
    ----------
    layers : list of layers; each Dense layer's in_features must equal the size before it
        (``Dense(units)`` after the first layer takes it from there).
    loss : "cross_entropy" (softmax fused; integer labels or one-hot/probability targets),
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

    def __init__(self, layers, loss="cross_entropy", optimizer=None, device="auto",
                 dtype="float32", seed=None, label_smoothing=0.0, reduction="mean"):
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
        self.W, self.b = self._dense_parameters(self._slots)
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

    @property
    def inputs(self):
        """[the input node] of the stack seen as a graph (Keras' ``model.inputs``): with
        ``model.get_layer(name).output``, ``fastmlp.Model(model.inputs, ...)`` builds a
        sub-model that shares this model's weights."""
        if getattr(self, "_chain_inputs", None) is None:
            from .graph import Node

            x = node = Node(None, (), self.sizes[0], "input")
            for layer, width in zip(self.layers, self.sizes[1:]):
                node = Node(layer, (node,), width, layer.name)
                layer._output_node = node
            self._chain_inputs = [x]
        return list(self._chain_inputs)

    @property
    def output(self):
        """The output node of the stack seen as a graph (see ``inputs``)."""
        self.inputs
        return self.layers[-1]._output_node

    def get_layer(self, name=None, index=None):
        self.inputs  # the layers' output nodes
        return super().get_layer(name, index)

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

    def get_config(self):
        return {"layers": [{"type": type(layer).__name__, **layer.get_config()} for layer in self.layers],
                **self._config_common()}

    def _summary_rows(self):
        prev = "input"
        for i, layer in enumerate(self.layers):
            n = sum(math.prod(s) for s in layer.param_shapes().values())
            yield layer.name, type(layer).__name__, self.sizes[i + 1], n, [prev]
            prev = layer.name

    def __repr__(self):
        return f"{type(self).__name__}(sizes={self.sizes}, loss={self.loss!r}, device={self.device!r})"


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

    def __init__(self, sizes, activation="relu", output="identity", loss="cross_entropy",
                 optimizer=None, device="auto", dtype="float32", seed=None, dropout=0.0,
                 batch_norm=False, label_smoothing=0.0, residual=False, reduction="mean"):
        layers = mlp_layers(sizes, activation, output, dropout, batch_norm)
        super().__init__(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype,
                         seed=seed, label_smoothing=label_smoothing, reduction=reduction)


class _ChainView:
    """A Sequential seen as a graph (for plot): input, then one node per layer."""

    def __init__(self, model):
        from .graph import Node

        nodes = [Node(None, (), model.sizes[0], "input")]
        for layer, width in zip(model.layers, model.sizes[1:]):
            nodes.append(Node(layer, (nodes[-1],), width, layer.name))
        self._graph = SimpleNamespace(nodes=nodes, ins=[[]] + [[i] for i in range(len(model.layers))],
                                      out=len(nodes) - 1)


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
    for i, a in enumerate(acts):
        activation_code(a, f"activation[{i}]" if isinstance(activation, (list, tuple)) else "activation")
    if output != "softmax":
        activation_code(output, "output")
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
