"""The NumPy reference backend: the oracle every other backend is tested against.

Written for clarity, not speed: each function is its formula, written out in NumPy.
It follows the same contract as ``cpu.py`` and ``cuda/``: same names, same arguments,
outputs written into the arrays the caller passes. (Unlike the compiled backends it may
allocate temporaries.)

Shapes are batch-first: activations ``(B, features)``, weights ``(out, in)``, bias ``(out,)``.
Activations are passed as integer codes from :mod:`fastmlp.kernels.codes`.
"""

import sys

import numpy as np

from math import erfc as _erfc

from . import stack
from .codes import (ELU, ELU_ALPHA, GELU, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID,
                    SOFTPLUS, TANH)

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
    if act == GELU:
        return 0.5 * Z * _erfc_array(-Z / np.sqrt(2))  # z * Phi(z); erfc stays accurate for z << 0
    if act == SOFTPLUS:
        return np.maximum(Z, 0) + np.log1p(np.exp(-np.abs(Z)))
    raise ValueError(f"unknown activation code {act}")


_erfc_array = np.vectorize(_erfc, otypes=[np.float64])


def _df(A, act):
    """f'(Z) expressed through the activation's output A = f(Z); for GELU (see
    codes.NEEDS_PREACTIVATION) A is the pre-activation Z itself."""
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
    if act == GELU:  # A is Z here: Phi(z) + z phi(z)
        Z = A.astype(np.float64)
        return (0.5 * _erfc_array(-Z / np.sqrt(2)) + Z * np.exp(-0.5 * Z * Z) / np.sqrt(2 * np.pi)).astype(A.dtype)
    if act == SOFTPLUS:  # A = log(1 + e^z), f' = sigmoid(z) = 1 - e^-A
        return -np.expm1(-A)
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


def _weights(w, B):
    return np.ones((B, 1)) if w is None else np.asarray(w, np.float64).reshape(B, 1)


def softmax_cross_entropy(Z, T, dZ, w=None, smoothing=0.0):
    """Mean over the batch of w_i * -sum_j(Q_ij * log softmax(Z)_ij); dZ = d loss / d Z.

    T is integer labels of shape (B,) or targets of shape (B, K) (one-hot or probabilities);
    Q = (1 - smoothing) * T + smoothing / K, PyTorch's label smoothing. w: per-sample weights
    of shape (B,) or None; the loss is sum_i w_i l_i / B (Keras' convention). For targets,
    dZ_i = w_i (softmax(Z_i) * sum(Q_i) - Q_i) / B.
    """
    B, K = Z.shape
    logP = _log_softmax(Z.astype(np.float64))
    if T.ndim == 1:
        T = np.eye(K)[T]
    Q = (1 - smoothing) * T.astype(np.float64) + smoothing / K
    W = _weights(w, B)
    loss = -(W * Q * logP).sum() / B
    dZ[...] = W * (np.exp(logP) * Q.sum(axis=1, keepdims=True) - Q) / B
    return float(loss)


def softmax_kl_divergence(Z, T, dZ, w=None):
    """Mean over the batch of w_i * KL(T_i || softmax(Z_i)) = sum_j T_ij (log T_ij - log
    softmax(Z)_ij) (0 log 0 = 0): cross-entropy minus the targets' entropy. T: targets
    (B, K), rows of probabilities. dZ = w_i (softmax(Z_i) sum(T_i) - T_i) / B, as
    cross-entropy's."""
    B = Z.shape[0]
    T64 = T.astype(np.float64)
    ce = softmax_cross_entropy(Z, T, dZ, w)
    plogp = np.where(T64 > 0, T64 * np.log(np.where(T64 > 0, T64, 1.0)), 0.0).sum(axis=1, keepdims=True)
    return float(ce + (_weights(w, B) * plogp).sum() / B)


def sigmoid_binary_cross_entropy(Z, T, dZ, w=None):
    """Mean over all elements of w_i * BCE(sigmoid(Z), T); dZ = w_i (sigmoid(Z) - T) / Z.size."""
    Z64 = Z.astype(np.float64)
    T64 = T.reshape(Z.shape).astype(np.float64)
    W = _weights(w, Z.shape[0])
    loss = (W * (np.maximum(Z64, 0) - Z64 * T64 + np.log1p(np.exp(-np.abs(Z64))))).mean()
    dZ[...] = W * (_f(Z64, SIGMOID) - T64) / Z.size
    return float(loss)


def mse(Z, T, dZ, w=None):
    """Mean over all elements of w_i (Z - T)^2; dZ = 2 w_i (Z - T) / Z.size."""
    D = Z.astype(np.float64) - T.reshape(Z.shape)
    W = _weights(w, Z.shape[0])
    dZ[...] = 2 * W * D / Z.size
    return float((W * D * D).mean())


def poisson(Z, T, dZ, w=None):
    """Half Poisson deviance with a log link, up to its constant: Z is log(mean), T >= 0.

    Mean over all elements of w_i (exp(Z) - T Z) (PyTorch's PoissonNLLLoss(log_input=True));
    dZ = w_i (exp(Z) - T) / Z.size. exp(Z) is taken once, in float64.
    """
    Z64 = Z.astype(np.float64)
    T64 = T.reshape(Z.shape).astype(np.float64)
    W = _weights(w, Z.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        M = np.exp(Z64)
        dZ[...] = W * (M - T64) / Z.size
        return float((W * (M - T64 * Z64)).mean())


def delta_backward(delta, W, A_prev, act, delta_prev, accumulate=False):
    """delta_prev = f'(A_prev) * (delta @ W), f' taken from the stored activation A_prev.

    accumulate=True adds what delta_prev holds first (GEMM with beta = 1):
    delta_prev = f'(A_prev) * (delta_prev + delta @ W), for a layer whose output feeds
    several consumers (pass act=IDENTITY until the last of them)."""
    G = delta @ W
    if accumulate:
        G = G + delta_prev
    delta_prev[...] = _df(A_prev, act) * G


def weight_grad(delta, A_prev, dW, db, accumulate=False):
    """dW = delta.T @ A_prev, db = sum of delta over the batch; accumulate=True adds them to
    what dW and db hold (a layer used more than once: its gradient is the sum over uses)."""
    if accumulate:
        dW += delta.T @ A_prev
        db += delta.sum(axis=0)
    else:
        dW[...] = delta.T @ A_prev
        db[...] = delta.sum(axis=0)


def add(X, Y, out):
    """out = X + Y, elementwise (2-D; out may be X or Y): Add's forward pass, and the sum of
    the deltas that reach a layer feeding several consumers."""
    out[...] = X + Y


# ---------------------------------------------------------------------------------------
# sparse input: the first layer multiplies CSR rows (data, indices, indptr) directly.
# Row i's entries are data[indptr[i]:indptr[i+1]] in the columns indices[...]; indptr may
# start at any offset (a slice of a bigger matrix's indptr), so a run of rows needs no copy.


def _csr_dense(data, indices, indptr, n_cols):
    X = np.zeros((indptr.shape[0] - 1, n_cols))
    for i in range(X.shape[0]):
        cols = indices[indptr[i] : indptr[i + 1]]
        np.add.at(X[i], cols, data[indptr[i] : indptr[i + 1]])  # duplicates add up
    return X


def sparse_linear_forward(data, indices, indptr, W, b, act, A_out):
    """A_out = f(X @ W.T + b) for the CSR rows X (B rows, W.shape[1] columns)."""
    X = _csr_dense(data, indices, indptr, W.shape[1])
    A_out[...] = _f(X @ W.T.astype(np.float64) + b, act)


def sparse_weight_grad(delta, data, indices, indptr, dW, db):
    """dW = delta.T @ X for the CSR rows X, db = sum of delta over the batch."""
    X = _csr_dense(data, indices, indptr, dW.shape[1])
    dW[...] = delta.T.astype(np.float64) @ X
    db[...] = delta.sum(axis=0)


def gather_csr_rows(data, indices, indptr, idx, out_data, out_indices, out_indptr):
    """Rows idx of a CSR matrix as a CSR batch in the out_ arrays; returns its nnz
    (out_data and out_indices must hold at least that many entries)."""
    nnz = 0
    out_indptr[0] = 0
    for i, r in enumerate(idx):
        lo, hi = indptr[r], indptr[r + 1]
        out_data[nnz : nnz + hi - lo] = data[lo:hi]
        out_indices[nnz : nnz + hi - lo] = indices[lo:hi]
        nnz += hi - lo
        out_indptr[i + 1] = nnz
    return int(nnz)


def csr_to_dense(data, indices, indptr, out):
    """out = the CSR rows as a dense (B, n_cols) array (duplicates add up)."""
    out[...] = _csr_dense(data, indices, indptr, out.shape[1])


# ---------------------------------------------------------------------------------------
# a stack of Dense layers in one call each way (the compiled backends run the loop inside
# one kernel, so no Python runs between the layers)


def mlp_forward(A, D, W, b, acts):
    """Forward through L Dense layers: for l in 0..L-1, A[l+1] = f_l(A[l] @ W[l].T + b[l]).

    A, D: L+1 arrays (B, sizes[l]); W, b: L weights (sizes[l+1], sizes[l]) and biases; acts:
    L activation codes. For an activation in NEEDS_PREACTIVATION, D[l+1] is its own array and
    receives the pre-activation Z as well; otherwise D[l+1] is A[l+1].
    """
    stack.forward(sys.modules[__name__], A, D, W, b, acts)


def mlp_backward(delta, A, D, W, dW, db, acts):
    """Backward through the same L Dense layers, from delta[L-1] = d loss / d Z_L (the loss
    kernel's output): for l = L-1..0, dW[l] = delta[l].T @ A[l], db[l] = sum(delta[l]) and,
    for l > 0, delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l])."""
    stack.backward(sys.modules[__name__], delta, A, D, W, dW, db, acts)


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) in place; buf is the momentum buffer, zero at the start."""
    d = g + weight_decay * p
    if momentum != 0:
        buf[...] = momentum * buf + d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, v_max=None):
    """torch.optim.Adam / AdamW in place; m, v zero at the start, step counts from 1.

    With v_max (an array, zero at the start) this is the AMSGrad variant: the denominator
    uses the running maximum of v, kept in v_max.
    """
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m += (1 - beta1) * (g - m)
    v[...] = beta2 * v + (1 - beta2) * g * g
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = np.sqrt(v if v_max is None else v_max) / np.sqrt(bias_correction2) + eps
    p -= (lr / bias_correction1) * m / denom


def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum, centered):
    """torch.optim.RMSprop in place; the state arrays are zero at the start."""
    g = g + weight_decay * p
    square_avg[...] = alpha * square_avg + (1 - alpha) * g * g
    if centered:
        grad_avg += (1 - alpha) * (g - grad_avg)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum > 0:
        buf[...] = momentum * buf + g / avg
        p -= lr * buf
    else:
        p -= lr * g / avg


def adagrad_update(p, g, state_sum, lr, weight_decay, eps):
    """torch.optim.Adagrad in place: g += wd p; state_sum += g^2; p -= lr g / (sqrt(state_sum)
    + eps). `lr` is this step's rate, lr / (1 + (step - 1) lr_decay), from the caller."""
    g = g + weight_decay * p
    state_sum += g * g
    p -= lr * g / (np.sqrt(state_sum) + eps)


def lamb_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, segments):
    """LAMB (You et al., 2019, Algorithm 2) in place, one trust ratio per parameter tensor:
    the tensors are p[segments[j]:segments[j+1]]. Adam's bias-corrected moments give
    r = m_hat / (sqrt(v_hat) + eps); u = r + wd p; p -= lr * (||p|| / ||u||) * u per tensor
    (the ratio is 1 where either norm is 0). g is overwritten with u."""
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    g[...] = (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps) + weight_decay * p
    for j in range(len(segments) - 1):
        lo, hi = segments[j], segments[j + 1]
        p_norm = np.sqrt(np.sum(p[lo:hi].astype(np.float64) ** 2))
        u_norm = np.sqrt(np.sum(g[lo:hi].astype(np.float64) ** 2))
        ratio = p_norm / u_norm if p_norm > 0 and u_norm > 0 else 1.0
        p[lo:hi] -= (lr * ratio) * g[lo:hi]

def scale(x, c):
    """x *= c in place (a flat array)."""
    x *= x.dtype.type(c)


def clip_grad_norm(g, max_norm):
    """Scale g in place so that its L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_:
    factor max_norm / (norm + 1e-6) when below 1). Returns the norm before clipping."""
    norm = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        g *= coef
    return norm


# ---------------------------------------------------------------------------------------
# dropout and batch normalisation: forward, and backward into the previous layer's delta


def fill_uniform(U, rng):
    """U = uniform random numbers in [0, 1) from `rng` (a numpy Generator), drawn in U's
    dtype so that the CPU backend draws the very same numbers."""
    U[...] = rng.random(U.shape, dtype=U.dtype)


def dropout_forward(A_in, U, p, A_out):
    """A_out = A_in * (U >= p) / (1 - p): inverted dropout, each unit dropped with probability p."""
    A_out[...] = np.where(U >= p, A_in / (1 - p), 0)


def dropout_backward(delta, U, p, D_prev, act_prev, delta_prev):
    """delta_prev = f'_prev(D_prev) * delta * (U >= p) / (1 - p)."""
    delta_prev[...] = _df(D_prev, act_prev) * np.where(U >= p, delta / (1 - p), 0)


def batchnorm_forward(X, gamma, beta, running_mean, running_var, momentum, eps, act, Xhat, inv_std, A_out):
    """Training-mode batch norm: A_out = f(gamma * Xhat + beta), Xhat = (X - mean) * inv_std
    with the batch's mean and (biased) variance; keeps Xhat and inv_std for the backward pass
    and updates the running statistics in place as torch.nn.BatchNorm1d does (unbiased
    variance, running = (1 - momentum) * running + momentum * batch)."""
    n = X.shape[0]
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    var = X64.var(axis=0)
    inv_std[...] = 1 / np.sqrt(var + eps)
    Xhat[...] = (X64 - mean) * (1 / np.sqrt(var + eps))
    A_out[...] = _f(gamma * Xhat + beta, act)
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * var * n / (n - 1)


def batchnorm_inference(X, gamma, beta, running_mean, running_var, eps, act, A_out):
    """Inference-mode batch norm with the running statistics: A_out = f(gamma * Xhat + beta)."""
    A_out[...] = _f(gamma * (X - running_mean) / np.sqrt(running_var + eps) + beta, act)


def batchnorm_backward(delta, Xhat, inv_std, gamma, dgamma, dbeta, D_prev, act_prev, delta_prev):
    """dgamma = sum(delta * Xhat), dbeta = sum(delta); delta_prev = f'_prev(D_prev) * dX with
    dX = gamma * inv_std / B * (B * delta - dbeta - Xhat * dgamma)."""
    n = delta.shape[0]
    d64 = delta.astype(np.float64)
    dgamma[...] = (d64 * Xhat).sum(axis=0)
    dbeta[...] = d64.sum(axis=0)
    dX = gamma * inv_std / n * (n * d64 - d64.sum(axis=0) - Xhat * (d64 * Xhat).sum(axis=0))
    delta_prev[...] = _df(D_prev, act_prev) * dX


def gather_rows(X, idx, out):
    """out[i] = X[idx[i]], cast to out's dtype."""
    out[...] = X[idx]


def count_correct(Z, y):
    """How many rows are classified right: argmax(Z) == y, or (Z > 0) == y for one output."""
    if Z.shape[1] == 1:
        return int(((Z[:, 0] > 0) == (y > 0.5)).sum())
    return int((Z.argmax(axis=1) == y).sum())


def count_binary_correct(Z, T):
    """How many of the B x K labels are right: (Z > 0) == (T > 0.5), multi-label (sigmoid
    outputs; Keras' binary_accuracy is this count divided by B * K)."""
    return int(((Z > 0) == (T.reshape(Z.shape) > 0.5)).sum())


def activation_backward(A, act, delta):
    """delta *= f'(A) in place, f' taken from the stored activation A."""
    delta *= _df(A, act)


def regression_sums(Z, T, abs_err, sq_err):
    """Accumulate, per output, the sum of |Z - T| into abs_err and of (Z - T)^2 into sq_err."""
    D = Z.astype(np.float64) - T.reshape(Z.shape)
    abs_err += np.abs(D).sum(axis=0)
    sq_err += (D * D).sum(axis=0)


# ---------------------------------------------------------------------------------------
# memory: where this backend's arrays live (host memory; device memory for CUDA)

from .host_memory import asarray, empty, synchronize, to_device, to_host, write, zeros  # noqa: E402,F401
