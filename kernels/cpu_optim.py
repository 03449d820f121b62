"""The CPU backend's optimizer kernels (part of kernels/cpu.py's contract, which re-exports
them): torch.optim's SGD, Adam / AdamW (AMSGrad), RMSprop, Adagrad, LAMB, gradient-norm
clipping and scaling, each one compiled pass over a flat parameter array, in place.

The hyper-parameters are cast to p's dtype, so a float32 model's update is float32
arithmetic throughout (as PyTorch's and NumPy's).
"""

import math

import numpy as np
from numba import njit

from . import scalar
from .cpu_jit import _jit

# the updates of one parameter, written once for both backends (scalar.py), inlined into
# the loops below
_inline = njit(error_model="numpy", inline="always")
_sgd_step = _inline(scalar.sgd_step)
_adagrad_step = _inline(scalar.adagrad_step)

__all__ = ["sgd_update", "adam_update", "rmsprop_update", "adagrad_update", "lamb_update", "scale",
           "clip_grad_norm"]


def _check_flat(*arrays):
    for a in arrays:
        if a.ndim != 1 or not a.flags.c_contiguous:
            raise ValueError(
                f"optimizer kernels take flat contiguous 1-D arrays; got shape {a.shape}"
            )


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) in place; buf is the momentum buffer, zero at the start.

    p, g, buf: flat contiguous 1-D arrays of the same length. The hyper-parameters are cast
    to p's dtype, so a float32 model's update is float32 arithmetic throughout (as PyTorch's
    and NumPy's), which also lets the loop run twice as many lanes per instruction.
    """
    _check_flat(p, g, buf)
    t = p.dtype.type
    _sgd_update(p, g, buf, t(lr), t(momentum), t(weight_decay), nesterov)


@_jit
def _sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    for i in range(p.size):
        _sgd_step(i, p, g, buf, lr, momentum, weight_decay, nesterov)


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, v_max=None):
    """torch.optim.Adam / AdamW in place; m, v zero at the start, step counts from 1.

    With v_max (zero at the start) this is AMSGrad: the denominator uses the running
    maximum of v. All arrays flat, contiguous and 1-D of the same length.
    """
    _check_flat(p, g, m, v)
    amsgrad = v_max is not None
    if amsgrad:
        _check_flat(v_max)
    t = p.dtype.type
    # decoupled (AdamW): p *= 1 - lr * wd; coupled (Adam): g += wd * p. Both are always
    # applied, one of them as the identity, so the loop has no branch but AMSGrad's.
    decay = 1 - lr * weight_decay if decoupled else 1.0
    coupled = 0.0 if decoupled else weight_decay
    _adam_update(p, g, m, v, v_max if amsgrad else v, t(lr / (1 - beta1**step)),
                 t(math.sqrt(1 - beta2**step)), t(beta1), t(beta2), t(eps), t(decay), t(coupled),
                 amsgrad)


@_jit
def _adam_update(p, g, m, v, v_max, step_size, bias_correction2_sqrt, beta1, beta2, eps, decay,
                 coupled_decay, amsgrad):
    one = p.dtype.type(1)
    for i in range(p.size):
        gi = g[i] + coupled_decay * p[i]
        mi = m[i] + (one - beta1) * (gi - m[i])
        vi = beta2 * v[i] + (one - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(v_max[i], vi)
            v_max[i] = vi
        p[i] = p[i] * decay - step_size * mi / (math.sqrt(vi) / bias_correction2_sqrt + eps)


def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum, centered):
    """torch.optim.RMSprop in place; state arrays zero at the start, all flat 1-D."""
    _check_flat(p, g, square_avg, grad_avg, buf)
    t = p.dtype.type
    _rmsprop_update(p, g, square_avg, grad_avg, buf, t(lr), t(alpha), t(eps), t(weight_decay),
                    t(momentum), centered)


# written out here and in cuda/optim.py: around an inlined scalar.py update this loop stops
# vectorising (11x slower)
@_jit
def _rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum, centered):
    one = p.dtype.type(1)
    for i in range(p.size):
        gi = g[i] + weight_decay * p[i]
        square_avg[i] = alpha * square_avg[i] + (one - alpha) * gi * gi
        if centered:
            grad_avg[i] += (one - alpha) * (gi - grad_avg[i])
            avg = math.sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps
        else:
            avg = math.sqrt(square_avg[i]) + eps
        if momentum > 0:
            buf[i] = momentum * buf[i] + gi / avg
            p[i] -= lr * buf[i]
        else:
            p[i] -= lr * gi / avg


@_jit
def _sum_squares(g):
    total = 0.0
    for i in range(g.size):
        total += g[i] * g[i]
    return total


@_jit
def _scale(g, c):
    for i in range(g.size):
        g[i] *= c


def adagrad_update(p, g, state_sum, lr, weight_decay, eps):
    """torch.optim.Adagrad in place (``lr`` already decayed for this step); flat 1-D arrays."""
    _check_flat(p, g, state_sum)
    t = p.dtype.type
    _adagrad_update(p, g, state_sum, t(lr), t(weight_decay), t(eps))


@_jit
def _adagrad_update(p, g, state_sum, lr, weight_decay, eps):
    for i in range(p.size):
        _adagrad_step(i, p, g, state_sum, lr, weight_decay, eps)


def lamb_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, segments):
    """LAMB in place, one trust ratio per tensor p[segments[j]:segments[j+1]] (see the
    reference); g is overwritten with the update direction u. Flat 1-D arrays."""
    _check_flat(p, g, m, v)
    t = p.dtype.type
    _lamb_update(p, g, m, v, np.asarray(segments, np.int64), t(lr), t(beta1), t(beta2),
                 t(1 - beta1**step), t(math.sqrt(1 - beta2**step)), t(eps), t(weight_decay))


@_jit
def _lamb_update(p, g, m, v, segments, lr, beta1, beta2, bias_correction1, bias_correction2_sqrt,
                 eps, weight_decay):
    one = p.dtype.type(1)
    for j in range(segments.size - 1):
        p_sq, u_sq = 0.0, 0.0  # float64 sums, as the reference
        for i in range(segments[j], segments[j + 1]):
            m[i] = beta1 * m[i] + (one - beta1) * g[i]
            v[i] = beta2 * v[i] + (one - beta2) * g[i] * g[i]
            u = (m[i] / bias_correction1) / (math.sqrt(v[i]) / bias_correction2_sqrt + eps) \
                + weight_decay * p[i]
            g[i] = u
            p_sq += float(p[i]) * float(p[i])
            u_sq += float(u) * float(u)
        ratio = math.sqrt(p_sq) / math.sqrt(u_sq) if p_sq > 0 and u_sq > 0 else 1.0
        step = p.dtype.type(lr * ratio)
        for i in range(segments[j], segments[j + 1]):
            p[i] -= step * g[i]

def scale(x, c):
    """x *= c in place (a flat, contiguous array)."""
    _check_flat(x)
    _scale(x, x.dtype.type(c))


def clip_grad_norm(g, max_norm):
    """Scale g in place so that its L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_:
    factor max_norm / (norm + 1e-6) when below 1). Returns the norm before clipping."""
    _check_flat(g)
    norm = math.sqrt(_sum_squares(g))
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        _scale(g, coef)
    return norm
