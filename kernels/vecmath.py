"""exp, expm1, log1p and tanh that LLVM can vectorise, for the CPU backend's float32 loops.

Numba compiles ``math.exp`` and friends to calls of the C library, one element at a time:
LLVM cannot turn a loop that calls them into SIMD code (it would need a vector math library,
which Numba only uses when Intel's SVML is installed). A bias + tanh pass over a 128 x 256
layer then costs ~500 us where NumPy's own SIMD tanh takes ~17 us. The functions here are
plain arithmetic -- a polynomial after range reduction, with the power of two built from its
bits -- so the loops around them vectorise; they are accurate to a few float32 ulp
(tests/test_vecmath.py measures it against float64 NumPy over the whole float32 range).

Each name is one function for both dtypes: float32 arguments take the polynomial, float64
arguments (and anything else) the C library, which float32 cannot match in accuracy. The
CPU backend compiles the scalar activations of :mod:`scalar` with this module in place of
``math`` (see cpu.py), so the formulas stay the ones the CUDA backend compiles.
"""

import math

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from .codes import CACHE

erfc = math.erfc  # no float32 shortcut: GELU keeps the C library's erfc

_F32 = np.float32
_LOG2E = _F32(1.4426950408889634)
_LN2 = _F32(0.6931471805599453)
_LN2_HI = _F32(0.693359375)      # ln 2 split in two (Cody-Waite): k * _LN2_HI is exact
_LN2_LO = _F32(-2.12194440e-4)
_TANH_CLAMP = _F32(9.0)          # tanh(9) rounds to 1 in float32


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of the integer `bits`."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _bits_of_float32(typingctx, x):
    """The IEEE bits of the float32 `x`, as an int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(x), codegen


def _exp32(x):
    """exp(x): x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its minimax polynomial (Cephes
    expf), times 2^k built from exponent bits as 2^h * 2^(k-h), h = k // 2, so that each
    factor stays a normal number while 2^k itself overflows to inf (x > 88.72) or underflows
    to 0 (x < -103.3) as exp does. x is clamped first only to keep k a small integer
    (np.minimum / np.maximum pass a NaN through, so NaN gives NaN)."""
    xc = np.minimum(np.maximum(x, _F32(-104)), _F32(100))
    k = _F32(math.floor(xc * _LOG2E + _F32(0.5)))  # a float32 holding an integer
    r = xc - k * _LN2_HI - k * _LN2_LO
    p = _F32(1.9875691500e-4)
    p = p * r + _F32(1.3981999507e-3)
    p = p * r + _F32(8.3334519073e-3)
    p = p * r + _F32(4.1665795894e-2)
    p = p * r + _F32(1.6666665459e-1)
    p = p * r + _F32(5.0000001201e-1)
    p = p * r * r + r + _F32(1)
    h = np.int64(k) // 2
    return p * _float32_from_bits((h + 127) << 23) * _float32_from_bits((np.int64(k) - h + 127) << 23)


def _expm1_32(x):
    """exp(x) - 1 without the cancellation near 0: its Taylor polynomial for |x| < 1/2."""
    p = _F32(1 / 40320)
    for c in (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2):  # unrolled by Numba
        p = p * x + _F32(c)
    small = (p * x * x) + x
    big = _exp32(x) - _F32(1)
    return small if abs(x) < _F32(0.5) else big  # NaN: big, which is NaN


def _log1p32(y):
    """log(1 + y) for y > -1: u = 1 + y = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) =
    2 atanh(s), s = (m - 1) / (m + 1) (|s| < 0.172, odd series to s^11), plus the rounding
    of 1 + y corrected to first order: (y - (u - 1)) / u."""
    u = _F32(1) + y
    bits = _bits_of_float32(u)
    e = ((bits >> 23) & 0xFF) - 127
    m = _float32_from_bits((bits & 0x007FFFFF) | 0x3F800000)  # u / 2^e, in [1, 2)
    if m > _F32(1.41421356):
        m = m * _F32(0.5)
        e += 1
    s = (m - _F32(1)) / (m + _F32(1))
    s2 = s * s
    q = _F32(1 / 11)
    for c in (1 / 9, 1 / 7, 1 / 5, 1 / 3, 1.0):
        q = q * s2 + _F32(c)
    log_u = _F32(e) * _LN2 + _F32(2) * s * q
    result = log_u + (y - (u - _F32(1))) / np.maximum(u, _F32(1e-30))  # u = 0: y = -1, set below
    if y == _F32(np.inf):
        result = y
    if y < _F32(-1):
        result = _F32(np.nan)
    if y == _F32(-1):
        result = _F32(-np.inf)
    return result


def _tanh32(x):
    """tanh(x) = expm1(2x) / (expm1(2x) + 2), with |x| clamped to 9 (tanh(9) is 1 in float32)."""
    t = _expm1_32(_F32(2) * np.minimum(np.maximum(x, -_TANH_CLAMP), _TANH_CLAMP))
    return t / (t + _F32(2))


def exp(x):
    """exp(x); float32: vectorisable polynomial, otherwise math.exp."""
    return math.exp(x)


def expm1(x):
    """exp(x) - 1; float32: vectorisable polynomial, otherwise math.expm1."""
    return math.expm1(x)


def log1p(x):
    """log(1 + x); float32: vectorisable polynomial, otherwise math.log1p."""
    return math.log1p(x)


def tanh(x):
    """tanh(x); float32: vectorisable rational form, otherwise math.tanh."""
    return math.tanh(x)


# Each float32 function is compiled twice: inlined by Numba into the others that call it
# (so each is one flat function without calls), and on its own for the overloads below,
# small and call-free enough for LLVM to inline into the loop that calls it and vectorise.
_PY = {"_exp32": _exp32, "_expm1_32": _expm1_32, "_log1p32": _log1p32, "_tanh32": _tanh32}
for _name, _fn in _PY.items():
    globals()[_name] = njit(_fn, inline="always", error_model="numpy")
_FAST = {name: njit(fn, error_model="numpy", cache=CACHE) for name, fn in _PY.items()}


def _dispatch(python_fn, math_fn, fast):
    """Compile `python_fn` as `fast` for float32 arguments and as `math_fn` otherwise."""

    @overload(python_fn)
    def _impl(x):
        if x == types.float32:
            return lambda x: fast(x)
        return lambda x: math_fn(x)


_dispatch(exp, math.exp, _FAST["_exp32"])
_dispatch(expm1, math.expm1, _FAST["_expm1_32"])
_dispatch(log1p, math.log1p, _FAST["_log1p32"])
_dispatch(tanh, math.tanh, _FAST["_tanh32"])
