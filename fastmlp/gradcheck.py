"""Backpropagation checked against central finite differences: ``fastmlp.gradcheck``.

The check, step by step:

1. A float64 twin of the model is made (its config and weights through the model-file round
   trip of saving.py, with the dtype set to float64, on the model's own backend). The
   user's model is only read, never written, whatever its dtype.
2. On the twin, one forward pass in training mode, the fused loss and one backward pass
   give the analytic gradient of every parameter (the whole of (X, y) is one batch, nothing
   is updated). Dropout masks are drawn once and kept for every pass that follows.
3. A sample of parameters is chosen: per parameter array (each W, b, gamma, beta) `n` of
   its entries, always including the one of largest analytic gradient; every entry of an
   array smaller than that, and every parameter of the model for ``n=None`` or ``"all"``.
4. Each sampled parameter is probed on its own: written as theta_i + eps, the loss
   recomputed, written as theta_i - eps, the loss recomputed, written back. The numerical
   gradient is (L(theta_i + eps) - L(theta_i - eps)) / (2 eps). One probe writes one
   number (not the whole parameter vector) and costs two forward passes.
5. The error of an array is ``max |analytic - numerical| / max(max |analytic|,
   max |numerical|, 0.01 * G)`` over its sampled entries, G the largest numerical gradient
   of any sampled parameter; the result is the worst array's error (0.0 when every
   gradient is exactly zero). The floor 0.01 * G keeps an array whose gradient is truly
   zero (the bias of a Dense layer before a BatchNorm) from dividing finite-difference
   noise by zero.

Why float64: finite differences need a small eps, and in float32 the loss only has about
seven digits, so (L+ - L-) / (2 eps) is mostly rounding noise (errors around 1e-3 for a
correct backward pass). In float64 a correct backward pass gives errors around 1e-9; a
wrong one gives errors of order 1e-2 to 1.

Cost: a probe costs two forward passes of the batch, so the check costs about
2 x (number of probes) forward passes; sampling keeps it to a few seconds on a model of a
few hundred thousand parameters, where checking every parameter takes minutes. A sample
finds a backward pass that is wrong in general (a wrong formula, a missing term, a wrong
scale); one wrong in a few entries only is found by ``n=None``.
"""

from __future__ import annotations

import io
import math
import sys
import time
from typing import Literal, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from . import io as fio
from ._network import _Network
from ._typing import Inputs
from ._validation import check_float
from .graph import Model
from .model import Sequential
from .saving import from_bytes, to_config
from .sparse import issparse

#: entries checked per parameter array by default
DEFAULT_N = 100


class GradcheckResult(float):
    """The worst relative error of a gradcheck, as a float, saying what it measured.

    It compares and formats as the number (``result < 1e-6``, ``f"{result:.2e}"``); its
    repr reads e.g. "worst relative error over 510 sampled parameters of 235146, float64:
    7.2e-10 (in hidden1.W)". Attributes: ``checked`` (parameters probed), ``total`` (the
    model's parameters), ``dtype`` (of the evaluation: "float64"), ``eps``, ``errors``
    ({parameter array label: its error}) and ``worst`` (the label of the worst array, or
    None when there is none).
    """

    def __new__(cls, value=0.0, checked=0, total=0, eps=0.0, errors=None):
        self = super().__new__(cls, value)
        self.checked, self.total, self.dtype, self.eps = checked, total, "float64", eps
        self.errors = dict(errors or {})
        self.worst = max(self.errors, key=self.errors.get) if self.errors else None
        return self

    def __repr__(self):
        if self.checked == self.total:
            what = f"all {self.total} parameters"
        else:
            what = f"{self.checked} sampled parameters of {self.total}"
        where = f" (in {self.worst})" if self.worst is not None and float(self) > 0 else ""
        return f"worst relative error over {what}, {self.dtype}: {float(self):.2g}{where}"

    __str__ = __repr__


def gradcheck(model: Union[Sequential, Model], X: Inputs, y: ArrayLike,
              eps: Optional[float] = None, n: Union[int, Literal["all"], None] = DEFAULT_N,
              seed: int = 0, verbose: Optional[bool] = None) -> GradcheckResult:
    """Worst relative error between the model's backprop gradients and finite differences.

    Evaluated in float64 on a copy of the model (the model itself is never changed, and a
    float32 model is checked as tightly as a float64 one: a correct backward pass gives
    errors around 1e-9). See the module's docstring for the method and the error's formula.

    X, y: one batch, as ``fit`` takes them (a few rows are enough: ``X[:8], y[:8]``).
    eps: the finite-difference step; default the cube root of float64's machine epsilon
        (about 6e-6).
    n: parameters checked per parameter array (W, b, gamma, beta), chosen at random (seeded
        by `seed`) with the one of largest gradient always among them; an array of at most
        n entries is checked whole. None or "all": every parameter (slow on a big model:
        each probe costs two forward passes).
    verbose: True draws a progress bar on stderr, False never; None (default) draws it only
        on a terminal, once the check has run for more than a second.

    Returns a GradcheckResult: a float (compare it, format it) whose repr says what it
    measured, e.g. "worst relative error over 510 sampled parameters of 235146, float64:
    7.2e-10 (in hidden1.W)" (the README's 784-256-128-10 network, 100 per array).
    """
    if not isinstance(model, _Network):
        hint = (" (a scikit-learn estimator's network, once fitted, is its model_)"
                if hasattr(type(model), "fit") else "")
        raise TypeError(f"model must be a fastmlp model (Sequential, MLP or Model){hint}; got "
                        f"{type(model).__name__}")
    eps = float(np.finfo(np.float64).eps) ** (1 / 3) if eps is None else eps
    eps = check_float(eps, "eps", low=0, low_open=True)
    n = _check_n(n)
    seed = _check_seed(seed)
    if verbose is not None and not isinstance(verbose, (bool, np.bool_)):
        raise TypeError(f"verbose must be True, False or None; got {verbose!r}")
    verbose = None if verbose is None else bool(verbose)

    twin = _float64_twin(model)
    Xs, T, _ = twin._check_fit_data(X, y)
    k = twin._kernels
    # the batch as train_step loads it: sparse X stays sparse (the first layer's sparse
    # kernels are checked too)
    v, X0 = twin._load_batch((Xs, T, None, issparse(Xs[0])))

    def loss():
        twin._forward(v, True, X0)
        return twin._loss_and_grad(v)

    loss()  # draws the dropout masks, then keeps them
    twin._freeze_masks(v, True)
    twin._backward(v, X0)
    analytic = k.to_host(twin._grad)
    theta = twin._theta

    labels = [f"{twin.layers[l].name}.{name}" for l, name, _ in twin._param_shapes]
    arrays = [(label, offset, math.prod(shape)) for label, (_, _, shape), offset
              in zip(labels, twin._param_shapes, twin._param_offsets)]
    rng = np.random.default_rng(seed)
    samples = [offset + _sample(analytic[offset : offset + size], n, rng)
               for _, offset, size in arrays]
    probes = np.concatenate(samples) if samples else np.zeros(0, np.int64)

    numerical = {}  # flat index -> numerical gradient
    progress = _Progress(len(probes), verbose)
    for done, i in enumerate(probes.tolist(), 1):
        value = k.to_host(theta[i : i + 1])
        k.write(theta[i : i + 1], value + eps)
        plus = loss()
        k.write(theta[i : i + 1], value - eps)
        minus = loss()
        k.write(theta[i : i + 1], value)
        numerical[i] = (plus - minus) / (2 * eps)
        progress.update(done)
    progress.close()

    return _result(analytic, numerical, arrays, samples, eps, twin.n_parameters)


# ---------------------------------------------------------------------------------------
# the pieces


def _check_n(n):
    """n as an int >= 1, or None for every parameter ("all" is None too)."""
    if n is None or (isinstance(n, str) and n == "all"):
        return None
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (parameters per array), None or 'all'; "
                         f"got {n!r}")
    return int(n)


def _check_seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)


def _float64_twin(model):
    """A float64 copy of `model` on its backend: its config and weights (BatchNorm's running
    statistics, the random generator's state) through the model-file round trip, the dtype
    set to float64. Taken under the model's training guard: a model another thread trains
    raises a RuntimeError, as fit would."""
    with model._guard.training("gradcheck"):
        config, weights, optimizer_state = to_config(model)
    buf = io.BytesIO()
    fio.write(buf, dict(config, dtype="float64"), weights, optimizer_state)
    return from_bytes(buf.getvalue(), device=model.device)


def _sample(grad, n, rng):
    """Indices into one parameter array's flat gradient `grad` to probe, sorted: all of
    them when n is None or the array is small, else the largest |gradient| and n - 1
    others drawn at random."""
    size = grad.size
    if n is None or size <= n:
        return np.arange(size)
    top = int(np.argmax(np.abs(grad)))
    others = rng.choice(size - 1, n - 1, replace=False)
    others[others >= top] += 1  # draw from every index but top
    return np.sort(np.append(others, top))


def _result(analytic, numerical, arrays, samples, eps, total):
    """The GradcheckResult of the probes: each array's error over its sampled entries (the
    formula of the module's docstring), and the worst."""
    checked = sum(len(s) for s in samples)
    largest = max((abs(d) for d in numerical.values()), default=0.0)
    floor = 0.01 * largest
    errors = {}
    for (label, _, _), idx in zip(arrays, samples):
        if len(idx) == 0:
            continue
        a = analytic[idx].astype(np.float64)
        d = np.array([numerical[i] for i in idx.tolist()])
        scale = max(float(np.abs(a).max()), float(np.abs(d).max()), floor)
        errors[label] = float(np.abs(a - d).max() / scale) if scale > 0 else 0.0
    worst = max(errors.values(), default=0.0)
    return GradcheckResult(worst, checked=checked, total=total, eps=eps, errors=errors)


class _Progress:
    """Probes done of all, on stderr: a line redrawn in place with "\\r" on a terminal (from
    the start with verbose=True, after a second with verbose=None), one closing line
    elsewhere with verbose=True, nothing with verbose=False."""

    width = 30
    interval = 0.1  # seconds between redraws
    quiet_for = 1.0  # verbose=None: seconds before the bar appears

    def __init__(self, total, verbose):
        self.stream = sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = callable(isatty) and bool(isatty())
        self.total, self.verbose = total, verbose
        self.start = self.last = time.perf_counter()
        self.drawn = False

    def _line(self, done, now):
        elapsed = now - self.start
        filled = self.width * done // max(self.total, 1)
        bar = "=" * filled + "." * (self.width - filled)
        if done < self.total:
            left = elapsed / max(done, 1) * (self.total - done)
            return f"gradcheck {done}/{self.total} probes [{bar}] - ETA: {_seconds(left)}"
        return f"gradcheck {done}/{self.total} probes [{bar}] - {_seconds(elapsed)}"

    def update(self, done):
        if self.verbose is False or not self.terminal:
            return
        now = time.perf_counter()
        if self.verbose is None and now - self.start < self.quiet_for:
            return
        if now - self.last < self.interval and done < self.total:
            return
        self.last = now
        self.stream.write("\r" + self._line(done, now))
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.drawn:
            self.stream.write("\r" + self._line(self.total, time.perf_counter()) + "\n")
        elif self.verbose is True:
            self.stream.write(self._line(self.total, time.perf_counter()) + "\n")
        self.stream.flush()


def _seconds(s):
    return f"{int(s // 60)}:{int(s % 60):02d}" if s >= 60 else f"{s:.1f}s"


__all__ = ["gradcheck", "GradcheckResult", "DEFAULT_N"]
