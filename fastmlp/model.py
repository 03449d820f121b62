"""The model: layers, parameters, buffers, and the training step as a sequence of kernel calls.

Notation as in the lecture notes. Layer l (0-based) maps ``A[l]`` to
``A[l+1] = f_l(A[l] @ W[l].T + b[l])``; ``delta[l]`` is d loss / d Z of layer l. One step::

    forward:   for l in 0..L-1:  linear_forward(A[l], W[l], b[l], f[l])        -> A[l+1]
    loss:      loss_and_grad(A[L], T)                                          -> loss, delta[L-1]
    backward:  for l in L-1..0:  weight_grad(delta[l], A[l])                   -> dW[l], db[l]
                                 if l > 0: delta_backward(delta[l], W[l], A[l], f[l-1])
                                                                              -> delta[l-1]
    update:    optimizer kernel over all parameters at once

The weights and biases of all layers are views into one flat array ``theta`` and their
gradients views into one flat array ``grad`` (as llm.c does), so the update is one kernel
call. Buffers (A, delta, targets) are allocated once per batch size and reused.
"""

import math

import numpy as np

from . import kernels as _kernels
from ._validation import (check_X, check_choice, check_dtype, check_finite, check_float, check_int,
                          check_targets)
from .callbacks import Callback, History, ProgressBar
from .kernels.codes import ACTIVATIONS, IDENTITY, activation_code
from .optim import Optimizer, get_optimizer

#: loss name -> name of the fused kernel (loss and d loss / d output in one pass)
LOSSES = {
    "cross_entropy": "softmax_cross_entropy",
    "binary_cross_entropy": "sigmoid_binary_cross_entropy",
    "mse": "mse",
}

_HE = ("relu", "leaky_relu", "elu")  # initialised with He; the rest with Glorot


class Dense:
    """A fully-connected layer: ``A_out = activation(A_in @ W.T + b)``, W of shape (out, in)."""

    def __init__(self, in_features, out_features, activation="identity"):
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        activation_code(activation)
        self.activation = activation

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation}

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"


class _Buffers:
    """The arrays one training step (or one forward pass) works in, for up to `capacity` rows.

    ``views(n)`` gives the first n rows of each, made once per n and kept. Targets live in a
    2-D buffer of `target_width` columns; for integer labels (width 1) ``T`` is its column.
    """

    def __init__(self, sizes, capacity, dtype, target_width=0, target_dtype=None):
        self.capacity = capacity
        self.training = target_width > 0
        self.A = [np.empty((capacity, s), dtype) for s in sizes]
        if self.training:
            self.delta = [np.empty((capacity, s), dtype) for s in sizes[1:]]
            self.T2d = np.empty((capacity, target_width), target_dtype)
            self.labels2d = np.empty((capacity, 1), np.int64)
        self._views = {}

    def fits(self, n, target_width, target_dtype):
        return (self.capacity >= n and self.T2d.shape[1] == target_width
                and self.T2d.dtype == target_dtype)

    def views(self, n):
        if n not in self._views:
            v = _Views()
            v.n = n
            v.A = [a[:n] for a in self.A]
            if self.training:
                v.delta = [d[:n] for d in self.delta]
                v.T2d = self.T2d[:n]
                v.T0 = v.T2d[:, 0]
                v.T = v.T0 if v.T2d.dtype == np.int64 else v.T2d
                v.labels2d = self.labels2d[:n]
                v.labels = v.labels2d[:, 0]
            self._views[n] = v
        return self._views[n]


class _Views:
    pass


class Sequential:
    """A stack of Dense layers trained with a fused loss and an optimizer.

    Parameters
    ----------
    layers : list of Dense, each one's in_features equal to the previous one's out_features.
    loss : "cross_entropy" (softmax fused; integer labels or one-hot/probability targets),
        "binary_cross_entropy" (sigmoid fused; 0/1 labels) or "mse". The last layer of a
        classification model must have the identity activation: it outputs logits.
    optimizer : an Optimizer (``fastmlp.SGD(...)``, ``fastmlp.Adam(...)``), a name, or None
        for ``SGD(lr=0.01)``.
    device : "auto", "cpu" or "reference" (the NumPy oracle, slow). ``model.device`` says
        which backend was picked.
    dtype : "float32" (default) or "float64".
    seed : int or None. The same seed gives the same initial weights and the same shuffling.

    Initialisation: weights feeding a relu, leaky_relu or elu layer are drawn from He's
    normal distribution N(0, 2 / fan_in); all others (tanh, sigmoid, identity outputs) from
    Glorot's uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out)). Biases start at zero.
    """

    def __init__(self, layers, loss="cross_entropy", optimizer=None, device="auto",
                 dtype="float32", seed=None):
        if isinstance(layers, Dense) or not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError(f"layers must be a non-empty list of Dense layers; got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a Dense layer; got {layer!r}")
        for i in range(1, len(layers)):
            if layers[i].in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"layers[{i}].in_features must equal layers[{i - 1}].out_features "
                    f"({layers[i - 1].out_features}); got {layers[i].in_features}"
                )
        self.layers = list(layers)
        self.loss = check_choice(loss, "loss", tuple(LOSSES))
        if self.loss != "mse" and self.layers[-1].activation != "identity":
            raise ValueError(
                f"the last layer must have activation 'identity' with loss={self.loss!r} "
                f"(the {'softmax' if self.loss == 'cross_entropy' else 'sigmoid'} is fused into "
                f"the loss); got {self.layers[-1].activation!r}"
            )
        if self.loss == "cross_entropy" and self.layers[-1].out_features < 2:
            raise ValueError(
                "loss='cross_entropy' needs at least 2 outputs; for one output unit use "
                "loss='binary_cross_entropy'"
            )
        self.optimizer = get_optimizer(optimizer)
        self._kernels = _kernels.backend(device)
        self.device = self._kernels.name
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._loss_kernel = getattr(self._kernels, LOSSES[self.loss])
        self._act = [activation_code(layer.activation) for layer in self.layers]
        self.stop_training = False
        self._allocate_parameters()
        self._initialize()

    # ------------------------------------------------------------------------------------
    # parameters: W[l], b[l] are views into theta; dW[l], db[l] views into grad

    @property
    def sizes(self):
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    @property
    def n_features(self):
        return self.layers[0].in_features

    @property
    def n_outputs(self):
        return self.layers[-1].out_features

    def _allocate_parameters(self):
        shapes = []
        for layer in self.layers:
            shapes += [(layer.out_features, layer.in_features), (layer.out_features,)]
        total = sum(math.prod(s) for s in shapes)
        self._theta = np.zeros(total, self.dtype)
        self._grad = np.zeros(total, self.dtype)
        params, grads, offset = [], [], 0
        for shape in shapes:
            size = math.prod(shape)
            params.append(self._theta[offset : offset + size].reshape(shape))
            grads.append(self._grad[offset : offset + size].reshape(shape))
            offset += size
        self.W, self.b = params[0::2], params[1::2]
        self.dW, self.db = grads[0::2], grads[1::2]
        self._opt_state = self.optimizer.init_state(total, self.dtype)
        self._train_buffers = None
        self._predict_buffers = None

    @property
    def n_parameters(self):
        return self._theta.size

    def _initialize(self):
        for layer, W, b in zip(self.layers, self.W, self.b):
            fan_in, fan_out = layer.in_features, layer.out_features
            if layer.activation in _HE:
                W[...] = self._rng.normal(0.0, math.sqrt(2.0 / fan_in), W.shape)
            else:
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                W[...] = self._rng.uniform(-limit, limit, W.shape)
            b[...] = 0

    def get_weights(self):
        """[W1, b1, W2, b2, ...] as copies, W of shape (out, in)."""
        out = []
        for W, b in zip(self.W, self.b):
            out += [W.copy(), b.copy()]
        return out

    def set_weights(self, weights):
        """Set all parameters from [W1, b1, W2, b2, ...] (same layout as get_weights)."""
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list [W1, b1, W2, b2, ...]; got {type(weights).__name__}")
        targets = [p for pair in zip(self.W, self.b) for p in pair]
        if len(weights) != len(targets):
            raise ValueError(
                f"weights must hold {len(targets)} arrays (W and b for each of "
                f"{len(self.layers)} layers); got {len(weights)}"
            )
        checked = []
        for i, (new, old) in enumerate(zip(weights, targets)):
            name = f"weights[{i}] ({'W' if i % 2 == 0 else 'b'}{i // 2 + 1})"
            arr = np.asarray(new)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be a real array; got dtype {arr.dtype}")
            if arr.shape != old.shape:
                raise ValueError(f"{name} must have shape {old.shape}; got {arr.shape}")
            check_finite(arr, name, self.dtype)
            checked.append(arr)
        for arr, old in zip(checked, targets):
            old[...] = arr

    # ------------------------------------------------------------------------------------
    # the training step, as a sequence of kernel calls

    def _forward(self, A):
        k = self._kernels
        for l in range(len(self.layers)):
            k.linear_forward(A[l], self.W[l], self.b[l], self._act[l], A[l + 1])

    def _loss_and_grad(self, A_out, T, delta_out):
        loss = self._loss_kernel(A_out, T, delta_out)
        if self._act[-1] != IDENTITY:  # mse after a non-identity output: chain through f'
            self._kernels.activation_backward(A_out, self._act[-1], delta_out)
        return loss

    def _backward(self, A, delta):
        k = self._kernels
        for l in reversed(range(len(self.layers))):
            k.weight_grad(delta[l], A[l], self.dW[l], self.db[l])
            if l > 0:
                k.delta_backward(delta[l], self.W[l], A[l], self._act[l - 1], delta[l - 1])

    def _step(self, v):
        """One step on the batch already in the buffers `v`; returns the batch-mean loss."""
        self._forward(v.A)
        loss = self._loss_and_grad(v.A[-1], v.T, v.delta[-1])
        self._backward(v.A, v.delta)
        self.optimizer.update(self._kernels, self._theta, self._grad, self._opt_state)
        return loss

    # ------------------------------------------------------------------------------------
    # buffers

    def _buffers_for(self, n, T):
        """Training buffers for batches of up to n rows with targets like T (made once)."""
        width, dtype = (1, np.int64) if T.ndim == 1 else (T.shape[1], self.dtype)
        buf = self._train_buffers
        if buf is None or not buf.fits(n, width, dtype):
            buf = self._train_buffers = _Buffers(self.sizes, n, self.dtype, width, dtype)
        return buf

    # ------------------------------------------------------------------------------------
    # public training API

    def _check_fit_data(self, X, y, name_X="X", name_y="y"):
        X = check_X(X, self.n_features, name_X, self.dtype)
        T, labels = check_targets(y, self.loss, self.n_outputs, X.shape[0], self.dtype, name_y)
        return X, T, labels

    def train_step(self, X, y):
        """One explicit step (forward, loss, backward, update) on the batch (X, y).

        Returns the mean loss of the batch as a float.
        """
        X, T, _ = self._check_fit_data(X, y)
        n = X.shape[0]
        v = self._buffers_for(n, T).views(n)
        np.copyto(v.A[0], X, casting="unsafe")
        np.copyto(v.T, T, casting="unsafe")
        loss = self._step(v)
        self._check_loss(loss)
        return float(loss)

    def _check_loss(self, loss):
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: the loss became {loss}; lower the learning rate "
                f"(optimizer={self.optimizer!r}) or scale the inputs (e.g. pixels to [0, 1])"
            )

    def fit(self, X, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None,
            shuffle=True, callbacks=None, verbose=1):
        """Train for `epochs` passes over (X, y) in mini-batches; returns a History.

        validation_split takes the last fraction of the samples (before shuffling) as
        validation data, as Keras does; validation_data=(X_val, y_val) gives it directly.
        History keys: loss, accuracy (classification), val_loss, val_accuracy.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        """
        epochs = check_int(epochs, "epochs")
        batch_size = check_int(batch_size, "batch_size")
        validation_split = check_float(validation_split, "validation_split", 0, 1, high_open=True)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
        callbacks = list(callbacks or [])
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}] must be a fastmlp Callback; got {cb!r}")

        X, T, labels = self._check_fit_data(X, y)
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            val = self._check_fit_data(*validation_data, name_X="validation_data X",
                                       name_y="validation_data y")
        elif validation_split:
            n_val = int(round(X.shape[0] * validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} of {X.shape[0]} samples leaves "
                    f"{n_val} for validation and {X.shape[0] - n_val} for training; both need >= 1"
                )
            cut = X.shape[0] - n_val
            val = (X[cut:], T[cut:], None if labels is None else labels[cut:])
            X, T, labels = X[:cut], T[:cut], None if labels is None else labels[:cut]
        else:
            val = None

        n = X.shape[0]
        batch = min(batch_size, n)
        steps = -(-n // batch)
        buffers = self._buffers_for(batch, T)
        T2 = T if T.ndim == 2 else T.reshape(-1, 1)  # gather works on rows
        # accuracy compares the logits with T itself, except for one-hot/probability targets
        labels2 = None if labels is None or T.ndim == 1 or self.loss != "cross_entropy" else labels.reshape(-1, 1)
        order = np.arange(n)
        k = self._kernels

        history = History()
        cbs = [history] + callbacks + ([ProgressBar(verbose)] if verbose else [])
        self._fit_params = {"epochs": epochs, "steps": steps, "batch_size": batch, "samples": n}
        history.params = dict(self._fit_params)
        self.stop_training = False
        for cb in cbs:
            cb.set_model(self)
            cb.on_train_begin()
        batch_logs = {}
        for epoch in range(epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if shuffle:
                self._rng.shuffle(order)
            loss_sum, correct = 0.0, 0
            for step in range(steps):
                for cb in cbs:
                    cb.on_batch_begin(step)
                start = step * batch
                idx = order[start : start + batch]
                v = buffers.views(idx.shape[0])
                k.gather_rows(X, idx, v.A[0])
                k.gather_rows(T2, idx, v.T2d)
                loss = self._step(v)
                self._check_loss(loss)
                loss_sum += loss * v.n
                seen = start + v.n
                batch_logs = {"loss": loss_sum / seen}
                if labels is not None:
                    if labels2 is None:
                        correct += k.count_correct(v.A[-1], v.T0)
                    else:
                        k.gather_rows(labels2, idx, v.labels2d)
                        correct += k.count_correct(v.A[-1], v.labels)
                    batch_logs["accuracy"] = correct / seen
                for cb in cbs:
                    cb.on_batch_end(step, batch_logs)
            logs = dict(batch_logs)
            if val is not None:
                for key, value in self._evaluate_checked(*val).items():
                    logs["val_" + key] = value
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end(logs)
        return history

    # ------------------------------------------------------------------------------------
    # inference

    def _forward_batches(self, X, batch_size):
        """Yield (start, stop, output logits view) over X in batches of batch_size."""
        n = X.shape[0]
        cap = min(batch_size, n)
        buf = self._predict_buffers
        if buf is None or buf.capacity < cap:
            buf = self._predict_buffers = _Buffers(self.sizes, cap, self.dtype)
        for start in range(0, n, cap):
            v = buf.views(min(cap, n - start))
            np.copyto(v.A[0], X[start : start + v.n], casting="unsafe")
            self._forward(v.A)
            yield start, start + v.n, v.A[-1]

    def _outputs(self, X, batch_size, transform=None):
        X = check_X(X, self.n_features, dtype=self.dtype)
        batch_size = check_int(batch_size, "batch_size")
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        for start, stop, Z in self._forward_batches(X, batch_size):
            if transform is None:
                out[start:stop] = Z
            else:
                transform(Z, out[start:stop])
        return out

    def predict(self, X, batch_size=1024):
        """Class labels (int64) for classification; outputs for regression ((n,) for one output)."""
        Z = self._outputs(X, batch_size)
        if self.loss == "cross_entropy":
            return Z.argmax(axis=1).astype(np.int64)
        if self.loss == "binary_cross_entropy":
            pred = (Z > 0).astype(np.int64)
            return pred[:, 0] if self.n_outputs == 1 else pred
        return Z[:, 0] if self.n_outputs == 1 else Z

    def predict_proba(self, X, batch_size=1024):
        """Class probabilities: softmax for cross_entropy, sigmoid for binary_cross_entropy."""
        if self.loss == "cross_entropy":
            return self._outputs(X, batch_size, self._kernels.softmax)
        if self.loss == "binary_cross_entropy":
            sigmoid = self._kernels.activate
            return self._outputs(X, batch_size, lambda Z, P: sigmoid(Z, activation_code("sigmoid"), P))
        raise ValueError("predict_proba needs a classification loss; this model uses loss='mse' (use predict)")

    def evaluate(self, X, y, batch_size=1024):
        """{"loss": mean loss, "accuracy": fraction right (classification only)}."""
        batch_size = check_int(batch_size, "batch_size")
        X, T, labels = self._check_fit_data(X, y)
        return self._evaluate_checked(X, T, labels, batch_size)

    def _evaluate_checked(self, X, T, labels, batch_size=1024):
        n = X.shape[0]
        dZ = np.empty((min(batch_size, n), self.n_outputs), self.dtype)
        loss_sum, correct = 0.0, 0
        for start, stop, Z in self._forward_batches(X, batch_size):
            loss_sum += self._loss_kernel(Z, T[start:stop], dZ[: stop - start]) * (stop - start)
            if labels is not None:
                correct += self._kernels.count_correct(Z, labels[start:stop])
        result = {"loss": loss_sum / n}
        if labels is not None:
            result["accuracy"] = correct / n
        return result

    # ------------------------------------------------------------------------------------

    def get_config(self):
        return {
            "layers": [layer.get_config() for layer in self.layers],
            "loss": self.loss,
            "optimizer": {"name": type(self.optimizer).__name__, "config": self.optimizer.get_config()},
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def save(self, path):
        """Save config, weights and optimizer state to an .npz file, atomically."""
        from .io import save_model

        save_model(self, path)

    def summary(self):
        lines = [f"{type(self).__name__} on {self.device} ({self.dtype.name}), loss={self.loss!r}"]
        for i, layer in enumerate(self.layers):
            n = layer.in_features * layer.out_features + layer.out_features
            lines.append(f"  {i}: {layer!r}  params={n}")
        lines.append(f"  total parameters: {self.n_parameters}; optimizer: {self.optimizer!r}")
        return "\n".join(lines)

    def __repr__(self):
        return f"{type(self).__name__}(sizes={self.sizes}, loss={self.loss!r}, device={self.device!r})"


class MLP(Sequential):
    """A multi-layer perceptron from layer sizes, e.g. ``MLP([784, 256, 128, 10])``.

    activation: one name for every hidden layer or a list, one per hidden layer: identity,
    relu, leaky_relu (slope 0.01), elu (alpha 1), sigmoid, tanh. output: the last layer's
    activation, "identity" (logits; required for the classification losses) unless given.
    The other arguments are Sequential's.
    """

    def __init__(self, sizes, activation="relu", output="identity", loss="cross_entropy",
                 optimizer=None, device="auto", dtype="float32", seed=None):
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
        activation_code(output, "output")
        layers = [Dense(sizes[i], sizes[i + 1], a) for i, a in enumerate(acts + [output])]
        super().__init__(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype, seed=seed)


__all__ = ["Dense", "Sequential", "MLP", "LOSSES", "ACTIVATIONS", "Optimizer"]
