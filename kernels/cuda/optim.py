"""The optimizer updates (one launch over the flat parameter array, in place) and
gradient-norm clipping."""

import math

import numpy as np

from .device import (MAX_REDUCE_BLOCKS, THREADS, _blocks, _is_device, _kernel, _launch,
                     _nb_float64, _read_scalar, _scratch, _tree_sum, _zeroed_scalar, cuda)
from .memory import _k_fill1

# ---------------------------------------------------------------------------------------
# optimizer updates: one launch over the flat parameter array, in place


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
        d = g[i] + weight_decay * p[i]
        if momentum != 0:
            buf[i] = momentum * buf[i] + d
            if nesterov:
                d = d + momentum * buf[i]
            else:
                d = buf[i]
        p[i] -= lr * d


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) in place, one launch; buf is the momentum buffer, zero
    at the start. p, g, buf: flat contiguous 1-D device arrays of the same length."""
    _check_flat(p, g, buf)
    _launch(_k_sgd, _blocks(p.size), THREADS, p, g, buf, float(lr), float(momentum),
            float(weight_decay), bool(nesterov))


@_kernel
def _k_adam(p, g, m, v, v_max, amsgrad, step_size, bias_correction2_sqrt, one_minus_beta1,
            beta2, eps, weight_decay, decoupled, decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + 0.0
        if weight_decay != 0:
            if decoupled:
                p[i] *= decay
            else:
                gi += weight_decay * p[i]
        m[i] += one_minus_beta1 * (gi - m[i])
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
        if amsgrad:
            v_max[i] = max(v_max[i], v[i])
            den = v_max[i] + 0.0
        else:
            den = v[i] + 0.0
        p[i] -= step_size * m[i] / (math.sqrt(den) / bias_correction2_sqrt + eps)


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, v_max=None):
    """torch.optim.Adam / AdamW in place, one launch; m, v zero at the start, step (a host
    int) counts from 1; the bias corrections are computed on the host. With v_max (zero at
    the start) this is AMSGrad. All arrays flat, contiguous, 1-D, of the same length."""
    _check_flat(p, g, m, v)
    amsgrad = v_max is not None
    if amsgrad:
        _check_flat(v_max)
    _launch(_k_adam, _blocks(p.size), THREADS, p, g, m, v, v_max if amsgrad else v, amsgrad,
            lr / (1 - beta1**step), math.sqrt(1 - beta2**step), float(1 - beta1),
            float(beta2), float(eps), float(weight_decay), bool(decoupled),
            float(1 - lr * weight_decay))


@_kernel
def _k_rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
               centered):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + weight_decay * p[i]
        square_avg[i] = alpha * square_avg[i] + (1 - alpha) * gi * gi
        if centered:
            grad_avg[i] += (1 - alpha) * (gi - grad_avg[i])
            avg = math.sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps
        else:
            avg = math.sqrt(square_avg[i]) + eps
        if momentum > 0:
            buf[i] = momentum * buf[i] + gi / avg
            p[i] -= lr * buf[i]
        else:
            p[i] -= lr * gi / avg


def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
                   centered):
    """torch.optim.RMSprop in place, one launch; state arrays zero at the start, all flat 1-D."""
    _check_flat(p, g, square_avg, grad_avg, buf)
    _launch(_k_rmsprop, _blocks(p.size), THREADS, p, g, square_avg, grad_avg, buf, float(lr),
            float(alpha), float(eps), float(weight_decay), float(momentum), bool(centered))


@_kernel
def _k_sum_squares(g, total):
    red = cuda.shared.array(THREADS, _nb_float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        x = _nb_float64(g[i])
        acc += x * x
    red[t] = acc
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


@_kernel
def _k_scale(g, c):
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        g[i] *= c


@_kernel
def _k_clip(g, sum_squares, max_norm, norm_out):
    norm = math.sqrt(sum_squares[0])
    if cuda.grid(1) == 0:
        norm_out[0] = norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
            g[i] *= coef


def clip_grad_norm(g, max_norm, norm_out=None):
    """Scale g in place so that its L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_:
    factor max_norm / (norm + 1e-6) when below 1).

    Without ``norm_out`` this returns the norm before clipping as a float and therefore
    SYNCHRONISES (the norm is read back to decide on the host). With ``norm_out`` (a float64
    device array of shape (1,)) nothing is read back: the norm is written to
    ``norm_out[0]``, the clipping is decided on the device, and None is returned (three
    small launches, no wait).
    """
    _check_flat(g)
    grid = _blocks(g.size, cap=MAX_REDUCE_BLOCKS)
    if norm_out is None:
        scratch = _zeroed_scalar(np.float64)
        _launch(_k_sum_squares, grid, THREADS, g, scratch)
        norm = math.sqrt(float(_read_scalar(scratch)))
        coef = max_norm / (norm + 1e-6)
        if coef < 1:
            _launch(_k_scale, _blocks(g.size), THREADS, g, coef)
        return norm
    scratch = _scratch(np.float64, "clip")  # zeroed on the device: no host transfer
    _launch(_k_fill1, 1, 1, scratch, 0.0)
    _launch(_k_sum_squares, grid, THREADS, g, scratch)
    _launch(_k_clip, _blocks(g.size), THREADS, g, scratch, float(max_norm), norm_out)
    return None
