"""The activations f and their derivatives f' for one number, as plain Python: one small
function per activation, and ``f(z, act)`` / ``df(a, act)`` choosing among them by code.

Backends compile them with :func:`compile_with` -- the CPU backend with ``numba.njit`` and
:mod:`vecmath` in place of ``math``, the CUDA backend as device functions -- so every
backend runs the same formulas. A kernel specialised for one activation calls that
activation's function directly (``compiled.f_of[act]``), so it compiles and inlines only
that formula; a kernel that takes the code at run time calls ``compiled.f``.
"""

import math
import types

from .codes import (ELU, ELU_ALPHA, GELU, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID,
                    SOFTPLUS, TANH)

SQRT1_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)

# ---------------------------------------------------------------------------------------
# f(z) per activation; written so that nothing overflows for any z


def identity(z):
    return z


def relu(z):
    return z if z > 0 else z * 0


def leaky_relu(z):
    return z if z > 0 else z * LEAKY_SLOPE


def elu(z):
    return z if z > 0 else ELU_ALPHA * math.expm1(z)


def sigmoid(z):
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)
    return e / (1 + e)


def tanh(z):
    return math.tanh(z)


def gelu(z):  # z * Phi(z), through erfc: accurate for z << 0 too
    return 0.5 * z * math.erfc(-z * SQRT1_2)


def softplus(z):
    return max(z, 0) + math.log1p(math.exp(-abs(z)))


# ---------------------------------------------------------------------------------------
# f' per activation, from the activation a = f(z); for GELU a is the pre-activation z itself


def identity_df(a):
    return 1.0


def relu_df(a):
    return 1.0 if a > 0 else 0.0


def leaky_relu_df(a):
    return 1.0 if a > 0 else LEAKY_SLOPE


def elu_df(a):
    return 1.0 if a > 0 else a + ELU_ALPHA


def sigmoid_df(a):
    return a * (1 - a)


def tanh_df(a):
    return 1 - a * a


def gelu_df(a):
    return 0.5 * math.erfc(-a * SQRT1_2) + a * math.exp(-0.5 * a * a) * INV_SQRT_2PI


def softplus_df(a):
    return -math.expm1(-a)


#: by activation code
F = {IDENTITY: identity, RELU: relu, LEAKY_RELU: leaky_relu, ELU: elu, SIGMOID: sigmoid,
     TANH: tanh, GELU: gelu, SOFTPLUS: softplus}
DF = {IDENTITY: identity_df, RELU: relu_df, LEAKY_RELU: leaky_relu_df, ELU: elu_df,
      SIGMOID: sigmoid_df, TANH: tanh_df, GELU: gelu_df, SOFTPLUS: softplus_df}


def f(z, act):
    """f(z) for the activation code `act`."""
    if act == RELU:
        return relu(z)
    if act == LEAKY_RELU:
        return leaky_relu(z)
    if act == ELU:
        return elu(z)
    if act == SIGMOID:
        return sigmoid(z)
    if act == TANH:
        return tanh(z)
    if act == GELU:
        return gelu(z)
    if act == SOFTPLUS:
        return softplus(z)
    return z


def df(a, act):
    """f' from the activation a = f(z) (for GELU, a is z) for the activation code `act`."""
    if act == RELU:
        return relu_df(a)
    if act == LEAKY_RELU:
        return leaky_relu_df(a)
    if act == ELU:
        return elu_df(a)
    if act == SIGMOID:
        return sigmoid_df(a)
    if act == TANH:
        return tanh_df(a)
    if act == GELU:
        return gelu_df(a)
    if act == SOFTPLUS:
        return softplus_df(a)
    return 1.0


def compile_with(jit, math_module=math):
    """Compile every function here with `jit` (a decorator), their ``math`` bound to
    `math_module`. Returns a namespace: ``f``, ``df`` (code chosen at run time) and
    ``f_of[act]``, ``df_of[act]`` (one activation each)."""
    def rebind(fn, extra):
        return types.FunctionType(fn.__code__, dict(fn.__globals__, math=math_module, **extra),
                                  fn.__name__, fn.__defaults__, fn.__closure__)

    f_of = {act: jit(rebind(fn, {})) for act, fn in F.items()}
    df_of = {act: jit(rebind(fn, {})) for act, fn in DF.items()}
    by_name = {fn.__name__: f_of[act] for act, fn in F.items()}
    by_name.update({fn.__name__: df_of[act] for act, fn in DF.items()})
    return types.SimpleNamespace(f=jit(rebind(f, by_name)), df=jit(rebind(df, by_name)),
                                 f_of=tuple(f_of[a] for a in sorted(f_of)),
                                 df_of=tuple(df_of[a] for a in sorted(df_of)))
