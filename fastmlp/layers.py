"""Layers: each one's forward and backward side by side, as calls of the backend's kernels.

A layer maps A_in (B, n_in) to A_out (B, n_out). ``forward(k, A_in, A_out, Z, s, training)``
writes A_out (and Z, the pre-activation, for the activations whose derivative needs it);
``backward(k, delta, A_in, D_prev, act_prev, delta_prev, s)`` takes delta = d loss / d (this
layer's pre-activation), writes the layer's parameter gradients and, unless this is the first
layer, ``delta_prev = f'_prev(D_prev) * (d loss / d A_in)``, the delta of the layer before,
in the same pass. ``s`` holds the layer's parameters, gradients, state and scratch buffers.
"""

import numpy as np

from ._validation import check_float, check_int
from .kernels.codes import IDENTITY, NEEDS_PREACTIVATION, activation_code


class Layer:
    """Base class of the layers of a Sequential model."""

    activation = "identity"

    def build(self, in_features):
        """Fix the input size; return the output size."""
        raise NotImplementedError

    def param_shapes(self):
        """{name: shape} of the trainable parameters, in order."""
        return {}

    def state_shapes(self):
        """{name: shape} of the non-trainable state (e.g. running statistics), in order."""
        return {}

    def scratch_shapes(self, first):
        """{name: (per_row, shape)}: buffers a training step needs. per_row ones have a
        leading batch dimension (shape is then the rest)."""
        return {}

    def initialize(self, params, state, rng):
        pass

    @property
    def act(self):
        return activation_code(self.activation)

    @property
    def needs_preactivation(self):
        return self.act in NEEDS_PREACTIVATION

    def get_config(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """A fully-connected layer: ``A_out = activation(A_in @ W.T + b)``, W of shape (out, in).

    Initialisation: He normal N(0, 2 / fan_in) before relu, leaky_relu, elu, gelu and
    softplus; Glorot uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out)) before the others
    (tanh, sigmoid, identity). Biases start at zero.
    """

    _HE = ("relu", "leaky_relu", "elu", "gelu", "softplus")

    def __init__(self, in_features, out_features, activation="identity"):
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        activation_code(activation)
        self.activation = activation

    def build(self, in_features):
        return self.out_features

    def param_shapes(self):
        return {"W": (self.out_features, self.in_features), "b": (self.out_features,)}

    def initialize(self, params, state, rng):
        W, b = params["W"], params["b"]
        fan_in, fan_out = self.in_features, self.out_features
        if self.activation in self._HE:
            W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-limit, limit, W.shape)
        b[...] = 0

    def forward(self, k, A_in, A_out, Z, s, training):
        if Z is None:
            k.linear_forward(A_in, s.W, s.b, self.act, A_out)
        else:  # keep the pre-activation for f'
            k.linear_forward(A_in, s.W, s.b, IDENTITY, Z)
            k.activate(Z, self.act, A_out)

    def backward(self, k, delta, A_in, D_prev, act_prev, delta_prev, s):
        k.weight_grad(delta, A_in, s.dW, s.db)
        if delta_prev is not None:
            k.delta_backward(delta, s.W, D_prev, act_prev, delta_prev)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation}

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"


class Dropout(Layer):
    """Inverted dropout: in training each unit is zeroed with probability p and the others
    scaled by 1 / (1 - p); in predict/evaluate it passes its input through. The masks come
    from the model's seeded generator, so a seed makes them reproducible."""

    def __init__(self, p=0.5):
        self.p = check_float(p, "p", low=0, high=1, high_open=True)
        self.features = None

    def build(self, in_features):
        self.features = in_features
        return in_features

    def scratch_shapes(self, first):
        return {"U": (True, (self.features,))}

    def forward(self, k, A_in, A_out, Z, s, training):
        if training and self.p > 0:
            if not s.freeze_masks:  # gradcheck keeps one set of masks
                k.fill_uniform(s.U, s.rng)
            k.dropout_forward(A_in, s.U, self.p, A_out)
        else:
            k.activate(A_in, IDENTITY, A_out)

    def backward(self, k, delta, A_in, D_prev, act_prev, delta_prev, s):
        if delta_prev is not None:
            k.dropout_backward(delta, s.U, self.p, D_prev, act_prev, delta_prev)

    def get_config(self):
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

    def __init__(self, features=None, activation="identity", momentum=0.1, eps=1e-5):
        self.features = None if features is None else check_int(features, "features")
        activation_code(activation)
        self.activation = activation
        self.momentum = check_float(momentum, "momentum", low=0, high=1)
        self.eps = check_float(eps, "eps", low=0, low_open=True)

    def build(self, in_features):
        if self.features is not None and self.features != in_features:
            raise ValueError(
                f"BatchNorm features must equal the previous layer's outputs ({in_features}); "
                f"got {self.features}"
            )
        self.features = in_features
        return in_features

    def param_shapes(self):
        return {"gamma": (self.features,), "beta": (self.features,)}

    def state_shapes(self):
        return {"running_mean": (self.features,), "running_var": (self.features,)}

    def scratch_shapes(self, first):
        shapes = {"Xhat": (True, (self.features,)), "inv_std": (False, (self.features,))}
        if first:  # d loss / d input, computed by the kernel though nobody reads it
            shapes["dX"] = (True, (self.features,))
        return shapes

    def initialize(self, params, state, rng):
        params["gamma"][...] = 1
        params["beta"][...] = 0
        state["running_mean"][...] = 0
        state["running_var"][...] = 1

    def forward(self, k, A_in, A_out, Z, s, training):
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

    def backward(self, k, delta, A_in, D_prev, act_prev, delta_prev, s):
        if delta_prev is None:
            delta_prev, D_prev, act_prev = s.dX, A_in, IDENTITY
        k.batchnorm_backward(delta, s.Xhat, s.inv_std, s.gamma, s.dgamma, s.dbeta,
                             D_prev, act_prev, delta_prev)

    def get_config(self):
        return {"features": self.features, "activation": self.activation,
                "momentum": self.momentum, "eps": self.eps}


LAYERS = {"Dense": Dense, "Dropout": Dropout, "BatchNorm": BatchNorm}
