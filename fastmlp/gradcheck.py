"""Backpropagation checked against central finite differences."""

import numpy as np

from ._validation import check_float
from .sparse import issparse


def gradcheck(model, X, y, eps=None):
    """Worst relative error between the model's backprop gradients and finite differences.

    The analytic gradient comes from the model's own kernels (forward in training mode,
    fused loss, backward), on the whole of (X, y) as one batch, without updating anything.
    Each parameter is then nudged by +-eps and the loss recomputed: the numerical gradient
    is (L(theta + eps) - L(theta - eps)) / (2 eps). Dropout masks are drawn once and kept
    for all these passes; BatchNorm's running statistics are restored afterwards. For each
    parameter array (W, b, gamma, beta) the error is
    ``max |analytic - numerical| / max(max |analytic|, max |numerical|, 0.01 * G)``, G the
    largest numerical gradient of any parameter; the worst over all of them is returned (0.0
    when every gradient is exactly zero). The floor 0.01 * G keeps an array whose gradient
    is truly zero (the bias of a Dense layer before a BatchNorm) from dividing
    finite-difference noise by zero.

    Use a float64 model for a tight check (errors around 1e-9); float32 gives about 1e-3.
    eps defaults to the cube root of the dtype's machine epsilon (about 6e-6 in float64).
    """
    k = model._kernels
    Xs, T, _ = model._check_fit_data(X, y)
    if eps is None:
        eps = float(np.finfo(model.dtype).eps) ** (1 / 3)
    eps = check_float(eps, "eps", low=0, low_open=True)
    with model._guard.training("gradcheck"), model._guard.step_lock:  # it moves the weights
        # the batch as train_step loads it: sparse X stays sparse (the first layer's sparse
        # kernels are checked too)
        v, X0 = model._load_batch((Xs, T, None, issparse(Xs[0])))
        saved_weights = model.get_weights()  # includes BatchNorm running statistics
        saved = k.to_host(model._theta)

        def loss_at():
            model._forward(v, True, X0)
            return model._loss_and_grad(v)

        try:
            loss_at()  # draws the dropout masks
            model._freeze_masks(v, True)
            model._backward(v, X0)
            analytic = k.to_host(model._grad).astype(np.float64)
            numerical = np.empty_like(analytic)
            theta = saved.copy()
            for i in range(theta.size):
                theta[i] = saved[i] + eps
                k.write(model._theta, theta)
                plus = loss_at()
                theta[i] = saved[i] - eps
                k.write(model._theta, theta)
                minus = loss_at()
                theta[i] = saved[i]
                numerical[i] = (plus - minus) / (2 * eps)
        finally:
            model._freeze_masks(v, False)
            model.set_weights(saved_weights)

    floor = 0.01 * float(np.abs(numerical).max()) if numerical.size else 0.0
    worst, offset = 0.0, 0
    for param in model.params:
        size = int(np.prod(param.shape))
        a = analytic[offset : offset + size]
        d = numerical[offset : offset + size]
        offset += size
        scale = max(np.abs(a).max(), np.abs(d).max(), floor)
        if scale > 0:
            worst = max(worst, float(np.abs(a - d).max() / scale))
    return worst
