"""The NumPy reference backend: the oracle every other backend is tested against.

Written for clarity, not speed: each function is the formula from the lecture notes.
It follows the same contract as ``cpu.py`` and ``cuda.py``: same names, same arguments,
outputs written into the arrays the caller passes. (Unlike the compiled backends it may
allocate temporaries.)

Shapes are batch-first: activations ``(B, features)``, weights ``(out, in)``, bias ``(out,)``.
Activations are passed as integer codes from :mod:`fastmlp.kernels.codes`.
"""

import numpy as np

from .codes import ELU, ELU_ALPHA, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, TANH

name = "reference"


def _f(Z, act):
    """Activation f(Z)."""
    if act == IDENTITY:
        return Z
    if act == RELU:
        return np.maximum(Z, 0)
    if act == LEAKY_RELU:
        return np.where(Z > 0, Z, LEAKY_SLOPE * Z)
    if act == ELU:
        return np.where(Z > 0, Z, ELU_ALPHA * np.expm1(np.minimum(Z, 0)))
    if act == SIGMOID:
        # 1 / (1 + exp(-z)) written so that neither branch overflows
        e = np.exp(-np.abs(Z))
        return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))
    if act == TANH:
        return np.tanh(Z)
    raise ValueError(f"unknown activation code {act}")


def _df(A, act):
    """f'(Z) expressed through the activation's output A = f(Z)."""
    if act == IDENTITY:
        return np.ones_like(A)
    if act == RELU:
        return (A > 0).astype(A.dtype)
    if act == LEAKY_RELU:
        return np.where(A > 0, 1, LEAKY_SLOPE).astype(A.dtype)
    if act == ELU:
        return np.where(A > 0, 1, A + ELU_ALPHA).astype(A.dtype)
    if act == SIGMOID:
        return A * (1 - A)
    if act == TANH:
        return 1 - A * A
    raise ValueError(f"unknown activation code {act}")


def matmul(A, B, C, trans_a=False, trans_b=False):
    """C = op(A) @ op(B), op transposing when its flag is set."""
    C[...] = (A.T if trans_a else A) @ (B.T if trans_b else B)


def linear_forward(A_in, W, b, act, A_out):
    """A_out = f(A_in @ W.T + b)."""
    A_out[...] = _f(A_in @ W.T + b, act)


def activate(Z, act, A):
    """A = f(Z), elementwise."""
    A[...] = _f(Z, act)


def softmax(Z, P):
    """P = softmax(Z) along the features, stable for any logits."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    P[...] = E / E.sum(axis=1, keepdims=True)


def _log_softmax(Z):
    S = Z - Z.max(axis=1, keepdims=True)
    return S - np.log(np.exp(S).sum(axis=1, keepdims=True))


def softmax_cross_entropy(Z, T, dZ):
    """Mean over the batch of -sum(T * log softmax(Z)); dZ = d loss / d Z.

    T is either integer labels of shape (B,) or targets of shape (B, K) (one-hot or
    probabilities). For targets, dZ = (softmax(Z) * sum(T) - T) / B, which is
    (softmax(Z) - T) / B whenever the rows of T sum to one.
    """
    B = Z.shape[0]
    logP = _log_softmax(Z.astype(np.float64))
    if T.ndim == 1:
        T = np.eye(Z.shape[1])[T]
    T = T.astype(np.float64)
    loss = -(T * logP).sum() / B
    dZ[...] = (np.exp(logP) * T.sum(axis=1, keepdims=True) - T) / B
    return float(loss)


def sigmoid_binary_cross_entropy(Z, T, dZ):
    """Mean over all elements of BCE(sigmoid(Z), T); dZ = (sigmoid(Z) - T) / Z.size."""
    Z64 = Z.astype(np.float64)
    T64 = T.reshape(Z.shape).astype(np.float64)
    loss = (np.maximum(Z64, 0) - Z64 * T64 + np.log1p(np.exp(-np.abs(Z64)))).mean()
    dZ[...] = (_f(Z64, SIGMOID) - T64) / Z.size
    return float(loss)


def mse(Z, T, dZ):
    """Mean over all elements of (Z - T)^2; dZ = 2 (Z - T) / Z.size."""
    D = Z.astype(np.float64) - T.reshape(Z.shape)
    dZ[...] = 2 * D / Z.size
    return float((D * D).mean())


def delta_backward(delta, W, A_prev, act, delta_prev):
    """delta_prev = f'(A_prev) * (delta @ W), f' taken from the stored activation A_prev."""
    delta_prev[...] = _df(A_prev, act) * (delta @ W)


def weight_grad(delta, A_prev, dW, db):
    """dW = delta.T @ A_prev, db = sum of delta over the batch."""
    dW[...] = delta.T @ A_prev
    db[...] = delta.sum(axis=0)


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) in place; buf is the momentum buffer, zero at the start."""
    d = g + weight_decay * p
    if momentum != 0:
        buf[...] = momentum * buf + d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """torch.optim.Adam / AdamW in place; m, v zero at the start, step counts from 1."""
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m += (1 - beta1) * (g - m)
    v[...] = beta2 * v + (1 - beta2) * g * g
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = np.sqrt(v) / np.sqrt(bias_correction2) + eps
    p -= (lr / bias_correction1) * m / denom


def gather_rows(X, idx, out):
    """out[i] = X[idx[i]], cast to out's dtype."""
    out[...] = X[idx]


def count_correct(Z, y):
    """How many rows are classified right: argmax(Z) == y, or (Z > 0) == y for one output."""
    if Z.shape[1] == 1:
        return int(((Z[:, 0] > 0) == (y > 0.5)).sum())
    return int((Z.argmax(axis=1) == y).sum())


def activation_backward(A, act, delta):
    """delta *= f'(A) in place, f' taken from the stored activation A."""
    delta *= _df(A, act)
