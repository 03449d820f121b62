"""The optimizer updates (one launch over the flat parameter array, in place) and
gradient-norm clipping.

The update kernels take their hyper-parameters in the parameters' dtype (float32 models
update in float32 arithmetic); the bias corrections are computed on the host.
"""

import functools
import math

import numpy as np

from .. import scalar
from .device import (MAX_REDUCE_BLOCKS, THREADS, _block_sum_to, _blocks, _inlined, _is_device,
                     _kernel, _launch, _scratch, _sum_partials, _tree_sum, cuda)

# the updates of one parameter, written once for both backends (kernels/scalar.py)
_sgd_step = _inlined(scalar.sgd_step)
_adagrad_step = _inlined(scalar.adagrad_step)


def _dt(a):
    return np.dtype(a.dtype).type


def _is_flat(a):
    if a.ndim != 1:
        return False
    if _is_device(a):
        return a.is_c_contiguous()
    return a.flags.c_contiguous


def _check_flat(*arrays):
    for a in arrays:
        if not _is_flat(a):
            raise ValueError(
                f"optimizer kernels take flat contiguous 1-D arrays; got shape {a.shape}"
            )


@_kernel
def _k_sgd(p, g, buf, lr, momentum, weight_decay, nesterov):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        _sgd_step(i, p, g, buf, lr, momentum, weight_decay, nesterov)


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) in place, one launch; buf is the momentum buffer, zero
    at the start. p, g, buf: flat contiguous 1-D device arrays of the same length."""
    _check_flat(p, g, buf)
    dt = _dt(p)
    _launch(_k_sgd, _blocks(p.size), THREADS, p, g, buf, dt(lr), dt(momentum),
            dt(weight_decay), bool(nesterov))


@functools.lru_cache(maxsize=None)
def _adam_kernel(dt):
    ZERO, ONE = dt(0), dt(1)

    def adam(p, g, m, v, v_max, amsgrad, step_size, bias_correction2_sqrt, one_minus_beta1,
             beta2, eps, weight_decay, decoupled, decay):
        for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
            gi = g[i]
            if weight_decay != ZERO:
                if decoupled:
                    p[i] *= decay
                else:
                    gi += weight_decay * p[i]
            m[i] += one_minus_beta1 * (gi - m[i])
            v[i] = beta2 * v[i] + (ONE - beta2) * gi * gi
            if amsgrad:
                v_max[i] = max(v_max[i], v[i])
                den = v_max[i]
            else:
                den = v[i]
            p[i] -= step_size * m[i] / (math.sqrt(den) / bias_correction2_sqrt + eps)

    return cuda.jit(adam)


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, v_max=None):
    """torch.optim.Adam / AdamW in place, one launch; m, v zero at the start, step (a host
    int) counts from 1; the bias corrections are computed on the host. With v_max (zero at
    the start) this is AMSGrad. All arrays flat, contiguous, 1-D, of the same length."""
    _check_flat(p, g, m, v)
    amsgrad = v_max is not None
    if amsgrad:
        _check_flat(v_max)
    dt = _dt(p)
    _launch(_adam_kernel(dt), _blocks(p.size), THREADS, p, g, m, v, v_max if amsgrad else v,
            amsgrad, dt(lr / (1 - beta1**step)), dt(math.sqrt(1 - beta2**step)),
            dt(1 - beta1), dt(beta2), dt(eps), dt(weight_decay), bool(decoupled),
            dt(1 - lr * weight_decay))


# the CPU twin is kernels/cpu_optim.py's (not shared: see kernels/scalar.py)
@functools.lru_cache(maxsize=None)
def _rmsprop_kernel(dt):
    ZERO, ONE = dt(0), dt(1)

    def rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
                centered):
        for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
            gi = g[i] + weight_decay * p[i]
            square_avg[i] = alpha * square_avg[i] + (ONE - alpha) * gi * gi
            if centered:
                grad_avg[i] += (ONE - alpha) * (gi - grad_avg[i])
                avg = math.sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps
            else:
                avg = math.sqrt(square_avg[i]) + eps
            if momentum > ZERO:
                buf[i] = momentum * buf[i] + gi / avg
                p[i] -= lr * buf[i]
            else:
                p[i] -= lr * gi / avg

    return cuda.jit(rmsprop)


def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
                   centered):
    """torch.optim.RMSprop in place, one launch; state arrays zero at the start, all flat 1-D."""
    _check_flat(p, g, square_avg, grad_avg, buf)
    dt = _dt(p)
    _launch(_rmsprop_kernel(dt), _blocks(p.size), THREADS, p, g, square_avg, grad_avg, buf,
            dt(lr), dt(alpha), dt(eps), dt(weight_decay), dt(momentum), bool(centered))


# ---------------------------------------------------------------------------------------
# clipping: sum of squares per block, the blocks' sums added in order (deterministic), the
# factor decided on the device


@functools.lru_cache(maxsize=None)
def _sum_squares_kernel(dt):
    ZERO = dt(0)

    def sum_squares(g, partials):
        red = cuda.shared.array(THREADS, dt)
        t = cuda.threadIdx.x
        acc = ZERO
        for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
            acc += g[i] * g[i]
        red[t] = acc
        _block_sum_to(red, t, partials)

    return cuda.jit(sum_squares)


@_kernel
def _k_clip_factor(sum_squares, max_norm, norm_out, factor):
    """norm_out[0] = sqrt(sum_squares[0]); factor[0] = max_norm / (norm + 1e-6), or 1 when
    that is not below 1 (one thread, float64)."""
    if cuda.grid(1) == 0:
        norm = math.sqrt(sum_squares[0])
        norm_out[0] = norm
        coef = max_norm / (norm + 1e-6)
        factor[0] = coef if coef < 1 else 1


@functools.lru_cache(maxsize=None)
def _scale_kernel(dt):
    ONE = dt(1)

    def scale(g, factor):
        c = factor[0]
        if c < ONE:
            for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
                g[i] *= c

    return cuda.jit(scale)


@functools.lru_cache(maxsize=None)
def _multiply_kernel(dt):
    def multiply(x, c):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            x[i] *= c

    return cuda.jit(multiply)


def scale(x, c):
    """x *= c in place (a flat, contiguous device array); no wait."""
    _check_flat(x)
    dt = _dt(x)
    _launch(_multiply_kernel(dt), _blocks(x.size), THREADS, x, dt(c))


def clip_grad_norm(g, max_norm, norm_out=None):
    """Scale g in place so that its L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_:
    factor max_norm / (norm + 1e-6) when below 1), deciding on the device: four small
    launches, nothing read back.

    Without ``norm_out`` this returns the norm before clipping as a float (reading it back:
    this synchronises). With ``norm_out`` (a float64 device array of shape (1,), as a model
    keeps) the norm is written to ``norm_out[0]`` and None is returned without waiting.
    """
    _check_flat(g)
    dt = _dt(g)
    out = _scratch(np.float64, 1, "norm") if norm_out is None else norm_out
    sum_squares = _scratch(np.float64, 1, "sum of squares")
    factor = _scratch(dt, 1, "clip factor")
    _sum_partials(_sum_squares_kernel(dt), _blocks(g.size, cap=MAX_REDUCE_BLOCKS), (g,), dt,
                  sum_squares, add=False)
    _launch(_k_clip_factor, 1, 1, sum_squares, float(max_norm), out, factor)
    _launch(_scale_kernel(dt), _blocks(g.size), THREADS, g, factor)
    return None if norm_out is not None else float(out.copy_to_host()[0])


@_kernel
def _k_adagrad(p, g, state_sum, lr, weight_decay, eps):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        _adagrad_step(i, p, g, state_sum, lr, weight_decay, eps)


def adagrad_update(p, g, state_sum, lr, weight_decay, eps):
    """torch.optim.Adagrad in place, one launch (``lr`` already decayed for this step);
    flat 1-D device arrays."""
    _check_flat(p, g, state_sum)
    dt = _dt(p)
    _launch(_k_adagrad, _blocks(p.size), THREADS, p, g, state_sum, dt(lr),
            dt(weight_decay), dt(eps))


@functools.lru_cache(maxsize=None)
def _lamb_kernel(dt):
    ONE = dt(1)

    def lamb(p, g, m, v, segments, lr, beta1, beta2, bias_correction1, bias_correction2_sqrt,
             eps, weight_decay):
        """One block per parameter tensor p[segments[j]:segments[j+1]]: Adam's moments and
        the update direction u (into g), the tensor's two squared norms summed in float64
        by a fixed-order tree (deterministic), then p -= lr * ||p|| / ||u|| * u."""
        p_red = cuda.shared.array(THREADS, np.float64)
        u_red = cuda.shared.array(THREADS, np.float64)
        t = cuda.threadIdx.x
        lo, hi = segments[cuda.blockIdx.x], segments[cuda.blockIdx.x + 1]
        p_sq = np.float64(0)
        u_sq = np.float64(0)
        for i in range(lo + t, hi, THREADS):
            m[i] = beta1 * m[i] + (ONE - beta1) * g[i]
            v[i] = beta2 * v[i] + (ONE - beta2) * g[i] * g[i]
            u = (m[i] / bias_correction1) / (math.sqrt(v[i]) / bias_correction2_sqrt + eps) \
                + weight_decay * p[i]
            g[i] = u
            p_sq += np.float64(p[i]) * np.float64(p[i])
            u_sq += np.float64(u) * np.float64(u)
        p_red[t] = p_sq
        u_red[t] = u_sq
        cuda.syncthreads()
        _tree_sum(p_red, t, THREADS)
        _tree_sum(u_red, t, THREADS)
        ratio = np.float64(1)
        if p_red[0] > 0 and u_red[0] > 0:
            ratio = math.sqrt(p_red[0]) / math.sqrt(u_red[0])
        step = dt(lr * ratio)
        for i in range(lo + t, hi, THREADS):
            p[i] -= step * g[i]

    return cuda.jit(lamb)


def lamb_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, segments):
    """LAMB in place (see the reference), one launch of one block per tensor; g is
    overwritten with the update direction. `segments` (host or device int64) are the tensor
    boundaries in the flat arrays."""
    _check_flat(p, g, m, v)
    if not _is_device(segments):
        segments = cuda.to_device(np.asarray(segments, np.int64))
    if segments.shape[0] < 2:
        return
    dt = _dt(p)
    _launch(_lamb_kernel(dt), segments.shape[0] - 1, THREADS, p, g, m, v, segments, dt(lr),
            dt(beta1), dt(beta2), dt(1 - beta1**step), dt(math.sqrt(1 - beta2**step)), dt(eps),
            dt(weight_decay))
