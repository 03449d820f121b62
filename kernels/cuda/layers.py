"""The kernels of the layers other than Dense: activations, random numbers, dropout, batch
normalisation; and gathering a batch's rows on the device.

Each kernel is made per dtype (``functools.lru_cache`` factories): its constants and the
activations it calls (``device.activations(dt)``) are of the data's dtype, so float32 data
is computed in float32 throughout.
"""

import functools
import math

import numpy as np
from numba import uint64 as _nb_uint64  # numba itself: importable without numba-cuda

from ..codes import ACTIVATION_NAMES, IDENTITY
from .device import (COL_X, COL_Y, THREADS, _blocks, _col_grid, _col_sum, _col_thread,
                     _launch, _reshape, activations, cuda, elementwise)


def _dt(a):
    return np.dtype(a.dtype).type


# ---------------------------------------------------------------------------------------
# elementwise kernels (1-D grid-stride loops over the flattened 2-D index)


@functools.lru_cache(maxsize=None)
def _activate_kernel(dt, act):
    f = activations(dt).f_of[act]

    def activate(Z, _, i, j):  # A = f(Z)
        return f(Z[i, j])

    return elementwise(activate, f"activate_{ACTIVATION_NAMES[act]}_{dt.__name__}")


@functools.lru_cache(maxsize=None)
def _times_df_kernel(dt, act):
    df = activations(dt).df_of[act]

    def times_df(A, delta, i, j):  # delta *= f'(A)
        return delta[i, j] * df(A[i, j])

    return elementwise(times_df, f"times_df_{ACTIVATION_NAMES[act]}_{dt.__name__}")


def activate(Z, act, A):
    """A = f(Z), elementwise (one kernel per dtype and activation)."""
    _launch(_activate_kernel(_dt(A), int(act)), _blocks(Z.size), THREADS, Z, Z, A)


def activation_backward(A, act, delta):
    """delta *= f'(A) in place, f' taken from the stored activation A."""
    if act == IDENTITY:
        return
    _launch(_times_df_kernel(_dt(delta), int(act)), _blocks(delta.size), THREADS, A, delta,
            delta)


# ---------------------------------------------------------------------------------------
# random numbers, dropout, batch normalisation

# splitmix64 constants (uint64 so that all the hash arithmetic stays uint64 in the kernel)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = (np.uint64(s) for s in (30, 27, 31))


@functools.lru_cache(maxsize=None)
def _fill_uniform_kernel(dt):
    """U = (top mantissa-width bits of splitmix64(seed, index)) * 2^-bits: 24 bits for
    float32, 53 for float64, exact in the dtype."""
    bits = np.finfo(dt).nmant + 1
    SHIFT = np.uint64(64 - bits)
    SCALE = dt(2.0 ** -bits)

    def fill(U, seed):
        n, m = U.shape
        for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
            i = idx // m
            j = idx - i * m
            # splitmix64: output number idx + 1 of the generator started at `seed`
            z = seed + _nb_uint64(idx + 1) * _GOLDEN
            z = (z ^ (z >> _S30)) * _MIX1
            z = (z ^ (z >> _S27)) * _MIX2
            z = z ^ (z >> _S31)
            U[i, j] = dt(z >> SHIFT) * SCALE

    return cuda.jit(fill)


def fill_uniform(U, rng):
    """U = uniform random numbers in [0, 1) (float32: multiples of 2^-24, float64: of
    2^-53), from one 64-bit seed drawn from the numpy Generator `rng` on the host; the
    device fills U with a stateless counter-based hash (splitmix64 of seed and the element's
    row-major index), so the result depends only on that seed."""
    seed = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
    U2 = _reshape(U, (1, U.shape[0])) if U.ndim == 1 else U
    _launch(_fill_uniform_kernel(_dt(U)), _blocks(U.size), THREADS, U2, seed)


@functools.lru_cache(maxsize=None)
def _dropout_forward_kernel(dt):
    ZERO = dt(0)

    def dropout_forward(A_in, U, p, scale, A_out):
        n, m = A_in.shape
        for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
            i = idx // m
            j = idx - i * m
            A_out[i, j] = A_in[i, j] * scale if U[i, j] >= p else ZERO

    return cuda.jit(dropout_forward)


@functools.lru_cache(maxsize=None)
def _dropout_backward_kernel(dt):
    ZERO = dt(0)
    df = activations(dt).df

    def dropout_backward(delta, U, p, scale, D_prev, act_prev, delta_prev):
        n, m = delta.shape
        for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
            i = idx // m
            j = idx - i * m
            if U[i, j] >= p:
                delta_prev[i, j] = df(D_prev[i, j], act_prev) * delta[i, j] * scale
            else:
                delta_prev[i, j] = ZERO

    return cuda.jit(dropout_backward)


def dropout_forward(A_in, U, p, A_out):
    """A_out = A_in * (U >= p) / (1 - p): inverted dropout, each unit dropped with probability p."""
    dt = _dt(A_out)
    _launch(_dropout_forward_kernel(dt), _blocks(A_in.size), THREADS, A_in, U, dt(p),
            dt(1 / (1 - p)), A_out)


def dropout_backward(delta, U, p, D_prev, act_prev, delta_prev):
    """delta_prev = f'_prev(D_prev) * delta * (U >= p) / (1 - p)."""
    dt = _dt(delta_prev)
    _launch(_dropout_backward_kernel(dt), _blocks(delta.size), THREADS, delta, U, dt(p),
            dt(1 / (1 - p)), D_prev, act_prev, delta_prev)


@functools.lru_cache(maxsize=None)
def _batchnorm_forward_kernel(dt):
    ZERO, ONE = dt(0), dt(1)
    f = activations(dt).f

    def batchnorm_forward(X, gamma, beta, running_mean, running_var, momentum, eps, act,
                          Xhat, inv_std, A_out):
        red = cuda.shared.array((COL_Y, COL_X), dt)
        n, m, j, ty, tx = _col_thread(X)
        s = ZERO
        if j < m:
            for i in range(ty, n, COL_Y):
                s += X[i, j]
        mean = _col_sum(red, s, ty, tx) / dt(n)
        s = ZERO
        if j < m:
            for i in range(ty, n, COL_Y):
                d = X[i, j] - mean
                s += d * d
        var = _col_sum(red, s, ty, tx) / dt(n)
        if j < m:
            r = ONE / math.sqrt(var + eps)
            for i in range(ty, n, COL_Y):
                xh = (X[i, j] - mean) * r
                Xhat[i, j] = xh
                A_out[i, j] = f(gamma[j] * xh + beta[j], act)
            if ty == 0:
                inv_std[j] = r
                running_mean[j] = (ONE - momentum) * running_mean[j] + momentum * mean
                running_var[j] = ((ONE - momentum) * running_var[j]
                                  + momentum * var * dt(n) / dt(n - 1))

    return cuda.jit(batchnorm_forward)


def batchnorm_forward(X, gamma, beta, running_mean, running_var, momentum, eps, act, Xhat,
                      inv_std, A_out):
    """Training-mode batch norm (batch statistics, two-pass mean and biased variance per
    feature); keeps Xhat and inv_std for the backward pass and updates the running statistics
    in place as torch.nn.BatchNorm1d (unbiased variance). One launch."""
    dt = _dt(A_out)
    grid, block = _col_grid(X.shape[1])
    _launch(_batchnorm_forward_kernel(dt), grid, block, X, gamma, beta, running_mean,
            running_var, dt(momentum), dt(eps), act, Xhat, inv_std, A_out)


@functools.lru_cache(maxsize=None)
def _batchnorm_inference_kernel(dt):
    f = activations(dt).f

    def batchnorm_inference(X, gamma, beta, running_mean, running_var, eps, act, A_out):
        n, m = X.shape
        for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
            i = idx // m
            j = idx - i * m
            scale = gamma[j] / math.sqrt(running_var[j] + eps)
            shift = beta[j] - running_mean[j] * scale
            A_out[i, j] = f(X[i, j] * scale + shift, act)

    return cuda.jit(batchnorm_inference)


def batchnorm_inference(X, gamma, beta, running_mean, running_var, eps, act, A_out):
    """Inference-mode batch norm with the running statistics: A_out = f(gamma * Xhat + beta)."""
    dt = _dt(A_out)
    _launch(_batchnorm_inference_kernel(dt), _blocks(X.size), THREADS, X, gamma, beta,
            running_mean, running_var, dt(eps), act, A_out)


@functools.lru_cache(maxsize=None)
def _batchnorm_backward_kernel(dt):
    ZERO = dt(0)
    df = activations(dt).df

    def batchnorm_backward(delta, Xhat, inv_std, gamma, dgamma, dbeta, D_prev, act_prev,
                           delta_prev):
        red = cuda.shared.array((COL_Y, COL_X), dt)
        n, m, j, ty, tx = _col_thread(delta)
        sg = sb = ZERO
        if j < m:
            for i in range(ty, n, COL_Y):
                sg += delta[i, j] * Xhat[i, j]
                sb += delta[i, j]
        sg = _col_sum(red, sg, ty, tx)
        sb = _col_sum(red, sb, ty, tx)
        if j < m:
            c = gamma[j] * inv_std[j] / dt(n)
            for i in range(ty, n, COL_Y):
                dx = c * (dt(n) * delta[i, j] - sb - Xhat[i, j] * sg)
                delta_prev[i, j] = df(D_prev[i, j], act_prev) * dx
            if ty == 0:
                dgamma[j] = sg
                dbeta[j] = sb

    return cuda.jit(batchnorm_backward)


def batchnorm_backward(delta, Xhat, inv_std, gamma, dgamma, dbeta, D_prev, act_prev,
                       delta_prev):
    """dgamma = sum(delta * Xhat), dbeta = sum(delta); delta_prev = f'_prev(D_prev) * dX with
    dX = gamma * inv_std / B * (B * delta - dbeta - Xhat * dgamma). One launch."""
    grid, block = _col_grid(delta.shape[1])
    _launch(_batchnorm_backward_kernel(_dt(delta_prev)), grid, block, delta, Xhat, inv_std,
            gamma, dgamma, dbeta, D_prev, act_prev, delta_prev)


# ---------------------------------------------------------------------------------------
# data movement


def _gather_row(X, idx, i, j):  # out[i] = X[idx[i]]
    return X[idx[i], j]


def gather_rows(X, idx, out):
    """out[i] = X[idx[i]], cast to out's dtype (e.g. a uint8 data set on the device to a
    float32 batch), on the device; X, idx and out are device arrays."""
    _launch(elementwise(_gather_row, "gather_rows"), _blocks(out.size), THREADS, X, idx, out)
