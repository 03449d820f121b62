"""The activations f and their derivatives f' for one number, written once: one small
function per activation (``relu`` and ``relu_df``...), found by the name the activation has
in ``codes.ACTIVATIONS``. Adding an activation = a row in ``codes.ACTIVATIONS``, its two
functions here, its NumPy twin in ``reference.py``; every backend and test picks it up.

Backends compile them with :func:`compile_with` -- the CPU backend with ``numba.njit`` and
:mod:`vecmath` in place of ``math``, the CUDA backend as device functions once per dtype --
so every backend runs the same formulas. The formulas use the named constants below, never
a bare literal: ``compile_with(..., dtype=np.float32)`` binds them as float32 numbers, so
float32 data is computed in float32 on the GPU (a Python literal is a float64 to Numba and
would turn the arithmetic into float64). Without a dtype they stay Python floats, as the
CPU backend compiles them.

A kernel specialised for one activation calls that activation's function directly
(``compiled.f_of[act]``), so it compiles and inlines only that formula; a kernel that takes
the code at run time calls ``compiled.f(z, act)``, a chain of branches generated from the
table (:func:`switch`).

The element-wise losses are written here the same way, one function per loss
(:data:`LOSSES`), compiled by :func:`compile_losses`; so are the optimizer updates of one
parameter that both backends share (``sgd_step``, ``adagrad_step``).
"""

import math
import types

from .codes import ACTIVATION_NAMES, ACTIVATIONS
from .codes import ELU_ALPHA as _ELU_ALPHA, LEAKY_SLOPE as _LEAKY_SLOPE

# the constants of the formulas (rebound to the data's dtype by compile_with)
ZERO = 0.0
ONE = 1.0
TWO = 2.0
HALF = 0.5
LEAKY_SLOPE = _LEAKY_SLOPE
ELU_ALPHA = _ELU_ALPHA
SQRT1_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_CONSTANTS = ("ZERO", "ONE", "TWO", "HALF", "LEAKY_SLOPE", "ELU_ALPHA", "SQRT1_2", "INV_SQRT_2PI")

# ---------------------------------------------------------------------------------------
# f(z) per activation; written so that nothing overflows for any z


def identity(z):
    return z


def relu(z):
    return z if z > ZERO else z * ZERO


def leaky_relu(z):
    return z if z > ZERO else z * LEAKY_SLOPE


def elu(z):
    return z if z > ZERO else ELU_ALPHA * math.expm1(z)


def sigmoid(z):
    if z >= ZERO:
        return ONE / (ONE + math.exp(-z))
    e = math.exp(z)
    return e / (ONE + e)


def tanh(z):
    return math.tanh(z)


def gelu(z):  # z * Phi(z), through erfc: accurate for z << 0 too
    return HALF * z * math.erfc(-z * SQRT1_2)


def softplus(z):
    return max(z, ZERO) + math.log1p(math.exp(-abs(z)))


# ---------------------------------------------------------------------------------------
# f' per activation, from the activation a = f(z); for GELU (codes.NEEDS_PREACTIVATION) a is
# the pre-activation z itself


def identity_df(a):
    return ONE


def relu_df(a):
    return ONE if a > ZERO else ZERO


def leaky_relu_df(a):
    return ONE if a > ZERO else LEAKY_SLOPE


def elu_df(a):
    return ONE if a > ZERO else a + ELU_ALPHA


def sigmoid_df(a):
    return a * (ONE - a)


def tanh_df(a):
    return ONE - a * a


def gelu_df(a):
    return HALF * math.erfc(-a * SQRT1_2) + a * math.exp(-HALF * a * a) * INV_SQRT_2PI


def softplus_df(a):
    return -math.expm1(-a)


# ---------------------------------------------------------------------------------------
# the element-wise losses, for one logit z, its target t and the sample's weight w: each
# returns (w * loss, w * d loss / d z); a kernel sums the first and scales the second by
# 1 / Z.size. compile_losses binds `sigmoid` (the compiled activation) and PRECISE:

PRECISE = float  # the type Poisson computes in: float64 on both backends
#: the losses computed in PRECISE (float64) whatever the data's dtype, and summed in it: a
#: term exp(z) passes float32's range above z = 88, where the loss in float64 is finite
PRECISE_LOSSES = frozenset({"poisson"})


def bce(z, t, w):  # sigmoid + binary cross-entropy from the logit, stable for any z
    return (w * (max(z, ZERO) - z * t + math.log1p(math.exp(-abs(z)))),
            w * (sigmoid(z) - t))


def mse(z, t, w):
    d = z - t
    return w * d * d, TWO * w * d


def poisson(z, t, w):  # half Poisson deviance with a log link, up to its constant
    z = PRECISE(z)
    t = PRECISE(t)
    mu = math.exp(z)  # once: the loss and the gradient share it
    return w * (mu - t * z), w * (mu - t)


#: the element-wise losses by name
LOSSES = {"bce": bce, "mse": mse, "poisson": poisson}


# ---------------------------------------------------------------------------------------
# optimizer updates of one parameter p[i] in place (torch.optim's formulas), in p's dtype:
# the CPU backend's loops (cpu_optim.py) and the CUDA backend's kernels (cuda/optim.py)
# call these, compiled as they are. Adam, RMSprop and LAMB are written in each backend: the
# CPU's Adam is branch-free over both weight decays, its RMSprop loop stops vectorising
# (11x slower) around an inlined update, and LAMB's reductions differ in order.


def sgd_step(i, p, g, buf, lr, momentum, weight_decay, nesterov):  # dampening 0
    d = g[i] + weight_decay * p[i]
    if momentum != p.dtype.type(0):
        buf[i] = momentum * buf[i] + d
        d = d + momentum * buf[i] if nesterov else buf[i]
    p[i] -= lr * d


def adagrad_step(i, p, g, state_sum, lr, weight_decay, eps):
    gi = g[i] + weight_decay * p[i]
    state_sum[i] += gi * gi
    p[i] -= lr * gi / (math.sqrt(state_sum[i]) + eps)


# ---------------------------------------------------------------------------------------
# the table: activation code -> its f and f' (from codes.ACTIVATIONS, by name)

CODES = tuple(sorted(ACTIVATIONS.values()))
assert CODES == tuple(range(len(CODES))), "activation codes must be 0, 1, 2, ..."
#: f and f' by activation code
F = tuple(globals()[ACTIVATION_NAMES[code]] for code in CODES)
DF = tuple(globals()[ACTIVATION_NAMES[code] + "_df"] for code in CODES)


def unique_name(fn, name):
    """`fn` renamed `name` (its __qualname__): every compiled function needs a name of its
    own. Numba names the machine code of a function after its __qualname__ and a counter of
    the process; functions generated from one definition (closures, rebound copies) share
    the __qualname__, so code loaded from the disk cache, named in another process, can take
    the name of a different function compiled here, and calls then go to the wrong one."""
    fn.__qualname__ = name
    return fn


def specialise(template, name, **names):
    """A copy of the function `template`, named `name` (see unique_name), whose global
    `names` are the given values (compiled functions: a loss, a metric). Numba's disk cache
    keys a closure by the values it captures, and a compiled function pickles differently
    in every process (its dispatcher's uuid): a closure over compiled functions never hits
    the cache in a later process and is compiled again (a second each). Globals are not in
    the key, so a copy with globals of its own is compiled once per machine."""
    scope = dict(template.__globals__, **names)
    fn = types.FunctionType(template.__code__, scope, name, template.__defaults__)
    fn.__qualname__ = name
    fn.__module__ = template.__module__
    fn.__doc__ = template.__doc__
    return fn


def switch(jit, by_code, default=None, nargs=1, name="switch"):
    """A compiled ``run(x, act)`` (``run(x, y, act)`` with nargs=2) that returns
    ``by_code[act](x)``, the functions compiled already, ``default(x)`` past the last code
    (``by_code[0]`` if None): a chain of ``if act == code`` branches built from the table,
    each link a small compiled function calling the next (Numba inlines them). `name`
    (unique per switch) names the links, ``<name>_level<code>``."""
    default = by_code[0] if default is None else default

    def level(code):
        here = by_code[code]
        rest = level(code + 1) if code + 1 < len(by_code) else None
        if nargs == 1 and rest is None:
            def run(x, act):
                return here(x) if act == code else default(x)
        elif nargs == 1:
            def run(x, act):
                return here(x) if act == code else rest(x, act)
        elif rest is None:
            def run(x, y, act):
                return here(x, y) if act == code else default(x, y)
        else:
            def run(x, y, act):
                return here(x, y) if act == code else rest(x, y, act)
        return jit(unique_name(run, f"{name}_level{code}"))

    return level(0)


def _tag(math_module, dtype):
    """The variant's name: e.g. vecmath_py (the CPU's fast loops), math_float32."""
    return (f"{getattr(math_module, '__name__', 'math').rsplit('.', 1)[-1]}_"
            f"{'py' if dtype is None else getattr(dtype, '__name__', str(dtype))}")


def _rebind(fn, jit, math_module, dtype, **names):
    """`fn` compiled with `jit`, its ``math`` bound to `math_module`, its constants to
    `dtype` (None: Python floats) and the global `names` to the values given."""
    constants = {name: (globals()[name] if dtype is None else dtype(globals()[name]))
                 for name in _CONSTANTS}
    copy = types.FunctionType(fn.__code__,
                              dict(fn.__globals__, math=math_module, **constants, **names),
                              fn.__name__, fn.__defaults__, fn.__closure__)
    return jit(unique_name(copy, f"{fn.__name__}_{_tag(math_module, dtype)}"))


def compile_with(jit, math_module=math, dtype=None):
    """Compile every activation here with `jit` (a decorator), their ``math`` bound to
    `math_module` and their constants to `dtype` (None: Python floats). Returns a namespace:
    ``f(z, act)``, ``df(a, act)`` (code chosen at run time) and ``f_of[act]``,
    ``df_of[act]`` (one activation each)."""
    tag = _tag(math_module, dtype)
    f_of = tuple(_rebind(fn, jit, math_module, dtype) for fn in F)
    df_of = tuple(_rebind(fn, jit, math_module, dtype) for fn in DF)
    return types.SimpleNamespace(f=switch(jit, f_of, f_of[0], name=f"f_{tag}"),
                                 df=switch(jit, df_of, df_of[0], name=f"df_{tag}"),
                                 f_of=f_of, df_of=df_of)


def compile_losses(jit, sigmoid, precise, math_module=math, dtype=None):
    """Compile the losses of LOSSES with `jit`, as compile_with; `sigmoid` is the compiled
    activation BCE calls and `precise` the type Poisson computes exp(z) in. Returns
    {name: compiled function}."""
    return {name: _rebind(fn, jit, math_module, dtype, sigmoid=sigmoid, PRECISE=precise)
            for name, fn in LOSSES.items()}
