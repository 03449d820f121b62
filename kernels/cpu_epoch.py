"""Many training steps of a Dense stack in one compiled call (the CPU backend's fast path).

``fit`` on the CPU runs each step as a handful of kernel calls from Python: gather the batch,
``mlp_forward``, the loss, ``mlp_backward``, the optimizer's update, the metrics. Each call is
compiled, but the Python between them costs tens of microseconds a step, which is most of a
step for a small network. Here the same calls run in one compiled loop over ``steps``
batches (what Keras calls ``steps_per_execution``); Python comes back only between chunks
of steps, for the progress bar, callbacks and Ctrl-C.

The loop calls the very functions the per-step path calls (``gather_rows``,
``_mlp_forward``, the loss, ``_mlp_backward``, ``_sgd_update`` / ``_adam_update``, the metric
sums), with the same arguments, so the weights it produces are the per-step path's bit for
bit (tests/test_fast_epoch.py checks that) -- except for plain SGD (no momentum, no weight
decay), whose update is fused into the weight-gradient products (``_mlp_backward_sgd``):
there they agree to rounding. What it covers: a stack of Dense layers, full
batches, one of the losses and metrics in the tables below, SGD (momentum, Nesterov, weight
decay) or Adam/AdamW (AMSGrad), no gradient clipping, no frozen layers; fastmlp/_fast_fit.py
decides when a fit qualifies.

This module is CPU-only and not part of the kernel contract: the reference and CUDA
backends run the per-step path (CUDA keeps the data and the loss on the device already).
"""

import math

from numba import njit

from .codes import CACHE
from . import blas
from .cpu import (_bce, _column_sum_acc, _mlp_backward, _mlp_forward, _mse, _poisson,
                  _softmax_ce_labels, _softmax_ce_targets, _targets_plogp, _times_df,
                  count_binary_correct, count_correct, gather_rows, regression_sums)
from .cpu_optim import _adam_update, _sgd_update
from .scalar import specialise


def _jit(fn):
    return njit(cache=CACHE, nogil=True, error_model="numpy")(fn)


# ---------------------------------------------------------------------------------------
# the losses and metrics, each behind one signature so that one loop serves them all:
# loss(Z, T, dZ, w, smoothing) -> the batch-mean loss, dZ = d loss / d Z;
# metric(Z, T, correct, abs_err, sq_err) adds the batch to the epoch's sums.


@_jit
def _cross_entropy_targets(Z, T, dZ, w, smoothing):
    return _softmax_ce_targets(Z, T, dZ, w, smoothing)


@_jit
def _kl_divergence(Z, T, dZ, w, smoothing):
    return _softmax_ce_targets(Z, T, dZ, w, 0.0) + _targets_plogp(T, w)


@_jit
def _binary_cross_entropy(Z, T, dZ, w, smoothing):
    return _bce(Z, T, dZ, w)


@_jit
def _mean_squared_error(Z, T, dZ, w, smoothing):
    return _mse(Z, T, dZ, w)


@_jit
def _poisson_deviance(Z, T, dZ, w, smoothing):
    return _poisson(Z, T, dZ, w)


#: by name: the loss as the model's loss kernel computes it (cross_entropy by the targets'
#: form: integer labels or one-hot / probability rows)
LOSSES = {
    "cross_entropy_labels": _softmax_ce_labels,
    "cross_entropy_targets": _cross_entropy_targets,
    "kl_divergence": _kl_divergence,
    "binary_cross_entropy": _binary_cross_entropy,
    "mse": _mean_squared_error,
    "poisson": _poisson_deviance,
}


@_jit
def _accuracy(Z, T, correct, abs_err, sq_err):
    correct[0] += count_correct(Z, T)


@_jit
def _binary_accuracy(Z, T, correct, abs_err, sq_err):
    correct[0] += count_binary_correct(Z, T)


@_jit
def _regression(Z, T, correct, abs_err, sq_err):
    regression_sums(Z, T, abs_err, sq_err)


@_jit
def _no_metric(Z, T, correct, abs_err, sq_err):
    pass


#: by name: what fastmlp._metrics._Metrics adds per batch
METRICS = {"accuracy": _accuracy, "binary_accuracy": _binary_accuracy,
           "regression": _regression, "none": _no_metric}

#: the optimizer codes of `opt`; PLAIN_SGD: SGD without momentum on layers that all have a
#: bias, whose update _mlp_backward_sgd fuses into the products (at steps without weight decay)
SGD, ADAM, PLAIN_SGD = 0, 1, 2


@_jit
def _update(opt, theta, grad, state, hyper, step, weight_decay):
    """The optimizer's step `step` (counted from 1) over all parameters, as fastmlp.optim's
    SGD / Adam call their kernels: hyper-parameters computed in float64, then cast to the
    parameters' dtype. hyper: SGD (lr, momentum, nesterov); Adam (lr, beta1, beta2, eps,
    decoupled, amsgrad). state: SGD (buf, -, -); Adam (m, v, v_max)."""
    t = theta.dtype.type
    lr = hyper[0]
    if opt != ADAM:
        _sgd_update(theta, grad, state[0], t(lr), t(hyper[1]), t(weight_decay), hyper[2] != 0)
    else:
        beta1, beta2, eps, decoupled = hyper[1], hyper[2], hyper[3], hyper[4] != 0
        decay = 1 - lr * weight_decay if decoupled else 1.0
        coupled = 0.0 if decoupled else weight_decay
        s = float(step)  # float ** float: C's pow(), as Python's beta ** step
        _adam_update(theta, grad, state[0], state[1], state[2], t(lr / (1 - beta1 ** s)),
                     t(math.sqrt(1 - beta2 ** s)), t(beta1), t(beta2), t(eps), t(decay),
                     t(coupled), hyper[5] != 0)


@_jit
def _mlp_backward_sgd(delta, A, D, W, b, acts, lr, transposed):
    """The backward pass and plain SGD (no momentum, no weight decay) in one: per layer, from
    the last, the delta of the layer below from this layer's W, then the update as the
    weight-gradient product itself, W += -lr delta^T A_prev (the product's alpha = -lr,
    beta = 1), and b += -lr times the column sums of delta. No dW is written and no update
    pass reads it back: 1.2x a step of the MNIST network at batch 32. The rounding differs
    from dW, then W -= lr dW, in the last bits.

    transposed: W[l] holds W.T (inputs x outputs), updated as W.T += -lr A_prev^T delta.
    OpenBLAS runs these products faster than the ones on W (A @ W.T, delta^T @ A): 1.9x
    for the MNIST network's first layer at batch 32, 1.1x at 512."""
    for l in range(len(W) - 1, -1, -1):
        if l > 0:
            blas.gemm(delta[l], W[l], delta[l - 1], False, transposed, 0.0)  # delta @ W, old W
            _times_df(D[l], delta[l - 1], acts[l - 1])                  # * f'(D_prev)
        if transposed:
            blas.gemm(A[l], delta[l], W[l], True, False, 1.0, -lr)     # W.T += -lr A.T @ delta
        else:
            blas.gemm(delta[l], A[l], W[l], True, False, 1.0, -lr)     # W += -lr delta.T @ A
        _column_sum_acc(delta[l], b[l], -lr)                            # b += -lr sum delta


_MADE = {}


def train_steps_for(loss, metric):
    """The compiled loop for one loss and one metric (names in LOSSES and METRICS), made on
    first use:

    ``train_steps(X, T, w, order, start, steps, Xb, Tb, wb, T_loss, T_metric, A, D, delta,
    W, b, dW, db, acts, smoothing, theta, grad, opt, hyper, state, step, decays, losses,
    correct, abs_err, sq_err) -> the steps done``

    Step s trains on the rows ``order[start + s*B : start + (s+1)*B]`` (B = the batch
    buffers' rows): X, T and w (the sample weights as a column, or None) are gathered into
    the batch buffers Xb (= A[0]), Tb and wb; T_loss and T_metric are the views of Tb the
    loss and the metric read (labels or target rows). Then forward, the loss (written to
    losses[s]), backward, the update number step + s + 1 with weight decay decays[s], and the
    metric's sums. A loss that is not finite stops the loop before that step's update and
    returns s (the weights are those before step s), as the per-step path does."""
    key = (loss, metric)
    if key not in _MADE:
        _MADE[key] = _jit(specialise(_train_steps, f"train_steps_{loss}_{metric}",
                                     loss_fn=LOSSES[loss], metric_fn=METRICS[metric]))
    return _MADE[key]


loss_fn = metric_fn = None  # the globals _train_steps calls; each specialised copy has its own


def _train_steps(X, T, w, order, start, steps, Xb, Tb, wb, T_loss, T_metric, A, D, delta, W, b,
                 dW, db, acts, smoothing, theta, grad, opt, hyper, state, step, decays, losses,
                 correct, abs_err, sq_err, transposed=False):
    B = Xb.shape[0]
    L = len(W)
    for s in range(steps):
        idx = order[start + s * B: start + (s + 1) * B]
        gather_rows(X, idx, Xb)
        gather_rows(T, idx, Tb)
        if w is None:
            wv = None
        else:
            gather_rows(w, idx, wb)
            wv = wb[:, 0]
        _mlp_forward(A, D, W, b, acts, transposed)
        loss = loss_fn(A[L], T_loss, delta[L - 1], wv, smoothing)
        losses[s] = loss
        if not math.isfinite(loss):
            return s
        if opt == PLAIN_SGD and decays[s] == 0.0:  # the update fused into backward
            _mlp_backward_sgd(delta, A, D, W, b, acts, theta.dtype.type(hyper[0]), transposed)
        else:
            _mlp_backward(delta, A, D, W, dW, db, acts)
            _update(opt, theta, grad, state, hyper, step + s + 1, decays[s])
        metric_fn(A[L], T_metric, correct, abs_err, sq_err)
    return steps

