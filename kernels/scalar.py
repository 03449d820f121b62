"""The activation f and its derivative f' for one number, as plain Python: the CPU backend
compiles them with ``numba.njit`` and the CUDA backend as device functions, so both
backends run the same formulas. ``act`` is a code from :mod:`codes`.
"""

import math

from .codes import ELU, ELU_ALPHA, GELU, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTPLUS, TANH

SQRT1_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def f(z, act):
    """f(z); written so that nothing overflows for any z."""
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
    if act == GELU:  # z * Phi(z), through erfc: accurate for z << 0 too
        return 0.5 * z * math.erfc(-z * SQRT1_2)
    if act == SOFTPLUS:
        return max(z, 0) + math.log1p(math.exp(-abs(z)))
    return z


def df(a, act):
    """f' from the activation a = f(z); for GELU, a is the pre-activation z itself."""
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
    if act == GELU:
        return 0.5 * math.erfc(-a * SQRT1_2) + a * math.exp(-0.5 * a * a) * INV_SQRT_2PI
    if act == SOFTPLUS:
        return -math.expm1(-a)
    return 1.0
