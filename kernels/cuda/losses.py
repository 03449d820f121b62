"""Softmax, the losses (dZ and the batch's loss in one launch) and the metrics.

Every kernel computes in the dtype of its data (float32 data: float32 arithmetic; the
constants are made in that dtype per specialisation), but Poisson, whose exp(z) passes
float32's range above z = 88, in float64 (scalar.PRECISE_LOSSES). The batch's loss and the count of
right rows are reduced per block in shared memory, each block writes its partial sum, and
one small pass adds the partials in block order into a float64 scalar: the same sum, bit
for bit, on every run (no atomics).
"""

import functools
import math

import numpy as np

from ..scalar import PRECISE_LOSSES
from .device import (COL_X, COL_Y, MAX_REDUCE_BLOCKS, THREADS, _blocks, _block_sum_to,
                     _col_grid, _col_sum, _col_thread, _dummy, _launch, _reshape,
                     _sum_partials, count_kernel, cuda, loss_terms)


@functools.lru_cache(maxsize=None)
def _softmax_kernel(dt):
    ZERO = dt(0)

    def softmax(Z, P):
        n, m = Z.shape
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            zmax = Z[i, 0]
            for j in range(1, m):
                zmax = max(zmax, Z[i, j])
            s = ZERO
            for j in range(m):
                e = math.exp(Z[i, j] - zmax)
                P[i, j] = e
                s += e
            for j in range(m):
                P[i, j] = P[i, j] / s

    return cuda.jit(softmax)


def _dt(a):
    return np.dtype(a.dtype).type


def softmax(Z, P):
    """P = softmax(Z) along the features, stable for any logits (one thread per row)."""
    _launch(_softmax_kernel(_dt(Z)), _blocks(Z.shape[0]), THREADS, Z, P)


# ---------------------------------------------------------------------------------------
# losses: dZ written and the batch's loss summed in one launch (one thread per row, a
# shared-memory reduction per block, the blocks' partial sums added in order afterwards)
#
# One kernel, specialised per loss by a device function for one row i:
# row(Z, T, dZ, i, w_i, c, inv, acc) writes dZ[i] and returns acc + w_i * (the row's loss);
# c (the label smoothing) and inv (1 / B or 1 / Z.size) are in Z's dtype. The loss is summed
# in Z's dtype, or in float64 for the losses of scalar.PRECISE_LOSSES (_sum_dtype).


def _sum_dtype(dt, name):
    """The dtype the loss `name` is computed and summed in for data of the dtype `dt`."""
    return np.float64 if name in PRECISE_LOSSES else dt


@functools.lru_cache(maxsize=None)
def _loss_kernel(dt, row, sum_dt):
    """The loss kernel around `row`: (Z, T, dZ, w, has_w, c, inv, partials); the rows'
    losses summed in `sum_dt` (the partials' dtype)."""
    ZERO, ONE = sum_dt(0), dt(1)

    def loss(Z, T, dZ, w, has_w, c, inv, partials):
        red = cuda.shared.array(THREADS, sum_dt)
        t = cuda.threadIdx.x
        acc = ZERO
        for i in range(cuda.grid(1), Z.shape[0], cuda.gridsize(1)):
            acc = row(Z, T, dZ, i, w[i] if has_w else ONE, c, inv, acc)
        red[t] = acc
        _block_sum_to(red, t, partials)

    return cuda.jit(loss)


@functools.lru_cache(maxsize=None)
def _ce_row(dt, labels):
    """Softmax cross-entropy of row i, with integer labels (`labels`) or target rows;
    c = the label smoothing, inv = 1 / B."""
    ZERO, ONE = dt(0), dt(1)

    def ce(Z, T, dZ, i, wi, smoothing, inv_n, acc):
        m = Z.shape[1]
        off = smoothing / dt(m)
        keep = ONE - smoothing
        zmax = Z[i, 0]
        for j in range(1, m):
            zmax = max(zmax, Z[i, j])
        s = ZERO
        for j in range(m):
            s += math.exp(Z[i, j] - zmax)
        log_s = math.log(s)
        if labels:
            z_sum = ZERO
            for j in range(m):
                z_sum += Z[i, j] - zmax
            yi = int(T[i])
            scale = wi * inv_n / s
            for j in range(m):
                dZ[i, j] = math.exp(Z[i, j] - zmax) * scale - wi * off * inv_n
            dZ[i, yi] -= wi * keep * inv_n
            return acc + wi * (log_s - keep * (Z[i, yi] - zmax) - off * z_sum)
        q_sum = ZERO
        for j in range(m):
            q = keep * T[i, j] + off
            q_sum += q
            acc -= wi * q * (Z[i, j] - zmax - log_s)
        scale = wi * q_sum * inv_n / s
        for j in range(m):
            q = keep * T[i, j] + off
            dZ[i, j] = math.exp(Z[i, j] - zmax) * scale - wi * q * inv_n
        return acc

    return cuda.jit(device=True)(ce)


@functools.lru_cache(maxsize=None)
def _elementwise_row(dt, name):
    """An element-wise loss of row i (kernels/scalar.py's LOSSES[name]): dZ = w_i loss' *
    inv and the row's mean loss times w_i, summed in _sum_dtype; inv = 1 / Z.size."""
    ZERO, ONE = _sum_dtype(dt, name)(0), dt(1)
    term = loss_terms(dt)[name]

    def elementwise(Z, T, dZ, i, wi, c, inv, acc):
        m = Z.shape[1]
        row = ZERO
        for j in range(m):
            loss, grad = term(Z[i, j], dt(T[i, j]), ONE)
            row += loss
            dZ[i, j] = wi * grad * inv
        return acc + wi * row / dt(m)

    return cuda.jit(device=True)(elementwise)


@functools.lru_cache(maxsize=None)
def _plogp_row(dt):
    """w_i sum_j T_ij log T_ij of the targets T (passed as Z; 0 log 0 = 0)."""
    ZERO = dt(0)

    def plogp(T, T_, dZ, i, wi, c, inv, acc):
        row = ZERO
        for j in range(T.shape[1]):
            tij = T[i, j]
            if tij > ZERO:
                row += tij * math.log(tij)
        return acc + wi * row

    return cuda.jit(device=True)(plogp)


def _loss(kernel, Z, total, args, sum_dt=None):
    """Launch a loss kernel (its losses summed in `sum_dt`, None: Z's dtype) and add its
    blocks' sums (B * loss) into `total[0]`, or into a scratch scalar that is read back
    (then the batch-mean loss is returned as a float)."""
    n = Z.shape[0]
    grid = _blocks(n, cap=MAX_REDUCE_BLOCKS)
    got = _sum_partials(kernel, grid, args, _dt(Z) if sum_dt is None else sum_dt, total)
    return None if total is not None else float(got) / n


def _weighted(w, dt):
    """(w, has_w) for the loss kernel: a stand-in array when w is None."""
    return (_dummy(dt, 1), False) if w is None else (w, True)


def softmax_cross_entropy(Z, T, dZ, w=None, smoothing=0.0, total=None):
    """Mean over the batch of w_i * -sum_j(Q_ij * log softmax(Z)_ij); dZ = d loss / d Z.

    T: integer labels (B,) or targets (B, K); Q = (1 - smoothing) * T + smoothing / K;
    w: per-sample weights (B,) or None. One launch (and the small pass adding the blocks'
    sums). Returns the loss as a float (reading it back: this synchronises), or, with
    ``total`` (float64 device array of shape (1,)), adds ``sum_i w_i l_i`` (= B * loss) to
    ``total[0]`` and returns None without waiting.
    """
    dt = _dt(Z)
    kernel = _loss_kernel(dt, _ce_row(dt, T.ndim == 1), dt)
    return _loss(kernel, Z, total,
                 (Z, T, dZ, *_weighted(w, dt), dt(smoothing), dt(1.0 / Z.shape[0])))


def softmax_kl_divergence(Z, T, dZ, w=None, total=None):
    """Mean over the batch of w_i * KL(T_i || softmax(Z_i)): cross-entropy (targets, no
    smoothing) minus the targets' entropy; T targets (B, K); dZ as cross-entropy's. Two
    launches (the entropy term has its own reduction); ``total`` as the other losses."""
    dt = _dt(Z)
    ce = softmax_cross_entropy(Z, T, dZ, w, 0.0, total)
    plogp = _loss(_loss_kernel(dt, _plogp_row(dt), dt), T, total,
                  (T, T, _dummy(dt, 2), *_weighted(w, dt), dt(0), dt(0)))
    return None if total is not None else ce + plogp


def _elementwise_loss(name, Z, T, dZ, w, total):
    dt = _dt(Z)
    sum_dt = _sum_dtype(dt, name)
    return _loss(_loss_kernel(dt, _elementwise_row(dt, name), sum_dt), Z, total,
                 (Z, _reshape(T, Z.shape), dZ, *_weighted(w, dt), dt(0),
                  dt(1.0 / max(Z.size, 1))), sum_dt)


def sigmoid_binary_cross_entropy(Z, T, dZ, w=None, total=None):
    """Mean over all elements of w_i * BCE(sigmoid(Z), T); dZ = w_i (sigmoid(Z) - T) / Z.size.

    T: (B, K), or (B,) when K == 1. With ``total``: adds B * loss (= sum_ij w_i l_ij / K) to
    ``total[0]`` and returns None without waiting; else returns the loss (synchronises).
    """
    return _elementwise_loss("bce", Z, T, dZ, w, total)


def mse(Z, T, dZ, w=None, total=None):
    """Mean over all elements of w_i (Z - T)^2; dZ = 2 w_i (Z - T) / Z.size.

    T: (B, K), or (B,) when K == 1. With ``total``: adds B * loss (= sum_ij w_i d_ij^2 / K)
    to ``total[0]`` and returns None without waiting; else returns the loss (synchronises).
    """
    return _elementwise_loss("mse", Z, T, dZ, w, total)


def poisson(Z, T, dZ, w=None, total=None):
    """Half Poisson deviance with a log link, up to its constant: mean over all elements of
    w_i (exp(Z) - T Z); dZ = w_i (exp(Z) - T) / Z.size. exp is taken once per element, and
    the loss summed, in float64 whatever the data's dtype, as on the CPU backend
    (scalar.PRECISE_LOSSES): for float32 data the loss stays finite above Z = 88, where
    exp(Z) passes float32's range (dZ, rounded to float32 there, is inf, as on the CPU).
    With ``total``: adds B * loss to ``total[0]`` and returns None without waiting; else
    returns the loss (synchronises)."""
    return _elementwise_loss("poisson", Z, T, dZ, w, total)


# ---------------------------------------------------------------------------------------
# metrics


def _row_is_right(Z, y, i):  # argmax(Z[i]) == y[i], or (Z[i] > 0) == (y[i] > 0.5)
    m = Z.shape[1]
    if m == 1:
        return (Z[i, 0] > 0) == (y[i] > 0.5)
    best = 0
    for j in range(1, m):
        if Z[i, j] > Z[i, best]:
            best = j
    return best == y[i]


def count_correct(Z, y, total=None):
    """How many rows are classified right: argmax(Z) == y (first maximum on ties), or
    (Z > 0) == (y > 0.5) for one output. Returns an int (synchronises), or, with ``total``
    (an int64 or float64 device array of shape (1,)), adds the count to ``total[0]`` and
    returns None without waiting."""
    grid = _blocks(Z.shape[0], cap=MAX_REDUCE_BLOCKS)
    got = _sum_partials(count_kernel(_row_is_right, "count_correct"), grid,
                        (Z, y, Z.shape[0]), np.int64, total)
    return None if total is not None else int(got)


@functools.lru_cache(maxsize=None)
def _regression_sums_kernel(dt):
    ZERO = dt(0)

    def regression_sums(Z, T, abs_err, sq_err):
        red = cuda.shared.array((COL_Y, COL_X), dt)
        n, m, j, ty, tx = _col_thread(Z)
        sa = ss = ZERO
        if j < m:
            for i in range(ty, n, COL_Y):
                d = Z[i, j] - T[i, j]
                sa += abs(d)
                ss += d * d
        sa = _col_sum(red, sa, ty, tx)
        ss = _col_sum(red, ss, ty, tx)
        if ty == 0 and j < m:
            abs_err[j] += sa
            sq_err[j] += ss

    return cuda.jit(regression_sums)


def regression_sums(Z, T, abs_err, sq_err):
    """Accumulate, per output, the sum of |Z - T| into abs_err and of (Z - T)^2 into sq_err
    (device arrays, added to on the device; one launch, a column reduction per block)."""
    grid, block = _col_grid(Z.shape[1])
    _launch(_regression_sums_kernel(_dt(Z)), grid, block, Z, _reshape(T, Z.shape), abs_err,
            sq_err)
