"""The CPU backend's softmax and losses (part of kernels/cpu.py's contract, which re-exports
them): each loss returns the batch-mean loss and writes dZ = d loss / d Z in the same
compiled pass.

The element-wise losses (binary cross-entropy, MSE, Poisson) are one loop, compiled per
loss around that loss's formula for one element (kernels/scalar.py's LOSSES, the formulas
the CUDA backend compiles too).
"""

import math

import numpy as np
from numba import njit

from . import scalar
from .codes import SIGMOID
from .cpu_jit import _FAST, _jit, _jit_named


@_jit
def _row_exp(Z, i, E):
    """Write exp(Z[i] - max) into E[i] (stable for any logits); return (max, their sum)."""
    m = Z.shape[1]
    zmax = Z[i, 0]
    for j in range(1, m):
        zmax = max(zmax, Z[i, j])
    s = 0.0
    for j in range(m):
        e = math.exp(Z[i, j] - zmax)
        E[i, j] = e
        s += e
    return zmax, s


@_jit
def softmax(Z, P):
    """P = softmax(Z) along the features, stable for any logits."""
    n, m = Z.shape
    for i in range(n):
        _, s = _row_exp(Z, i, P)
        for j in range(m):
            P[i, j] /= s


# ---------------------------------------------------------------------------------------
# losses: each returns the batch-mean loss and writes dZ = d loss / d Z in the same pass


# the labels and the targets variants stay two loops: compiled code calls both by name, and
# each keeps its own order of operations (their numbers are fixed bit for bit)
@_jit
def _softmax_ce_labels(Z, y, dZ, w, smoothing):
    n, m = Z.shape
    inv_n = 1.0 / n
    off = smoothing / m  # the smoothed target of every class but the label's
    total = 0.0
    for i in range(n):
        wi = 1.0 if w is None else w[i]
        zmax, s = _row_exp(Z, i, dZ)
        log_s = math.log(s)
        z_sum = 0.0
        for j in range(m):
            z_sum += Z[i, j] - zmax
        total += wi * (log_s - (1 - smoothing) * (Z[i, y[i]] - zmax) - off * z_sum)
        scale = wi * inv_n / s
        for j in range(m):
            dZ[i, j] = dZ[i, j] * scale - wi * off * inv_n
        dZ[i, y[i]] -= wi * (1 - smoothing) * inv_n
    return total * inv_n


@_jit
def _softmax_ce_targets(Z, T, dZ, w, smoothing):
    n, m = Z.shape
    inv_n = 1.0 / n
    off = smoothing / m
    total = 0.0
    for i in range(n):
        wi = 1.0 if w is None else w[i]
        zmax, s = _row_exp(Z, i, dZ)
        log_s = math.log(s)
        q_sum = 0.0
        for j in range(m):
            q = (1 - smoothing) * T[i, j] + off
            q_sum += q
            total -= wi * q * (Z[i, j] - zmax - log_s)
        scale = wi * q_sum * inv_n / s
        for j in range(m):
            dZ[i, j] = dZ[i, j] * scale - wi * ((1 - smoothing) * T[i, j] + off) * inv_n
    return total * inv_n


def softmax_cross_entropy(Z, T, dZ, w=None, smoothing=0.0):
    """Mean over the batch of w_i * -sum_j(Q_ij * log softmax(Z)_ij); dZ = d loss / d Z.

    T is integer labels of shape (B,) or targets of shape (B, K) (one-hot or probabilities);
    Q = (1 - smoothing) * T + smoothing / K. w: per-sample weights (B,) or None.
    """
    if T.ndim == 1:
        return _softmax_ce_labels(Z, T, dZ, w, smoothing)
    return _softmax_ce_targets(Z, T, dZ, w, smoothing)


@_jit
def _targets_plogp(T, w):
    """sum_i w_i sum_j T_ij log T_ij / B (0 log 0 = 0): minus the targets' mean entropy."""
    n, m = T.shape
    total = 0.0
    for i in range(n):
        wi = 1.0 if w is None else w[i]
        row = 0.0
        for j in range(m):
            t = np.float64(T[i, j])
            if t > 0:
                row += t * math.log(t)
        total += wi * row
    return total / n


def softmax_kl_divergence(Z, T, dZ, w=None):
    """Mean over the batch of w_i * KL(T_i || softmax(Z_i)): cross-entropy minus the
    targets' entropy; T targets (B, K); dZ as cross-entropy's."""
    return _softmax_ce_targets(Z, T, dZ, w, 0.0) + _targets_plogp(T, w)



# the element-wise losses' formulas, inlined into their loops; Poisson's exp in float64
_LOSS_TERMS = scalar.compile_losses(njit(error_model="numpy", inline="always"),
                                    sigmoid=_FAST.f_of[SIGMOID], precise=np.float64)


def _make_elementwise_loss(name):
    term = _LOSS_TERMS[name]

    @_jit_named(f"elementwise_loss_{name}")
    def elementwise_loss(Z, T, dZ, w):
        """Mean over all elements of w_i * loss(Z_ij, T_ij); dZ = w_i loss'(Z_ij) / Z.size."""
        n, m = Z.shape
        inv = 1.0 / (n * m)
        total = 0.0
        for i in range(n):
            wi = 1.0 if w is None else w[i]
            for j in range(m):
                loss, grad = term(Z[i, j], T[i, j], wi)
                total += loss
                dZ[i, j] = grad * inv
        return total * inv

    return elementwise_loss


# compiled functions of their own names: other compiled code calls them
_bce = _make_elementwise_loss("bce")
_mse = _make_elementwise_loss("mse")
_poisson = _make_elementwise_loss("poisson")


def sigmoid_binary_cross_entropy(Z, T, dZ, w=None):
    """Mean over all elements of w_i * BCE(sigmoid(Z), T); dZ = w_i (sigmoid(Z) - T) / Z.size."""
    return _bce(Z, T.reshape(Z.shape), dZ, w)


def mse(Z, T, dZ, w=None):
    """Mean over all elements of w_i (Z - T)^2; dZ = 2 w_i (Z - T) / Z.size."""
    return _mse(Z, T.reshape(Z.shape), dZ, w)


def poisson(Z, T, dZ, w=None):
    """Half Poisson deviance (log link) up to its constant: mean of w_i (exp(Z) - T Z);
    dZ = w_i (exp(Z) - T) / Z.size."""
    return _poisson(Z, T.reshape(Z.shape), dZ, w)
