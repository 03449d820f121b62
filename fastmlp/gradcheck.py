"""Backpropagation checked against central finite differences."""

import numpy as np

from ._validation import check_float


def gradcheck(model, X, y, eps=None):
    """Worst relative error between the model's backprop gradients and finite differences.

    The analytic gradient comes from the model's own kernels (forward, fused loss,
    backward), on the whole of (X, y) as one batch, without updating the weights. Each
    parameter is then nudged by +-eps and the loss recomputed: the numerical gradient is
    (L(theta + eps) - L(theta - eps)) / (2 eps). For each weight matrix and bias vector the
    error is ``max |analytic - numerical| / max(max |analytic|, max |numerical|)``; the
    worst over all of them is returned (0.0 when every gradient is exactly zero).

    Use a float64 model for a tight check (errors around 1e-9); float32 gives about 1e-3.
    eps defaults to the cube root of the dtype's machine epsilon (about 6e-6 in float64).
    """
    X, T, _ = model._check_fit_data(X, y)
    if eps is None:
        eps = float(np.finfo(model.dtype).eps) ** (1 / 3)
    eps = check_float(eps, "eps", low=0, low_open=True)
    n = X.shape[0]
    v = model._buffers_for(n, T).views(n)
    np.copyto(v.A[0], X, casting="unsafe")
    np.copyto(v.T, T, casting="unsafe")

    def loss_at():
        model._forward(v.A)
        return model._loss_and_grad(v.A[-1], v.T, v.delta[-1])

    saved = model._theta.copy()
    try:
        loss_at()
        model._backward(v.A, v.delta)
        analytic = model._grad.copy()
        numerical = np.empty_like(analytic, dtype=np.float64)
        theta = model._theta
        for i in range(theta.size):
            theta[i] = saved[i] + eps
            plus = loss_at()
            theta[i] = saved[i] - eps
            minus = loss_at()
            theta[i] = saved[i]
            numerical[i] = (plus - minus) / (2 * eps)
    finally:
        model._theta[...] = saved

    worst, offset = 0.0, 0
    for param in (p for pair in zip(model.W, model.b) for p in pair):
        a = analytic[offset : offset + param.size].astype(np.float64)
        d = numerical[offset : offset + param.size]
        offset += param.size
        scale = max(np.abs(a).max(), np.abs(d).max())
        if scale > 0:
            worst = max(worst, float(np.abs(a - d).max() / scale))
    return worst
