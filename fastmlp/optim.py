"""Optimizers: hyper-parameters here, state in the model, the update in a kernel.

Each optimizer updates all parameters of a model in one kernel call: the model keeps its
weights and biases as views into one flat array (as llm.c does), and its gradients and the
optimizer state likewise. The formulas are PyTorch's, so a fastmlp model and a PyTorch model
that start from the same weights and see the same batches follow the same loss curve.
"""

import numpy as np

from ._validation import check_float


class Optimizer:
    """Base class. Subclasses define `state_names`, `update` and `get_config`."""

    state_names = ()

    def init_state(self, size, dtype):
        """Fresh state: zero arrays (one per name in `state_names`) and the step count."""
        state = {name: np.zeros(size, dtype) for name in self.state_names}
        state["step"] = 0
        return state

    def update(self, kernels, p, g, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0).

    ``d = g + weight_decay * p``; with momentum ``buf = momentum * buf + d`` and
    ``d = d + momentum * buf`` (Nesterov) or ``d = buf``; then ``p -= lr * d``.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr = check_float(lr, "lr", low=0, low_open=True)
        self.momentum = check_float(momentum, "momentum", low=0, high=1, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False; got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
        self.nesterov = bool(nesterov)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)

    def update(self, kernels, p, g, state):
        state["step"] += 1
        kernels.sgd_update(
            p, g, state["momentum_buffer"], self.lr, self.momentum, self.weight_decay, self.nesterov
        )

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``; weight decay is decoupled (AdamW-style) by default.

    With ``decoupled=True`` (the default, as in DESIGN.md) this is ``torch.optim.AdamW``'s
    update: ``p *= 1 - lr * weight_decay`` before the Adam step. With ``decoupled=False`` the
    decay is added to the gradient, as ``torch.optim.Adam(weight_decay=...)`` does.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=True):
        self.lr = check_float(lr, "lr", low=0, low_open=True)
        self.beta1 = check_float(beta1, "beta1", low=0, high=1, high_open=True)
        self.beta2 = check_float(beta2, "beta2", low=0, high=1, high_open=True)
        self.eps = check_float(eps, "eps", low=0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)
        if not isinstance(decoupled, (bool, np.bool_)):
            raise TypeError(f"decoupled must be True or False; got {decoupled!r}")
        self.decoupled = bool(decoupled)

    def update(self, kernels, p, g, state):
        state["step"] += 1
        kernels.adam_update(
            p, g, state["exp_avg"], state["exp_avg_sq"], state["step"], self.lr, self.beta1,
            self.beta2, self.eps, self.weight_decay, self.decoupled,
        )

    def get_config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "decoupled": self.decoupled}


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, 0.01 by default."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay, decoupled=True)

    def get_config(self):
        config = super().get_config()
        del config["decoupled"]
        return config


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get_optimizer(optimizer):
    """An Optimizer instance from an instance, a name ('sgd', 'adam', 'adamw') or None (SGD)."""
    if optimizer is None:
        return SGD()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    raise ValueError(
        f"optimizer must be an Optimizer (fastmlp.SGD(...), fastmlp.Adam(...)) or one of "
        f"{list(OPTIMIZERS)}; got {optimizer!r}"
    )
