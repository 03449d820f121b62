"""Optimizers: hyper-parameters here, state in the model, the update in a kernel.

Each optimizer updates all parameters of a model in one kernel call: the model keeps its
weights and biases as views into one flat array (as llm.c does), and its gradients and the
optimizer state likewise. The formulas are PyTorch's, so a fastmlp model and a PyTorch model
that start from the same weights and see the same batches follow the same loss curve.

Every optimizer takes ``clip_norm``: when set, the gradient of all parameters together is
scaled down to that global L2 norm before the update (``torch.nn.utils.clip_grad_norm_``).
``lr`` may be changed between steps (the learning-rate schedules in fastmlp.callbacks do).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from ._validation import check_float


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


class Optimizer:
    """Base class. Subclasses define `state_names`, `update` and `get_config`."""

    state_names = ()

    def __init__(self, lr: float, clip_norm: Optional[float] = None) -> None:
        self.lr = check_float(lr, "lr", low=0, low_open=True)
        self.clip_norm = None if clip_norm is None else check_float(clip_norm, "clip_norm", low=0, low_open=True)

    def init_state(self, size: int, dtype: Any, zeros: Callable[..., Any] = np.zeros,
                   segments: Optional[np.ndarray] = None,
                   write: Optional[Callable[..., Any]] = None) -> dict[str, Any]:
        """Fresh state: zero arrays (one per name in `state_names`, made by `zeros`, the
        backend's allocator; `write(dst, host)`, the backend's copy, fills others) and the
        step count. `segments` are the boundaries of the parameter tensors in the flat
        vector (offsets 0 = s_0 <= s_1 <= ... = size), for optimizers that treat each tensor
        on its own (LAMB)."""
        state = {name: zeros(size, dtype) for name in self.state_names}
        state["step"] = 0
        return state

    def update(self, kernels: Any, p: Any, g: Any, state: dict[str, Any],
               runs: Optional[Sequence[tuple[int, int]]] = None) -> None:
        """One step: the update kernel over the flat parameters `p` with gradients `g`.

        runs: None (every parameter), or the (lo, hi) ranges of the trainable parameters;
        the kernel then runs over each range on its own, so the parameters outside them
        (frozen layers, ``trainable=False``) and their optimizer state do not move."""
        state["step"] += 1
        if runs is None:
            self._apply(kernels, p, g, state)
            return
        for lo, hi in runs:
            self._apply(kernels, p[lo:hi], g[lo:hi], self._state_range(state, lo, hi))

    def _state_range(self, state, lo, hi):
        """The optimizer state of the parameters lo:hi (views; the step count is shared)."""
        part = {name: state[name][lo:hi] for name in self.state_names}
        part["step"] = state["step"]
        return part

    def _apply(self, kernels, p, g, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = self._config()
        if self.clip_norm is not None:
            config["clip_norm"] = self.clip_norm
        return config

    def _config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __setattr__(self, name, value):
        if name == "lr" and "lr" in self.__dict__:  # schedules set it: keep it checked
            value = check_float(value, "lr", low=0, low_open=True)
        super().__setattr__(name, value)

    def __repr__(self):
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _short(value):
    """A hyper-parameter as a person writes it: a float to 12 significant digits (a schedule's
    ``0.001 * 0.25`` reads ``0.00025``, not ``0.0002500000000000001``), the rest as repr."""
    if isinstance(value, float):
        return repr(float(f"{value:.12g}"))
    return repr(value)


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0).

    ``d = g + weight_decay * p``; with momentum ``buf = momentum * buf + d`` and
    ``d = d + momentum * buf`` (Nesterov) or ``d = buf``; then ``p -= lr * d``.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: Optional[float] = None) -> None:
        super().__init__(lr, clip_norm)
        self.momentum = check_float(momentum, "momentum", low=0, high=1)  # [0, 1]: scikit-learn's
        self.nesterov = _check_bool(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)

    def _apply(self, kernels, p, g, state):
        kernels.sgd_update(
            p, g, state["momentum_buffer"], self.lr, self.momentum, self.weight_decay, self.nesterov
        )

    def _config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``; weight decay is decoupled (AdamW-style) by default.

    With ``decoupled=True`` (the default) this is ``torch.optim.AdamW``'s update:
    ``p *= 1 - lr * weight_decay`` before the Adam step. With ``decoupled=False`` the decay
    is added to the gradient, as ``torch.optim.Adam(weight_decay=...)`` does.
    ``amsgrad=True`` uses the running maximum of the second moment (AMSGrad), as PyTorch.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = True,
                 amsgrad: bool = False, clip_norm: Optional[float] = None) -> None:
        super().__init__(lr, clip_norm)
        self.beta1 = check_float(beta1, "beta1", low=0, high=1, high_open=True)
        self.beta2 = check_float(beta2, "beta2", low=0, high=1, high_open=True)
        self.eps = check_float(eps, "eps", low=0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)
        self.decoupled = _check_bool(decoupled, "decoupled")
        self.amsgrad = _check_bool(amsgrad, "amsgrad")
        if self.amsgrad:
            self.state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _apply(self, kernels, p, g, state):
        kernels.adam_update(
            p, g, state["exp_avg"], state["exp_avg_sq"], state["step"], self.lr, self.beta1,
            self.beta2, self.eps, self.weight_decay, self.decoupled, state.get("max_exp_avg_sq"),
        )

    def _config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "decoupled": self.decoupled,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, 0.01 by default."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False,
                 clip_norm: Optional[float] = None) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, decoupled=True, amsgrad=amsgrad,
                         clip_norm=clip_norm)

    def _config(self):
        config = super()._config()
        del config["decoupled"]
        return config


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    ``g += weight_decay * p``; ``sq = alpha * sq + (1 - alpha) g^2``; the denominator is
    ``sqrt(sq) + eps`` (``sqrt(sq - avg_g^2) + eps`` when centered); with momentum
    ``buf = momentum * buf + g / denom`` and ``p -= lr * buf``, else ``p -= lr * g / denom``.
    """

    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 clip_norm: Optional[float] = None) -> None:
        super().__init__(lr, clip_norm)
        self.alpha = check_float(alpha, "alpha", low=0, high=1)
        self.eps = check_float(eps, "eps", low=0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)
        self.momentum = check_float(momentum, "momentum", low=0, high=1, high_open=True)
        self.centered = _check_bool(centered, "centered")

    def _apply(self, kernels, p, g, state):
        kernels.rmsprop_update(
            p, g, state["square_avg"], state["grad_avg"], state["momentum_buffer"], self.lr,
            self.alpha, self.eps, self.weight_decay, self.momentum, self.centered,
        )

    def _config(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``.

    ``g += weight_decay * p``; ``clr = lr / (1 + (step - 1) * lr_decay)``;
    ``sum += g^2``; ``p -= clr * g / (sqrt(sum) + eps)``; the sum starts at
    ``initial_accumulator_value``.
    """

    state_names = ("sum",)

    def __init__(self, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                 clip_norm: Optional[float] = None) -> None:
        super().__init__(lr, clip_norm)
        self.lr_decay = check_float(lr_decay, "lr_decay", low=0)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)
        self.initial_accumulator_value = check_float(initial_accumulator_value,
                                                     "initial_accumulator_value", low=0)
        self.eps = check_float(eps, "eps", low=0, low_open=True)

    def init_state(self, size: int, dtype: Any, zeros: Callable[..., Any] = np.zeros,
                   segments: Optional[np.ndarray] = None,
                   write: Optional[Callable[..., Any]] = None) -> dict[str, Any]:
        state = super().init_state(size, dtype, zeros, segments, write)
        if self.initial_accumulator_value:
            host = np.full(size, self.initial_accumulator_value, dtype)
            if write is None:
                state["sum"][...] = host
            else:
                write(state["sum"], host)
        return state

    def _apply(self, kernels, p, g, state):
        clr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        kernels.adagrad_update(p, g, state["sum"], clr, self.weight_decay, self.eps)

    def _config(self):
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}


class LAMB(Optimizer):
    """LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning", Algorithm 2):
    Adam's bias-corrected update ``r = m_hat / (sqrt(v_hat) + eps)`` plus decoupled weight
    decay, ``u = r + weight_decay * p``, scaled per parameter tensor (each layer's W and b
    on their own) by the trust ratio ``||p|| / ||u||`` (1 where either is 0):
    ``p -= lr * ||p|| / ||u|| * u``.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-6, weight_decay: float = 0.0,
                 clip_norm: Optional[float] = None) -> None:
        super().__init__(lr, clip_norm)
        self.beta1 = check_float(beta1, "beta1", low=0, high=1, high_open=True)
        self.beta2 = check_float(beta2, "beta2", low=0, high=1, high_open=True)
        self.eps = check_float(eps, "eps", low=0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0)

    def init_state(self, size: int, dtype: Any, zeros: Callable[..., Any] = np.zeros,
                   segments: Optional[np.ndarray] = None,
                   write: Optional[Callable[..., Any]] = None) -> dict[str, Any]:
        state = super().init_state(size, dtype, zeros, segments, write)
        segments = np.array([0, size] if segments is None else segments, np.int64)
        if segments.ndim != 1 or segments[0] != 0 or segments[-1] != size or (np.diff(segments) < 0).any():
            raise ValueError(f"segments must rise from 0 to the parameter count {size}; got {segments}")
        state["segments"] = segments  # host array: the boundaries of the parameter tensors
        return state

    def _apply(self, kernels, p, g, state):
        kernels.lamb_update(p, g, state["exp_avg"], state["exp_avg_sq"], state["step"], self.lr,
                            self.beta1, self.beta2, self.eps, self.weight_decay, state["segments"])

    def _state_range(self, state, lo, hi):
        part = super()._state_range(state, lo, hi)
        seg = state["segments"]
        inner = seg[(seg > lo) & (seg < hi)] - lo
        part["segments"] = np.concatenate([[0], inner, [hi - lo]]).astype(np.int64)
        return part

    def _config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
              "lamb": LAMB}


def get_optimizer(optimizer):
    """An Optimizer instance from an instance, a name ('sgd', 'adam', 'adamw', 'rmsprop',
    'adagrad', 'lamb') or None (SGD with lr 0.01)."""
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
