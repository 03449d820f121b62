"""fit's fast path on the CPU: runs of full batches in one compiled call each
(kernels/cpu_epoch.py), instead of one Python round of kernel calls per step.

``plan(...)`` says whether a fit qualifies (else None, and fit runs step by step as
before): a Sequential of Dense layers on the CPU with a BLAS Numba can call, dense input,
reduction "mean", an output the loss fuses (or the identity), SGD or Adam/AdamW without
gradient clipping, every layer trainable, and no callback that wants each batch (the
progress bar is drawn between runs). The weights, losses and metrics are the per-step
path's bit for bit -- plain SGD (no momentum, no weight decay) to rounding, its update fused
into the weight-gradient products -- and only the progress bar moves in coarser steps.

A run is sized to take about ``RUN_SECONDS`` (measured on the first run of a fit), so
Ctrl-C, the progress bar and other threads' whole-step reads wait no longer than that.
"""

import time

import numpy as np

from .callbacks import Callback, ProgressBar
from .optim import SGD, Adam, AdamW

RUN_SECONDS = 0.1
FIRST_RUN = 8  # steps in a fit's first run, which measures the time per step


def _blas_available():
    from .kernels import blas  # the CPU backend is loaded already when its model exists

    return blas.AVAILABLE


def _wants_batches(cb):
    """Does the callback do anything per batch (other than the progress bar)?"""
    kind = type(cb)
    return (kind.on_batch_begin is not Callback.on_batch_begin
            or (kind.on_batch_end is not Callback.on_batch_end and not isinstance(cb, ProgressBar)))


def _loss_name(model, T):
    if model.loss == "cross_entropy":
        return "cross_entropy_labels" if T.ndim == 1 else "cross_entropy_targets"
    return model.loss


def _metric_name(model):
    if model.loss == "poisson":
        return "none"
    if model.loss in ("cross_entropy", "kl_divergence", "binary_cross_entropy"):
        multilabel = model.loss == "binary_cross_entropy" and model.n_outputs > 1
        return "binary_accuracy" if multilabel else "accuracy"
    return "regression"


def plan(model, T, labels, dense_labels, callbacks, sparse, dist, metric=None):
    """A _Plan for this fit, or None when it must run step by step. metric: "none" when
    the caller keeps no metrics (the scikit-learn estimators), else the model's."""
    k = model._kernels
    opt = model.optimizer
    if (k.name != "cpu" or not _blas_available() or not getattr(model, "_dense_only", False)
            or sparse or dist is not None or model.reduction != "mean" or model._out_act != 0
            or type(opt) not in (SGD, Adam, AdamW) or opt.clip_norm is not None
            or model._trainable_runs() is not None or any(_wants_batches(cb) for cb in callbacks)):
        return None
    metric = metric or _metric_name(model)
    if dense_labels or (metric == "accuracy" and labels is None):
        return None  # accuracy read from one-hot rows: the per-step path's own gather
    # plain SGD's update fused into backward writes no gradients (not when a callback reads
    # them) and moves every b (not with a Dense(use_bias=False), whose b is a fixed zero)
    fuse = (not any(getattr(cb, "reads_gradients", False) for cb in callbacks)
            and all(getattr(layer, "use_bias", True) for layer in model.layers))
    return _Plan(model, _loss_name(model, T), metric, labels is not None, fuse)


class _Plan:
    def __init__(self, model, loss, metric, has_labels, fuse=True):
        from .kernels import cpu_epoch

        self.model = model
        self.kernels = cpu_epoch
        self.metric = metric
        self.train_steps = cpu_epoch.train_steps_for(loss, metric)
        self.has_labels = has_labels
        self.fuse = fuse
        self.smoothing = float(model.label_smoothing) if loss.startswith("cross_entropy") else 0.0
        self.run = FIRST_RUN
        self.losses = np.empty(0)
        self.correct = np.zeros(1, np.int64)
        self.no_sums = np.zeros(0, np.float64)

    def _hyper(self, opt):
        if isinstance(opt, SGD):
            plain = self.fuse and opt.momentum == 0  # the update can be fused into backward
            return (self.kernels.PLAIN_SGD if plain else self.kernels.SGD,
                    np.array([opt.lr, opt.momentum, float(opt.nesterov)]))
        return self.kernels.ADAM, np.array([opt.lr, opt.beta1, opt.beta2, opt.eps,
                                                 float(opt.decoupled), float(opt.amsgrad)])

    def _state(self, opt):
        state = self.model._opt_state
        if isinstance(opt, SGD):
            buf = state["momentum_buffer"]
            return (buf, buf, buf)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        return (m, v, state.get("max_exp_avg_sq", v))

    def epoch(self, data, v, full, metrics, decays=None):
        """The epoch's first `full` batches (all full) in runs of steps; yields after each run
        (the steps done so far, the sum of their losses times the batch size, None) -- or,
        last, (steps, sum, (step, loss)) for the first step whose loss is not finite, whose
        update was not made. `decays`: each step's weight decay (None: the optimizer's)."""
        step, loss_sum = 0, 0.0
        while step < full:
            done, losses, bad = self.steps(data, v, step * v.n, full - step, metrics,
                                           None if decays is None else decays[step:])
            for loss in losses[:done]:
                loss_sum += float(loss) * v.n
            if bad is not None:
                yield step + done, loss_sum, (step + bad, float(losses[bad]))
                return
            step += done
            yield step, loss_sum, None

    def steps(self, data, v, start, steps, metrics, decays=None):
        """Up to `steps` full batches from position `start` of the epoch's order, as long
        as one run takes (at most RUN_SECONDS once measured). Returns (steps done, losses
        of those steps, the first non-finite loss's step or None)."""
        model, opt = self.model, self.model.optimizer
        X, T, w, order = data
        steps = min(steps, self.run)
        if self.losses.shape[0] < steps:
            self.losses = np.empty(steps)
        code, hyper = self._hyper(opt)
        if decays is None:
            decays = np.full(steps, opt.weight_decay)
        self.correct[0] = 0
        T_metric = v.T0 if self.has_labels else v.T
        sums = (metrics.abs_err, metrics.sq_err) if self.metric == "regression" else (self.no_sums,) * 2
        clock = time.perf_counter()
        with model._guard.step_lock:  # readers in other threads see whole runs
            done = self.train_steps(
                X, T, w, order, start, steps, v.A[0], v.T2d, v.w2d, v.T, T_metric, v.A, v.D,
                v.delta, model.W, model.b, model.dW, model.db, model._act, self.smoothing,
                model._theta, model._grad, code, hyper, self._state(opt), model._opt_state["step"],
                decays, self.losses, self.correct, *sums)
            model._opt_state["step"] += done
        per_step = (time.perf_counter() - clock) / max(done, 1)
        self.run = max(1, int(RUN_SECONDS / max(per_step, 1e-7)))
        metrics.seen += done * v.n
        metrics.correct += int(self.correct[0])
        diverged = done if done < steps else None
        return done, self.losses[:done + (diverged is not None)], diverged

