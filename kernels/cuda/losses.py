"""Softmax, the losses (dZ and the batch's loss in one launch) and the metrics."""

import math

import numpy as np

from ..codes import SIGMOID
from .device import (COL_X, COL_Y, MAX_REDUCE_BLOCKS, THREADS, _blocks, _col_grid,
                     _col_tree_sum, _dummy, _f, _kernel, _launch, _nb_float64, _nb_int64,
                     _read_scalar, _reshape, _tree_sum, _zeroed_scalar, cuda)

@_kernel
def _k_softmax(Z, P):
    n, m = Z.shape
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        zmax = Z[i, 0]
        for j in range(1, m):
            zmax = max(zmax, Z[i, j])
        s = 0.0
        for j in range(m):
            e = math.exp(Z[i, j] - zmax)
            P[i, j] = e
            s += e
        for j in range(m):
            P[i, j] = P[i, j] / s


def softmax(Z, P):
    """P = softmax(Z) along the features, stable for any logits (one thread per row)."""
    _launch(_k_softmax, _blocks(Z.shape[0]), THREADS, Z, P)


# ---------------------------------------------------------------------------------------
# losses: dZ written and the batch's loss summed in one launch (one thread per row,
# a shared-memory reduction per block, one atomic add per block into a float64 scalar)


@_kernel
def _k_ce_labels(Z, y, dZ, w, has_w, smoothing, inv_n, total):
    red = cuda.shared.array(THREADS, _nb_float64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    off = smoothing / m
    acc = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        wi = w[i] if has_w else 1.0
        zmax = Z[i, 0]
        for j in range(1, m):
            zmax = max(zmax, Z[i, j])
        s = 0.0
        z_sum = 0.0
        for j in range(m):
            d = Z[i, j] - zmax
            s += math.exp(d)
            z_sum += d
        yi = int(y[i])
        acc += wi * (math.log(s) - (1 - smoothing) * (Z[i, yi] - zmax) - off * z_sum)
        scale = wi * inv_n / s
        for j in range(m):
            dZ[i, j] = math.exp(Z[i, j] - zmax) * scale - wi * off * inv_n
        dZ[i, yi] -= wi * (1 - smoothing) * inv_n
    red[t] = acc
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


@_kernel
def _k_ce_targets(Z, T, dZ, w, has_w, smoothing, inv_n, total):
    red = cuda.shared.array(THREADS, _nb_float64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    off = smoothing / m
    acc = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        wi = w[i] if has_w else 1.0
        zmax = Z[i, 0]
        for j in range(1, m):
            zmax = max(zmax, Z[i, j])
        s = 0.0
        for j in range(m):
            s += math.exp(Z[i, j] - zmax)
        log_s = math.log(s)
        q_sum = 0.0
        for j in range(m):
            q = (1 - smoothing) * T[i, j] + off
            q_sum += q
            acc -= wi * q * (Z[i, j] - zmax - log_s)
        scale = wi * q_sum * inv_n / s
        for j in range(m):
            q = (1 - smoothing) * T[i, j] + off
            dZ[i, j] = math.exp(Z[i, j] - zmax) * scale - wi * q * inv_n
    red[t] = acc
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


@_kernel
def _k_bce(Z, T, dZ, w, has_w, inv, total):
    red = cuda.shared.array(THREADS, _nb_float64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    acc = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        wi = w[i] if has_w else 1.0
        row = 0.0
        for j in range(m):
            z = Z[i, j]
            tij = T[i, j]
            row += max(z, 0) - z * tij + math.log1p(math.exp(-abs(z)))
            dZ[i, j] = wi * (_f(z, SIGMOID) - tij) * inv
        acc += wi * row / m
    red[t] = acc
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


@_kernel
def _k_mse(Z, T, dZ, w, has_w, inv, total):
    red = cuda.shared.array(THREADS, _nb_float64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    acc = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        wi = w[i] if has_w else 1.0
        row = 0.0
        for j in range(m):
            d = Z[i, j] - T[i, j]
            row += d * d
            dZ[i, j] = 2 * wi * d * inv
        acc += wi * row / m
    red[t] = acc
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


def _loss(kernel, Z, total, args):
    """Launch a loss kernel adding B * loss into `total`, or into a scratch scalar that is
    read back (then the batch-mean loss is returned as a float)."""
    n = Z.shape[0]
    grid = _blocks(n, cap=MAX_REDUCE_BLOCKS)
    if total is not None:
        _launch(kernel, grid, THREADS, *args, total)
        return None
    scratch = _zeroed_scalar(np.float64)
    _launch(kernel, grid, THREADS, *args, scratch)
    return float(_read_scalar(scratch)) / n


def _weights_arg(w, dtype):
    return (_dummy(dtype, 1), False) if w is None else (w, True)


def softmax_cross_entropy(Z, T, dZ, w=None, smoothing=0.0, total=None):
    """Mean over the batch of w_i * -sum_j(Q_ij * log softmax(Z)_ij); dZ = d loss / d Z.

    T: integer labels (B,) or targets (B, K); Q = (1 - smoothing) * T + smoothing / K;
    w: per-sample weights (B,) or None. One launch. Returns the loss as a float (reading it
    back: this synchronises), or, with ``total`` (float64 device array of shape (1,)),
    adds ``sum_i w_i l_i`` (= B * loss) to ``total[0]`` and returns None without waiting.
    """
    ww, has_w = _weights_arg(w, Z.dtype)
    n = Z.shape[0]
    kernel = _k_ce_labels if T.ndim == 1 else _k_ce_targets
    return _loss(kernel, Z, total, (Z, T, dZ, ww, has_w, float(smoothing), 1.0 / n))


def sigmoid_binary_cross_entropy(Z, T, dZ, w=None, total=None):
    """Mean over all elements of w_i * BCE(sigmoid(Z), T); dZ = w_i (sigmoid(Z) - T) / Z.size.

    T: (B, K), or (B,) when K == 1. With ``total``: adds B * loss (= sum_ij w_i l_ij / K) to
    ``total[0]`` and returns None without waiting; else returns the loss (synchronises).
    """
    ww, has_w = _weights_arg(w, Z.dtype)
    return _loss(_k_bce, Z, total, (Z, _reshape(T, Z.shape), dZ, ww, has_w, 1.0 / Z.size))


def mse(Z, T, dZ, w=None, total=None):
    """Mean over all elements of w_i (Z - T)^2; dZ = 2 w_i (Z - T) / Z.size.

    T: (B, K), or (B,) when K == 1. With ``total``: adds B * loss (= sum_ij w_i d_ij^2 / K)
    to ``total[0]`` and returns None without waiting; else returns the loss (synchronises).
    """
    ww, has_w = _weights_arg(w, Z.dtype)
    return _loss(_k_mse, Z, total, (Z, _reshape(T, Z.shape), dZ, ww, has_w, 1.0 / Z.size))


# ---------------------------------------------------------------------------------------
# metrics


@_kernel
def _k_count_correct(Z, y, total):
    red = cuda.shared.array(THREADS, _nb_int64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    c = 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if m == 1:
            if (Z[i, 0] > 0) == (y[i] > 0.5):
                c += 1
        else:
            best = 0
            for j in range(1, m):
                if Z[i, j] > Z[i, best]:
                    best = j
            if best == y[i]:
                c += 1
    red[t] = c
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


def count_correct(Z, y, total=None):
    """How many rows are classified right: argmax(Z) == y (first maximum on ties), or
    (Z > 0) == (y > 0.5) for one output. Returns an int (synchronises), or, with ``total``
    (an int64 or float64 device array of shape (1,)), adds the count to ``total[0]`` and
    returns None without waiting."""
    grid = _blocks(Z.shape[0], cap=MAX_REDUCE_BLOCKS)
    if total is not None:
        _launch(_k_count_correct, grid, THREADS, Z, y, total)
        return None
    scratch = _zeroed_scalar(np.int64)
    _launch(_k_count_correct, grid, THREADS, Z, y, scratch)
    return int(_read_scalar(scratch))


@_kernel
def _k_regression_sums(Z, T, abs_err, sq_err):
    ra = cuda.shared.array((COL_Y, COL_X), _nb_float64)
    rs = cuda.shared.array((COL_Y, COL_X), _nb_float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n, m = Z.shape
    j = cuda.blockIdx.x * COL_X + tx
    sa = 0.0
    ss = 0.0
    if j < m:
        for i in range(ty, n, COL_Y):
            d = Z[i, j] - T[i, j]
            sa += abs(d)
            ss += d * d
    ra[ty, tx] = sa
    rs[ty, tx] = ss
    cuda.syncthreads()
    _col_tree_sum(ra, ty, tx)
    _col_tree_sum(rs, ty, tx)
    if ty == 0 and j < m:
        abs_err[j] += ra[0, tx]
        sq_err[j] += rs[0, tx]


def regression_sums(Z, T, abs_err, sq_err):
    """Accumulate, per output, the sum of |Z - T| into abs_err and of (Z - T)^2 into sq_err
    (device arrays, added to on the device; one launch, a column reduction per block)."""
    grid, block = _col_grid(Z.shape[1])
    _launch(_k_regression_sums, grid, block, Z, _reshape(T, Z.shape), abs_err, sq_err)
