"""How the CPU backend compiles its kernels (cpu.py, cpu_losses.py, cpu_optim.py): Numba's
settings, one name per kernel made from one definition, and the activations of
:mod:`scalar` compiled for the CPU.

Kernels are compiled on first use, once per dtype (float32, float64), and cached on disk
(``cache=CACHE``, see diskcache.py).
"""

from numba import njit

from . import scalar, vecmath
from .codes import ACTIVATION_NAMES, ACTIVATIONS, CACHE


def _jit(fn):
    return njit(cache=CACHE, nogil=True, error_model="numpy")(fn)


def _jit_named(name, act=None):
    """_jit for a kernel made from one definition per activation code (named
    ``<name>_<activation>``) or per loss (named `name`): one name per compiled function
    (see scalar.unique_name)."""
    full = name if act is None else f"{name}_{ACTIVATION_NAMES[act]}"
    return lambda fn: _jit(scalar.unique_name(fn, full))


def _per_activation(make):
    """One generic kernel, compiled per activation code: `make(act)` closes over the code,
    which Numba then treats as a compile-time constant, so the branch on it is folded away
    and the loop vectorises (each specialisation is compiled on first use and cached)."""
    return tuple(make(act) for act in range(len(ACTIVATIONS)))


# f and f' by activation code at run time (the C library's math: these serve the kernels
# that take the code as an argument, dropout and batch norm)
_ANY = scalar.compile_with(njit(error_model="numpy"))
# one function per activation, with vecmath's float32 exp / expm1 / log1p / tanh, inlined by
# Numba itself into each loop specialised for that activation (not left to LLVM's size
# heuristics), so the loop vectorises
_FAST = scalar.compile_with(njit(error_model="numpy", inline="always"), vecmath)
