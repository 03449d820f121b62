"""The CPU backend: Numba-jitted kernels, with BLAS (through NumPy) for the matrix products.

Numba's own ``np.dot`` needs SciPy, which is not a dependency, so the GEMM part of each
kernel is NumPy's ``matmul`` writing into the caller's array (``out=``, no allocation, the
machine's sgemm/dgemm), and everything around it -- bias, activation, its derivative, the
losses, the reductions, the optimizer updates -- is one compiled pass over the data.

Same contract as ``reference.py``: same names, same arguments, outputs in caller-provided
arrays. Nothing here allocates an array.

Kernels are compiled on first use, once per dtype (float32, float64), and cached on disk
(``cache=True``). Set ``FASTMLP_NO_CACHE=1`` before importing fastmlp to switch the disk
cache off (read-only installs fall back to Numba's per-user cache directory by themselves).
"""

import math
import os

import numpy as np
from numba import njit

from .codes import ELU, ELU_ALPHA, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, TANH

name = "cpu"

CACHE = os.environ.get("FASTMLP_NO_CACHE", "").strip().lower() in ("", "0", "false", "no")


def _jit(fn):
    return njit(cache=CACHE, nogil=True, error_model="numpy")(fn)


# ---------------------------------------------------------------------------------------
# activation f and its derivative f' written through the output A = f(Z)
# (one generic scalar function each; the kernels below are specialised per code)


@_jit
def _f(z, act):
    if act == RELU:
        return z if z > 0 else z * 0
    if act == LEAKY_RELU:
        return z if z > 0 else z * LEAKY_SLOPE
    if act == ELU:
        return z if z > 0 else ELU_ALPHA * math.expm1(z)
    if act == SIGMOID:
        if z >= 0:
            return 1 / (1 + math.exp(-z))
        e = math.exp(z)
        return e / (1 + e)
    if act == TANH:
        return math.tanh(z)
    return z


@_jit
def _df(a, act):
    if act == RELU:
        return 1.0 if a > 0 else 0.0
    if act == LEAKY_RELU:
        return 1.0 if a > 0 else LEAKY_SLOPE
    if act == ELU:
        return 1.0 if a > 0 else a + ELU_ALPHA
    if act == SIGMOID:
        return a * (1 - a)
    if act == TANH:
        return 1 - a * a
    return 1.0


@_jit
def _bias_activate(Z, b, act):
    """Z = f(Z + b) in place: the epilogue of the linear layer."""
    n, m = Z.shape
    for i in range(n):
        for j in range(m):
            Z[i, j] = _f(Z[i, j] + b[j], act)


@_jit
def activation_backward(A, act, delta):
    """delta *= f'(A) in place, f' taken from the stored activation A."""
    if act == IDENTITY:
        return
    n, m = delta.shape
    for i in range(n):
        for j in range(m):
            delta[i, j] *= _df(A[i, j], act)


@_jit
def _column_sum(D, out):
    n, m = D.shape
    for j in range(m):
        out[j] = 0
    for i in range(n):
        for j in range(m):
            out[j] += D[i, j]


# ---------------------------------------------------------------------------------------
# matmul and the linear layer, forward and backward


def matmul(A, B, C, trans_a=False, trans_b=False):
    """C = op(A) @ op(B), op transposing when its flag is set (BLAS, into C)."""
    np.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)


def linear_forward(A_in, W, b, act, A_out):
    """A_out = f(A_in @ W.T + b): sgemm into A_out, then bias + activation in one pass."""
    np.matmul(A_in, W.T, out=A_out)
    _bias_activate(A_out, b, act)


def weight_grad(delta, A_prev, dW, db):
    """dW = delta.T @ A_prev, db = sum of delta over the batch."""
    np.matmul(delta.T, A_prev, out=dW)
    _column_sum(delta, db)


def delta_backward(delta, W, A_prev, act, delta_prev):
    """delta_prev = f'(A_prev) * (delta @ W), f' taken from the stored activation A_prev."""
    np.matmul(delta, W, out=delta_prev)
    activation_backward(A_prev, act, delta_prev)


@_jit
def activate(Z, act, A):
    """A = f(Z), elementwise."""
    n, m = Z.shape
    for i in range(n):
        for j in range(m):
            A[i, j] = _f(Z[i, j], act)


@_jit
def softmax(Z, P):
    """P = softmax(Z) along the features, stable for any logits."""
    n, m = Z.shape
    for i in range(n):
        zmax = Z[i, 0]
        for j in range(1, m):
            zmax = max(zmax, Z[i, j])
        s = 0.0
        for j in range(m):
            e = math.exp(Z[i, j] - zmax)
            P[i, j] = e
            s += e
        for j in range(m):
            P[i, j] /= s


# ---------------------------------------------------------------------------------------
# losses: each returns the batch-mean loss and writes dZ = d loss / d Z in the same pass


@_jit
def _row_logsumexp(Z, i, dZ):
    """Write exp(Z[i] - max) into dZ[i]; return (max, log of their sum)."""
    m = Z.shape[1]
    zmax = Z[i, 0]
    for j in range(1, m):
        zmax = max(zmax, Z[i, j])
    s = 0.0
    for j in range(m):
        e = math.exp(Z[i, j] - zmax)
        dZ[i, j] = e
        s += e
    return zmax, math.log(s)


@_jit
def _softmax_ce_labels(Z, y, dZ):
    n, m = Z.shape
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        zmax, log_s = _row_logsumexp(Z, i, dZ)
        total += log_s - (Z[i, y[i]] - zmax)
        scale = inv_n / math.exp(log_s)
        for j in range(m):
            dZ[i, j] *= scale
        dZ[i, y[i]] -= inv_n
    return total * inv_n


@_jit
def _softmax_ce_targets(Z, T, dZ):
    n, m = Z.shape
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        zmax, log_s = _row_logsumexp(Z, i, dZ)
        t_sum = 0.0
        for j in range(m):
            t_sum += T[i, j]
            total -= T[i, j] * (Z[i, j] - zmax - log_s)
        scale = t_sum * inv_n / math.exp(log_s)
        for j in range(m):
            dZ[i, j] = dZ[i, j] * scale - T[i, j] * inv_n
    return total * inv_n


def softmax_cross_entropy(Z, T, dZ):
    """Mean over the batch of -sum(T * log softmax(Z)); dZ = d loss / d Z.

    T is integer labels of shape (B,) or targets of shape (B, K) (one-hot or probabilities).
    """
    if T.ndim == 1:
        return _softmax_ce_labels(Z, T, dZ)
    return _softmax_ce_targets(Z, T, dZ)


@_jit
def _bce(Z, T, dZ):
    n, m = Z.shape
    inv = 1.0 / (n * m)
    total = 0.0
    for i in range(n):
        for j in range(m):
            z = Z[i, j]
            t = T[i, j]
            total += max(z, 0) - z * t + math.log1p(math.exp(-abs(z)))
            dZ[i, j] = (_f(z, SIGMOID) - t) * inv
    return total * inv


def sigmoid_binary_cross_entropy(Z, T, dZ):
    """Mean over all elements of BCE(sigmoid(Z), T); dZ = (sigmoid(Z) - T) / Z.size."""
    return _bce(Z, T.reshape(Z.shape), dZ)


@_jit
def _mse(Z, T, dZ):
    n, m = Z.shape
    inv = 1.0 / (n * m)
    total = 0.0
    for i in range(n):
        for j in range(m):
            d = Z[i, j] - T[i, j]
            total += d * d
            dZ[i, j] = 2 * d * inv
    return total * inv


def mse(Z, T, dZ):
    """Mean over all elements of (Z - T)^2; dZ = 2 (Z - T) / Z.size."""
    return _mse(Z, T.reshape(Z.shape), dZ)


# ---------------------------------------------------------------------------------------
# optimizer updates: one pass over a (flat) parameter array, in place


def _check_flat(*arrays):
    for a in arrays:
        if a.ndim != 1 or not a.flags.c_contiguous:
            raise ValueError(
                f"optimizer kernels take flat contiguous 1-D arrays; got shape {a.shape}"
            )


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) in place; buf is the momentum buffer, zero at the start.

    p, g, buf: flat contiguous 1-D arrays of the same length.
    """
    _check_flat(p, g, buf)
    _sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov)


@_jit
def _sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        if momentum != 0:
            buf[i] = momentum * buf[i] + d
            d = d + momentum * buf[i] if nesterov else buf[i]
        p[i] -= lr * d


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """torch.optim.Adam / AdamW in place; m, v zero at the start, step counts from 1.

    p, g, m, v: flat contiguous 1-D arrays of the same length.
    """
    _check_flat(p, g, m, v)
    _adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled)


@_jit
def _adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    decay = 1 - lr * weight_decay
    for i in range(p.size):
        gi = g[i]
        if weight_decay != 0:
            if decoupled:
                p[i] *= decay
            else:
                gi += weight_decay * p[i]
        m[i] += (1 - beta1) * (gi - m[i])
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
        p[i] -= step_size * m[i] / (math.sqrt(v[i]) / bias_correction2_sqrt + eps)


# ---------------------------------------------------------------------------------------
# data movement and metrics


@_jit
def gather_rows(X, idx, out):
    """out[i] = X[idx[i]], cast to out's dtype."""
    m = X.shape[1]
    for i in range(idx.shape[0]):
        r = idx[i]
        for j in range(m):
            out[i, j] = X[r, j]


@_jit
def count_correct(Z, y):
    """How many rows are classified right: argmax(Z) == y, or (Z > 0) == y for one output."""
    n, m = Z.shape
    correct = 0
    for i in range(n):
        if m == 1:
            correct += (Z[i, 0] > 0) == (y[i] > 0.5)
        else:
            best = 0
            for j in range(1, m):
                if Z[i, j] > Z[i, best]:
                    best = j
            correct += best == y[i]
    return correct
