"""The CUDA backend: numba-cuda kernels on NVIDIA GPUs, same contract as ``cpu.py``.

Every function of the contract (see ``kernels/__init__.py``) takes the same arguments as in
``cpu.py`` and ``reference.py``, but its arrays are numba *device* arrays (``empty``,
``zeros`` and ``to_device`` make them; ``to_host`` copies one back), float32 or float64.
Outputs are written into the arrays passed in; the kernels are launched on the default
stream and return without waiting for the GPU, except where a value must come back to the
host (documented per function: the losses and ``count_correct`` without ``total=``, and
``clip_grad_norm`` without ``norm_out=``).

Launch strategy (one launch per contract call unless said otherwise)
--------------------------------------------------------------------
- ``matmul``, ``linear_forward``, ``delta_backward``, ``weight_grad``: one register-blocked,
  shared-memory tiled GEMM (block tile BM x BN, k-step BK, each thread a TM x TN
  micro-tile: ``GEMM_LARGE`` = 64 x 64 x 16 with 4 x 4 per thread, or ``GEMM_SMALL`` =
  32 x 32 x 16 with 2 x 2 when the large tiles would not give every multiprocessor a
  block, as for most layers of a small network), specialised at compile time per dtype,
  tile configuration, transpose flags, epilogue and activation. The epilogue is fused: ``f(acc + b)`` for the forward pass,
  ``acc * f'(D_prev)`` for the delta, and for ``weight_grad`` the blocks of the first column
  block also sum the delta tiles they already hold in shared memory into ``db`` (a
  deterministic reduction over the batch, no atomics), so a layer's backward pass is two
  launches.
- The losses, ``softmax`` and ``count_correct``: one thread per row (classes are few), the
  per-row losses reduced in shared memory per block, then ONE atomic add per block into a
  float64 device scalar.
- Batch norm and ``regression_sums``: a block owns a group of columns and reduces over the
  batch with a shared-memory tree (two-pass mean/variance, as the CPU backend).
- Elementwise kernels and the optimizers: 1-D grid-stride loops, one launch over the whole
  (flat) array.
- ``fill_uniform``: a stateless counter-based generator on the device (splitmix64 of
  (seed, element index)); one 64-bit seed is drawn from the host ``rng``.
- ``mlp_forward`` / ``mlp_backward`` (a stack of Dense layers): for a narrow network (every
  width <= ``FUSED_MAX_WIDTH`` = 256, the input <= ``FUSED_MAX_INPUT`` = 256) fully fused: the whole forward pass in
  ONE launch (a block takes a few rows through every layer, each layer's output kept in
  shared memory for the next and written out for the backward pass), the whole delta chain
  in ONE launch likewise, then one ``weight_grad`` GEMM per layer; so L + 2 launches for
  the two passes of L >= 2 layers instead of 3L - 1 (e.g. 64-128-64-10: 5 instead of 8).
  Wider networks, MNIST's 784-input one included, loop over the per-layer kernels.
- Extra, not in the contract: ``mlp_forward_fused(X, params, sizes, acts, out)``, the
  forward kernel above for inference (the hidden layers never leave shared memory).

Device accumulation without readback
------------------------------------
The losses and ``count_correct`` take an optional trailing ``total=None``: a float64
device array of shape (1,) (``count_correct`` also accepts int64). When it is given the
kernel ADDS to ``total[0]`` and the function returns None without synchronising:

- losses: ``total[0] += B * loss``, ``loss`` being exactly what the call would have
  returned (the batch mean ``sum_i w_i l_i / B``). For softmax cross-entropy that is
  ``sum_i w_i l_i``; for BCE and MSE (means over all B*K elements) it is
  ``sum_ij w_i l_ij / K``. Summed over an epoch and divided by the number of samples this
  is the sample-weighted mean of the batch losses (Keras' epoch loss).
- ``count_correct``: ``total[0] += number of right rows``.

Without ``total`` they return a Python float / int as the CPU backend does (and wait for
the GPU to do so).

Tile and block sizes are module constants read when a kernel is first compiled. Under the
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, one Python thread per CUDA thread) they are
chosen small automatically; ``FASTMLP_CUDA_SMALL=1`` forces the small sizes on a real GPU
too (for testing the edge paths there).

Arguments must be device arrays (numba would otherwise copy a host array to the device
and back on every call). Kernels compile on first use, once per dtype and specialisation
(about a second each on a GPU); nothing is cached on disk.

This module imports without numba-cuda, a driver or a GPU; ``is_available()`` and
``why_unavailable()`` tell whether it can run here.
"""

import functools
import importlib.util
import math
import os
import sys

import numpy as np

from . import scalar, stack
from .codes import (ELU, ELU_ALPHA, GELU, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, NEEDS_PREACTIVATION,
                    RELU, SIGMOID, SOFTPLUS, TANH)

name = "cuda"

_IMPORT_ERROR = None
cuda = None
SIM = False
if importlib.util.find_spec("numba_cuda") is None:
    _IMPORT_ERROR = ("the numba-cuda package is not installed "
                     "(pip install numba-cuda, or fastmlp's 'cuda' extra)")
else:
    try:
        import numba
        from numba import cuda
        from numba import float64 as _nb_float64
        from numba import int64 as _nb_int64
        from numba import uint64 as _nb_uint64

        SIM = bool(numba.config.ENABLE_CUDASIM)
    except Exception as exc:  # a broken install must not break `import fastmlp`
        cuda = None
        _IMPORT_ERROR = f"numba-cuda could not be imported: {exc}"

_SMALL = SIM or os.environ.get("FASTMLP_CUDA_SMALL", "").strip().lower() in ("1", "true", "yes")

if _SMALL:  # simulator: few threads per block, few blocks (the grid-stride loops do the rest)
    GEMM_LARGE = (8, 8, 4, 2, 2)  # (BM, BN, BK, TM, TN): 16 threads
    GEMM_SMALL = (4, 4, 4, 1, 1)  # 16 threads
    THREADS = 16
    MAX_BLOCKS = 4
    COL_X, COL_Y = 4, 4
else:
    GEMM_LARGE = (64, 64, 16, 4, 4)  # (BM, BN, BK, TM, TN): 256 threads
    GEMM_SMALL = (32, 32, 16, 2, 2)  # 256 threads
    THREADS = 256
    MAX_BLOCKS = 4096
    COL_X, COL_Y = 32, 8

#: at most this many blocks do the row reductions (one atomic add each)
MAX_REDUCE_BLOCKS = MAX_BLOCKS if _SMALL else 1024

_SQRT1_2, _INV_SQRT_2PI = scalar.SQRT1_2, scalar.INV_SQRT_2PI

# splitmix64 constants (uint64 so that all the hash arithmetic stays uint64 in the kernel)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S40 = (np.uint64(s) for s in (30, 27, 31, 11, 40))
_TWO_M53 = 2.0 ** -53
_TWO_M24 = 2.0 ** -24

# GEMM epilogues
EPI_NONE, EPI_BIAS_ACT, EPI_DACT, EPI_DB = range(4)


# ---------------------------------------------------------------------------------------
# availability


@functools.lru_cache(maxsize=None)
def why_unavailable():
    """None when this backend can run here (a GPU, or the CUDA simulator), else the reason:
    numba-cuda missing, no usable CUDA driver, no NVVM compiler library, or no device."""
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    if SIM:
        return None
    try:
        from numba.cuda.cudadrv import driver as _driver

        drv = _driver.driver
        if not drv.is_available:
            return "no usable CUDA driver: " + " ".join(str(drv.initialization_error).split())
    except Exception as exc:
        return "no usable CUDA driver: " + " ".join(str(exc).split())
    try:
        from numba.cuda.cudadrv import nvvm as _nvvm

        if not _nvvm.is_available():
            return ("the CUDA compiler library libNVVM was not found "
                    "(pip install 'numba-cuda[cu12]' or 'numba-cuda[cu13]')")
    except Exception as exc:
        return f"the CUDA compiler library libNVVM could not be loaded: {exc}"
    try:
        if len(cuda.gpus) == 0:
            return "no CUDA device was found"
    except Exception as exc:
        return f"no CUDA device was found: {exc}"
    return None


def is_available():
    """True when the kernels of this module can run: a CUDA GPU with a driver and
    numba-cuda, or numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return why_unavailable() is None


def _require():
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(f"the CUDA backend is not available: {reason}")


# ---------------------------------------------------------------------------------------
# launching (and a compile-only mode that type-checks every kernel for a real GPU without
# one: the tests set _COMPILE_ONLY to a compute capability and call the functions with
# host arrays, which have the same Numba types as device arrays)

_COMPILE_ONLY = None
_compiled_ptx = {}


def _kernel(fn):
    return cuda.jit(fn) if cuda is not None else fn


def _device(fn):
    return cuda.jit(device=True)(fn) if cuda is not None else fn


def _launch(kernel, grid, block, *args):
    if _COMPILE_ONLY is not None:
        sig = tuple(numba.typeof(a) for a in args)
        key = (kernel.py_func, sig, _COMPILE_ONLY)
        if key not in _compiled_ptx:
            _compiled_ptx[key] = _compile_ptx(kernel.py_func, sig, _COMPILE_ONLY)
        return
    if cuda is None:
        _require()
    kernel[grid, block](*args)


def _compile_ptx(py_func, sig, cc):
    """PTX for a kernel without a GPU (numba-cuda asks the current device for the compute
    capability of the device functions a kernel calls: it is told `cc` instead)."""
    import types as _types

    from numba.cuda import dispatcher as _dispatcher

    saved = _dispatcher.get_current_device
    _dispatcher.get_current_device = lambda: _types.SimpleNamespace(compute_capability=cc)
    try:
        return cuda.compile_ptx(py_func, sig, cc=cc)[0]
    finally:
        _dispatcher.get_current_device = saved


def _blocks(n, threads=None, cap=None):
    threads = THREADS if threads is None else threads
    cap = MAX_BLOCKS if cap is None else cap
    return max(1, min(cap, (n + threads - 1) // threads))


def _is_device(a):
    return hasattr(a, "copy_to_host")


def _alloc(shape, dtype):
    if _COMPILE_ONLY is not None:
        return np.zeros(shape, dtype)
    _require()
    return cuda.device_array(shape, dtype)


_dummies = {}


def _dummy(dtype, ndim):
    """A tiny device array standing in for an absent optional argument."""
    key = (np.dtype(dtype).str, ndim, _COMPILE_ONLY)
    a = _dummies.get(key)
    if a is None:
        a = _dummies[key] = _alloc((1,) * ndim, dtype)
    return a


_scratches = {}


def _scratch(dtype, purpose):
    """A private (1,) device array of `dtype` for `purpose` (allocated once)."""
    key = (np.dtype(dtype).str, purpose, _COMPILE_ONLY)
    a = _scratches.get(key)
    if a is None:
        a = _scratches[key] = _alloc((1,), dtype)
    return a


def _zeroed_scalar(dtype):
    """A (1,) device scratch array holding 0, for the functions that read a value back
    (zeroed by a host copy: these paths synchronise anyway)."""
    d = _scratch(dtype, "readback")
    if _COMPILE_ONLY is None:
        d.copy_to_device(np.zeros(1, dtype))
    return d


def _read_scalar(d):
    if _COMPILE_ONLY is not None:
        return np.asarray(d)[0]
    return d.copy_to_host()[0]


def _reshape(a, shape):
    return a if tuple(a.shape) == tuple(shape) else a.reshape(*shape)


# ---------------------------------------------------------------------------------------
# activation f and its derivative f' written through the output A = f(Z)


_SCALAR = scalar.compile_with(_device)
_f, _df = _SCALAR.f, _SCALAR.df


@_device
def _tree_sum(red, t, n):
    """Sum red[0:n] into red[0] (n a power of two); every thread of the block calls this
    after a syncthreads that follows its write of red[t]."""
    s = n // 2
    while s > 0:
        if t < s:
            red[t] += red[t + s]
        cuda.syncthreads()
        s //= 2


@_device
def _col_tree_sum(red, ty, tx):
    """Sum red[0:COL_Y, tx] into red[0, tx], likewise."""
    s = COL_Y // 2
    while s > 0:
        if ty < s:
            red[ty, tx] += red[ty + s, tx]
        cuda.syncthreads()
        s //= 2


# ---------------------------------------------------------------------------------------
# the tiled GEMM with fused epilogues


@functools.lru_cache(maxsize=None)
def _typed_activation(dt):
    """f and f' as device functions whose arithmetic stays in `dt` (float32 math for float32
    data: the GEMM epilogue runs once per output, and float64 arithmetic there would cost
    more than the product itself on GPUs with slow float64)."""
    ZERO, ONE, HALF = dt(0), dt(1), dt(0.5)
    SLOPE, ALPHA = dt(LEAKY_SLOPE), dt(ELU_ALPHA)
    S12, ISP = dt(_SQRT1_2), dt(_INV_SQRT_2PI)

    def f(z, act):
        if act == RELU:
            return z if z > ZERO else z * ZERO
        if act == LEAKY_RELU:
            return z if z > ZERO else z * SLOPE
        if act == ELU:
            return z if z > ZERO else ALPHA * math.expm1(z)
        if act == SIGMOID:
            if z >= ZERO:
                return ONE / (ONE + math.exp(-z))
            e = math.exp(z)
            return e / (ONE + e)
        if act == TANH:
            return math.tanh(z)
        if act == GELU:
            return HALF * z * math.erfc(-z * S12)
        if act == SOFTPLUS:
            return max(z, ZERO) + math.log1p(math.exp(-abs(z)))
        return z

    def df(a, act):
        if act == RELU:
            return ONE if a > ZERO else ZERO
        if act == LEAKY_RELU:
            return ONE if a > ZERO else SLOPE
        if act == ELU:
            return ONE if a > ZERO else a + ALPHA
        if act == SIGMOID:
            return a * (ONE - a)
        if act == TANH:
            return ONE - a * a
        if act == GELU:
            return HALF * math.erfc(-a * S12) + a * math.exp(-HALF * a * a) * ISP
        if act == SOFTPLUS:
            return -math.expm1(-a)
        return ONE

    return cuda.jit(device=True)(f), cuda.jit(device=True)(df)


@functools.lru_cache(maxsize=None)
def _gemm_kernel(dt, trans_a, trans_b, epi, act, config):
    """C = op(A) @ op(B) with an epilogue, for one dtype and transpose/epilogue choice.

    Block: (BN // TN, BM // TM) threads; grid: (ceil(N / BN),
    ceil(M / BM)). Thread (ty, tx) owns rows ty + i * THR_M and columns tx + j * THR_N of the
    block tile (strided so that stores and shared-memory reads are contiguous across tx).
    Tiles of op(A) and op(B) are staged k-major in shared memory (padded by one element
    against bank conflicts), loaded with consecutive threads on consecutive addresses of
    the array in memory whatever the transpose flags.
    """
    BM, BN, BK, TM, TN = config
    THR_M, THR_N = BM // TM, BN // TN
    NT = THR_M * THR_N
    A_LOADS, B_LOADS = BM * BK // NT, BN * BK // NT
    BMP, BNP = BM + 1, BN + 1
    assert A_LOADS * NT == BM * BK and B_LOADS * NT == BN * BK and TM <= THR_N
    f, df = _typed_activation(dt)
    ZERO = dt(0)

    def gemm(A, B, C, bias, D, db):
        As = cuda.shared.array((BK, BMP), dt)
        Bs = cuda.shared.array((BK, BNP), dt)
        acc = cuda.local.array((TM, TN), dt)
        areg = cuda.local.array(TM, dt)
        breg = cuda.local.array(TN, dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * THR_N + tx
        M = C.shape[0]
        N = C.shape[1]
        if trans_a:
            K = A.shape[0]
        else:
            K = A.shape[1]
        m0 = cuda.blockIdx.y * BM
        n0 = cuda.blockIdx.x * BN
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = 0
        do_db = epi == EPI_DB and cuda.blockIdx.x == 0 and tx < TM
        db_row = ty + tx * THR_M
        colsum = ZERO
        for k0 in range(0, K, BK):
            for l in range(A_LOADS):
                e = tid + l * NT
                if trans_a:  # A is (K, M) in memory: consecutive threads along m
                    c = e // BM
                    r = e - c * BM
                else:  # A is (M, K): consecutive threads along k
                    r = e // BK
                    c = e - r * BK
                gm = m0 + r
                gk = k0 + c
                if gm < M and gk < K:
                    if trans_a:
                        As[c, r] = A[gk, gm]
                    else:
                        As[c, r] = A[gm, gk]
                else:
                    As[c, r] = 0
            for l in range(B_LOADS):
                e = tid + l * NT
                if trans_b:  # B is (N, K) in memory: consecutive threads along k
                    r = e // BK
                    c = e - r * BK
                else:  # B is (K, N): consecutive threads along n
                    c = e // BN
                    r = e - c * BN
                gn = n0 + r
                gk = k0 + c
                if gn < N and gk < K:
                    if trans_b:
                        Bs[c, r] = B[gn, gk]
                    else:
                        Bs[c, r] = B[gk, gn]
                else:
                    Bs[c, r] = 0
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(TM):
                    areg[i] = As[kk, ty + i * THR_M]
                for j in range(TN):
                    breg[j] = Bs[kk, tx + j * THR_N]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += areg[i] * breg[j]
            if do_db:  # db = column sums of op(A)'s rows: the delta tile already staged
                for kk in range(BK):
                    colsum += As[kk, db_row]
            cuda.syncthreads()
        for i in range(TM):
            row = m0 + ty + i * THR_M
            if row < M:
                for j in range(TN):
                    col = n0 + tx + j * THR_N
                    if col < N:
                        if epi == EPI_BIAS_ACT:
                            C[row, col] = f(acc[i, j] + bias[col], act)
                        elif epi == EPI_DACT:
                            C[row, col] = acc[i, j] * df(D[row, col], act)
                        else:
                            C[row, col] = acc[i, j]
        if do_db:
            row = m0 + db_row
            if row < M:
                db[row] = colsum

    return cuda.jit(gemm)


_sm_count = []


def _multiprocessors():
    """How many blocks run at once, roughly: the device's multiprocessor count (4 under the
    simulator, so that its tests meet both tile configurations)."""
    if not _sm_count:
        if _SMALL or _COMPILE_ONLY is not None:
            _sm_count.append(4)
        else:
            try:
                _sm_count.append(int(cuda.get_current_device().MULTIPROCESSOR_COUNT))
            except Exception:
                _sm_count.append(80)
    return _sm_count[0]


def _gemm_config(M, N):
    BM, BN = GEMM_LARGE[:2]
    if ((M + BM - 1) // BM) * ((N + BN - 1) // BN) >= _multiprocessors():
        return GEMM_LARGE
    return GEMM_SMALL


def _gemm(A, B, C, trans_a, trans_b, epi, bias=None, D=None, act=IDENTITY, db=None):
    dt = np.dtype(C.dtype).type
    M, N = C.shape
    config = _gemm_config(M, N)
    BM, BN, _, TM, TN = config
    # the activation is a compile-time constant of the kernel: one specialisation per
    # activation in use, with only that activation's code in the epilogue
    kernel = _gemm_kernel(dt, bool(trans_a), bool(trans_b), epi,
                          int(act) if epi in (EPI_BIAS_ACT, EPI_DACT) else IDENTITY, config)
    grid = ((N + BN - 1) // BN, (M + BM - 1) // BM)
    if grid[0] == 0 or grid[1] == 0:
        if epi == EPI_DB and db is not None:
            _zero_fill(db)
        return
    _launch(kernel, grid, (BN // TN, BM // TM), A, B, C,
            _dummy(dt, 1) if bias is None else bias,
            _dummy(dt, 2) if D is None else D,
            _dummy(dt, 1) if db is None else db)


def matmul(A, B, C, trans_a=False, trans_b=False):
    """C = op(A) @ op(B), op transposing when its flag is set (one tiled-GEMM launch)."""
    _gemm(A, B, C, trans_a, trans_b, EPI_NONE)


def linear_forward(A_in, W, b, act, A_out):
    """A_out = f(A_in @ W.T + b) in one launch: tiled GEMM, bias + activation epilogue."""
    _gemm(A_in, W, A_out, False, True, EPI_BIAS_ACT, bias=b, act=act)


def delta_backward(delta, W, A_prev, act, delta_prev):
    """delta_prev = f'(A_prev) * (delta @ W) in one launch (f' fused into the epilogue)."""
    _gemm(delta, W, delta_prev, False, False, EPI_DACT, D=A_prev, act=act)


def weight_grad(delta, A_prev, dW, db):
    """dW = delta.T @ A_prev and db = sum of delta over the batch, in one launch: the
    blocks of the first column block sum the delta tiles they stage for the GEMM."""
    _gemm(delta, A_prev, dW, True, False, EPI_DB, db=db)


# ---------------------------------------------------------------------------------------
# a stack of Dense layers in one call each way (contract: see reference.mlp_forward)
#
# For a narrow network the forward pass and the backward pass's delta chain each run in ONE
# launch, in the spirit of tiny-cuda-nn's FullyFusedMLP (without its tensor cores): a block
# takes a few rows of the batch through every layer, and each layer's output for those rows
# stays in shared memory for the next one. Wider networks take the per-layer tiled GEMMs.

#: widest layer (after the input) the fused kernels take: a block keeps its rows of every
#: layer's output in shared memory
FUSED_MAX_WIDTH = 32 if _SMALL else 256
#: widest input the fused training kernels take: their first layer reads its input row by
#: row from global memory with a few blocks only, which a wide input (MNIST's 784) makes
#: slower than the tiled GEMM it replaces (an estimate: no GPU has measured it yet)
FUSED_MAX_INPUT = 64 if _SMALL else 256
#: rows of the batch per block in the fused kernels (fewer where two shared buffers of that
#: many rows would pass FUSED_SHARED_BYTES, as float64 at width 256)
FUSED_ROWS = 4 if _SMALL else 16
#: the static shared memory one block may use (CUDA's limit without opting in to more)
FUSED_SHARED_BYTES = 48 * 1024


def _fused_rows(dt, sizes):
    """Rows per block of the fused kernels for the network `sizes`: FUSED_ROWS, halved until
    the two (rows, widest + 1) shared buffers fit in FUSED_SHARED_BYTES."""
    width = max(sizes[1:]) + 1
    rows = FUSED_ROWS
    while rows > 1 and 2 * rows * width * np.dtype(dt).itemsize > FUSED_SHARED_BYTES:
        rows //= 2
    return rows


@functools.lru_cache(maxsize=None)
def _fused_forward_kernel(dt, sizes, acts, store_hidden):
    """One kernel for the whole forward pass of the Dense network `sizes` / `acts`:
    for l = 0..L-1,  Z = A[l] @ W[l].T + b[l],  A[l+1] = f_l(Z),  with A[0] = X.

    Arguments ``(X, W, b, A_out, D_out)``: X (B, sizes[0]); W, b: tuples of the L weights
    (sizes[l+1], sizes[l]) and biases; A_out, D_out: tuples of L arrays (B, sizes[l+1]),
    A_out[l] = A[l+1] and D_out[l] = D[l+1] of the contract. A_out[L-1], the network's
    output, is always written. With `store_hidden` (training) so is every A_out[l], and
    D_out[l] = Z for the activations in NEEDS_PREACTIVATION (the backward pass needs them);
    without it (inference) the hidden layers never leave the chip and A_out, D_out may just
    repeat the output array.

    Threads: block x takes rows x*R .. x*R+R-1 of the batch (grid: ceil(B / R) blocks; any
    block size works, THREADS is used). Layer l reads its input rows from buf[(l - 1) % 2]
    (layer 0 from X) and writes its output rows to buf[l % 2]: two ping-pong buffers of
    (R, widest + 1) in shared memory (padded against bank conflicts), a barrier between
    layers. Thread k computes unit o = k // R of row r = k % R (k steps by the block size),
    so the R threads of one unit share every weight W[l][o, i] (a broadcast read) and read
    consecutive buffer rows.
    """
    R = _fused_rows(dt, sizes)
    NL = len(acts)
    WP = max(sizes[1:]) + 1
    SIZES = tuple(int(s) for s in sizes)
    ACTS = tuple(int(a) for a in acts)
    KEEP_Z = tuple(bool(store_hidden) and a in NEEDS_PREACTIVATION for a in ACTS)
    STORE = bool(store_hidden)
    f, _ = _typed_activation(dt)

    def forward(X, W, b, A_out, D_out):
        buf = cuda.shared.array((2, R, WP), dt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        r0 = cuda.blockIdx.x * R
        nrows = min(R, X.shape[0] - r0)
        for l in range(NL):
            n_in = SIZES[l]
            n_out = SIZES[l + 1]
            act = ACTS[l]
            Wl = W[l]
            bl = b[l]
            Al = A_out[l]
            Dl = D_out[l]
            for k in range(tid, R * n_out, nt):
                o = k // R
                r = k - o * R
                if r < nrows:
                    z = bl[o]
                    if l == 0:
                        for i in range(n_in):
                            z += X[r0 + r, i] * Wl[o, i]
                    else:
                        src = (l - 1) % 2
                        for i in range(n_in):
                            z += buf[src, r, i] * Wl[o, i]
                    a = f(z, act)
                    if l < NL - 1:
                        buf[l % 2, r, o] = a
                    if STORE or l == NL - 1:
                        Al[r0 + r, o] = a
                    if KEEP_Z[l]:
                        Dl[r0 + r, o] = z
            cuda.syncthreads()

    return cuda.jit(forward)


@functools.lru_cache(maxsize=None)
def _fused_delta_kernel(dt, sizes, acts):
    """One kernel for the whole delta chain of the Dense network `sizes` / `acts` (L >= 2):
    for l = L-1 down to 1,  delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l]).

    Arguments ``(delta, W, D_out)``: delta: tuple of the L arrays (B, sizes[l+1]), delta[L-1]
    read and every other one written; W: tuple of the L weights; D_out: tuple of L-1 arrays,
    D_out[l] = D[l+1] of the contract (what f'_l is computed from: A[l+1], or Z for GELU).

    Threads: as in the forward kernel, block x takes R rows of the batch through every layer,
    here backwards: the rows of delta[L-1] are staged in buf[0]; step s (l = L-1-s) reads
    delta[l] from buf[s % 2] and writes delta[l-1] to global memory and to buf[(s + 1) % 2].
    Thread k computes unit i = k // R of row r = k % R: the sum over o of
    delta[l][r, o] * W[l][o, i], the R threads of one unit sharing each weight (a broadcast
    read), consecutive units reading consecutive columns of W.
    """
    R = _fused_rows(dt, sizes)
    NL = len(acts)
    WP = max(sizes[1:]) + 1
    SIZES = tuple(int(s) for s in sizes)
    ACTS = tuple(int(a) for a in acts)
    _, df = _typed_activation(dt)
    ZERO = dt(0)

    def backward(delta, W, D_out):
        buf = cuda.shared.array((2, R, WP), dt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        r0 = cuda.blockIdx.x * R
        top = delta[NL - 1]
        nrows = min(R, top.shape[0] - r0)
        for k in range(tid, R * SIZES[NL], nt):
            o = k // R
            r = k - o * R
            if r < nrows:
                buf[0, r, o] = top[r0 + r, o]
        cuda.syncthreads()
        for s in range(NL - 1):
            l = NL - 1 - s
            n_in = SIZES[l]  # width of delta[l-1]
            n_out = SIZES[l + 1]  # width of delta[l]
            act = ACTS[l - 1]
            Wl = W[l]
            Dl = D_out[l - 1]
            out = delta[l - 1]
            src = s % 2
            for k in range(tid, R * n_in, nt):
                i = k // R
                r = k - i * R
                if r < nrows:
                    acc = ZERO
                    for o in range(n_out):
                        acc += buf[src, r, o] * Wl[o, i]
                    d = acc * df(Dl[r0 + r, i], act)
                    out[r0 + r, i] = d
                    if l > 1:
                        buf[1 - src, r, i] = d
            cuda.syncthreads()

    return cuda.jit(backward)


def _layer_sizes(W):
    return (int(W[0].shape[1]),) + tuple(int(w.shape[0]) for w in W)


def _fusable(sizes, *groups):
    """Whether the fused training kernels take this network: every width after the input at
    most FUSED_MAX_WIDTH, the input at most FUSED_MAX_INPUT, and every tuple of arrays in `groups` of one Numba type (they are indexed
    by the layer number inside the kernel, which Numba compiles only for such tuples; e.g. a
    non-contiguous array among contiguous ones falls back to the per-layer loop)."""
    if cuda is None or max(sizes[1:]) > FUSED_MAX_WIDTH or sizes[0] > FUSED_MAX_INPUT:
        return False
    return all(len({numba.typeof(a) for a in g}) == 1 for g in groups)


def _fused_grid(dt, sizes, batch):
    rows = _fused_rows(dt, sizes)
    return (batch + rows - 1) // rows


def mlp_forward(A, D, W, b, acts):
    """Forward through L Dense layers: A[l+1] = f_l(A[l] @ W[l].T + b[l]), and D[l+1] = the
    pre-activation Z for the activations in NEEDS_PREACTIVATION (else D[l+1] is A[l+1]).

    Narrow networks (every width after the input at most FUSED_MAX_WIDTH): ONE launch of
    the fused forward kernel, which writes every A[l+1] (and Z) for the backward pass. Else
    one tiled-GEMM launch per layer (two for a GELU layer: Z, then A = f(Z))."""
    W, b, acts = tuple(W), tuple(b), tuple(int(a) for a in acts)
    sizes = _layer_sizes(W)
    A_out, D_out = tuple(A[1:]), tuple(D[1:])
    if _fusable(sizes, W, b, A_out, D_out):
        batch = A[0].shape[0]
        if batch:
            dt = np.dtype(A_out[-1].dtype).type
            _launch(_fused_forward_kernel(dt, sizes, acts, True), _fused_grid(dt, sizes, batch),
                    THREADS, A[0], W, b, A_out, D_out)
        return
    stack.forward(sys.modules[__name__], A, D, W, b, acts)


def mlp_backward(delta, A, D, W, dW, db, acts):
    """Backward through the L Dense layers from delta[L-1]: dW[l] = delta[l].T @ A[l],
    db[l] = sum(delta[l]) and, for l > 0, delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l]).

    Narrow networks: ONE launch of the fused delta kernel for delta[L-2], ..., delta[0], then
    one ``weight_grad`` per layer (a tiled GEMM over the batch with the db column sums in its
    epilogue, no atomics): L + 1 launches. Else weight_grad and delta_backward per layer
    (2L - 1 launches)."""
    W, acts = tuple(W), tuple(int(a) for a in acts)
    L = len(W)
    sizes = _layer_sizes(W)
    if L > 1 and _fusable(sizes, W, tuple(delta), tuple(D[1:L])):
        batch = delta[0].shape[0]
        if batch:
            dt = np.dtype(delta[0].dtype).type
            _launch(_fused_delta_kernel(dt, sizes, acts), _fused_grid(dt, sizes, batch),
                    THREADS, tuple(delta), W, tuple(D[1:L]))
        for l in range(L):
            weight_grad(delta[l], A[l], dW[l], db[l])
        return
    stack.backward(sys.modules[__name__], delta, A, D, W, dW, db, acts)


def _layer_views(params, sizes):
    """W and b of every layer as views into the flat parameter array `params`."""
    W, b, off = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W.append(_reshape(params[off:off + n_out * n_in], (n_out, n_in)))
        b.append(params[off + n_out * n_in:off + n_out * n_in + n_out])
        off += n_out * n_in + n_out
    return tuple(W), tuple(b)


def mlp_forward_fused(X, params, sizes, acts, out):
    """The forward pass of a Dense network in ONE launch (an extra of this backend, not in
    the contract): out = f_L(... f_1(X @ W_1.T + b_1) ... @ W_L.T + b_L).

    X: (B, sizes[0]) device array; params: the flat device array of the parameters, layer by
    layer W_l (sizes[l+1], sizes[l]) row-major then b_l (sizes[l+1],) -- the model's layout
    of a network of Dense layers; sizes: the L + 1 layer widths; acts: the L activation codes
    (GELU included: this is inference, no pre-activation is kept); out: (B, sizes[-1]).

    For narrow networks only: every width but the input's must be at most
    ``FUSED_MAX_WIDTH`` (256). The fused forward kernel of ``mlp_forward`` without storing
    the hidden layers: they never leave shared memory, so it pays where launches dominate
    (small widths, many layers); for wide layers the tiled ``linear_forward`` is faster. One
    kernel is compiled per (dtype, sizes, acts).
    """
    sizes = tuple(int(s) for s in sizes)
    acts = tuple(int(a) for a in acts)
    if len(sizes) != len(acts) + 1 or len(acts) == 0:
        raise ValueError(f"need len(sizes) == len(acts) + 1 >= 2; got sizes={sizes}, acts={acts}")
    if max(sizes[1:]) > FUSED_MAX_WIDTH:
        raise ValueError(f"mlp_forward_fused takes widths up to {FUSED_MAX_WIDTH} after the "
                         f"input; got {sizes}: use linear_forward per layer")
    n_params = sum(sizes[l] * sizes[l + 1] + sizes[l + 1] for l in range(len(acts)))
    if params.ndim != 1 or params.shape[0] != n_params:
        raise ValueError(f"params must be the flat array of {n_params} parameters of {sizes}; "
                         f"got shape {params.shape}")
    if tuple(X.shape) != (X.shape[0], sizes[0]) or tuple(out.shape) != (X.shape[0], sizes[-1]):
        raise ValueError(f"X must be (B, {sizes[0]}) and out (B, {sizes[-1]}); got "
                         f"{X.shape} and {out.shape}")
    if X.shape[0] == 0:
        return
    W, b = _layer_views(params, sizes)
    dt = np.dtype(out.dtype).type
    outs = (out,) * len(acts)  # only the last layer's output is written
    _launch(_fused_forward_kernel(dt, sizes, acts, False), _fused_grid(dt, sizes, X.shape[0]),
            THREADS, X, W, b, outs, outs)


# ---------------------------------------------------------------------------------------
# elementwise kernels (1-D grid-stride loops over the flattened 2-D index)


@_kernel
def _k_activate(Z, act, A):
    n, m = Z.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        A[i, j] = _f(Z[i, j], act)


@_kernel
def _k_activation_backward(A, act, delta):
    n, m = delta.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        delta[i, j] *= _df(A[i, j], act)


def activate(Z, act, A):
    """A = f(Z), elementwise."""
    _launch(_k_activate, _blocks(Z.size), THREADS, Z, act, A)


def activation_backward(A, act, delta):
    """delta *= f'(A) in place, f' taken from the stored activation A."""
    if act == IDENTITY:
        return
    _launch(_k_activation_backward, _blocks(delta.size), THREADS, A, act, delta)


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


def _col_grid(m):
    return (max(1, (m + COL_X - 1) // COL_X),), (COL_X, COL_Y)


def regression_sums(Z, T, abs_err, sq_err):
    """Accumulate, per output, the sum of |Z - T| into abs_err and of (Z - T)^2 into sq_err
    (device arrays, added to on the device; one launch, a column reduction per block)."""
    grid, block = _col_grid(Z.shape[1])
    _launch(_k_regression_sums, grid, block, Z, _reshape(T, Z.shape), abs_err, sq_err)


# ---------------------------------------------------------------------------------------
# random numbers, dropout, batch normalisation


@_kernel
def _k_fill_uniform(U, seed, is64):
    n, m = U.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        # splitmix64: output number idx + 1 of the generator started at `seed`
        z = seed + _nb_uint64(idx + 1) * _GOLDEN
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
        if is64:
            U[i, j] = _nb_float64(z >> _S11) * _TWO_M53
        else:
            U[i, j] = _nb_float64(z >> _S40) * _TWO_M24


def fill_uniform(U, rng):
    """U = uniform random numbers in [0, 1) (float32: multiples of 2^-24, float64: of
    2^-53), from one 64-bit seed drawn from the numpy Generator `rng` on the host; the
    device fills U with a stateless counter-based hash (splitmix64 of seed and the element's
    row-major index), so the result depends only on that seed."""
    seed = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
    U2 = _reshape(U, (1, U.shape[0])) if U.ndim == 1 else U
    _launch(_k_fill_uniform, _blocks(U.size), THREADS, U2, seed,
            np.dtype(U.dtype) == np.float64)


@_kernel
def _k_dropout_forward(A_in, U, p, scale, A_out):
    n, m = A_in.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        if U[i, j] >= p:
            A_out[i, j] = A_in[i, j] * scale
        else:
            A_out[i, j] = 0


@_kernel
def _k_dropout_backward(delta, U, p, scale, D_prev, act_prev, delta_prev):
    n, m = delta.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        if U[i, j] >= p:
            delta_prev[i, j] = _df(D_prev[i, j], act_prev) * delta[i, j] * scale
        else:
            delta_prev[i, j] = 0


def dropout_forward(A_in, U, p, A_out):
    """A_out = A_in * (U >= p) / (1 - p): inverted dropout, each unit dropped with probability p."""
    _launch(_k_dropout_forward, _blocks(A_in.size), THREADS, A_in, U, float(p),
            1 / (1 - p), A_out)


def dropout_backward(delta, U, p, D_prev, act_prev, delta_prev):
    """delta_prev = f'_prev(D_prev) * delta * (U >= p) / (1 - p)."""
    _launch(_k_dropout_backward, _blocks(delta.size), THREADS, delta, U, float(p),
            1 / (1 - p), D_prev, act_prev, delta_prev)


@_kernel
def _k_batchnorm_forward(X, gamma, beta, running_mean, running_var, momentum, eps, act,
                         Xhat, inv_std, A_out):
    red = cuda.shared.array((COL_Y, COL_X), _nb_float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n, m = X.shape
    j = cuda.blockIdx.x * COL_X + tx
    s = 0.0
    if j < m:
        for i in range(ty, n, COL_Y):
            s += X[i, j]
    red[ty, tx] = s
    cuda.syncthreads()
    _col_tree_sum(red, ty, tx)
    mean = red[0, tx] / n
    cuda.syncthreads()  # everyone has read red[0] before it is reused
    s = 0.0
    if j < m:
        for i in range(ty, n, COL_Y):
            d = X[i, j] - mean
            s += d * d
    red[ty, tx] = s
    cuda.syncthreads()
    _col_tree_sum(red, ty, tx)
    var = red[0, tx] / n
    if j < m:
        r = 1 / math.sqrt(var + eps)
        for i in range(ty, n, COL_Y):
            xh = (X[i, j] - mean) * r
            Xhat[i, j] = xh
            A_out[i, j] = _f(gamma[j] * xh + beta[j], act)
        if ty == 0:
            inv_std[j] = r
            running_mean[j] = (1 - momentum) * running_mean[j] + momentum * mean
            running_var[j] = (1 - momentum) * running_var[j] + momentum * var * n / (n - 1)


def batchnorm_forward(X, gamma, beta, running_mean, running_var, momentum, eps, act, Xhat,
                      inv_std, A_out):
    """Training-mode batch norm (batch statistics, two-pass mean and biased variance per
    feature); keeps Xhat and inv_std for the backward pass and updates the running statistics
    in place as torch.nn.BatchNorm1d (unbiased variance). One launch."""
    grid, block = _col_grid(X.shape[1])
    _launch(_k_batchnorm_forward, grid, block, X, gamma, beta, running_mean, running_var,
            float(momentum), float(eps), act, Xhat, inv_std, A_out)


@_kernel
def _k_batchnorm_inference(X, gamma, beta, running_mean, running_var, eps, act, A_out):
    n, m = X.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        scale = gamma[j] / math.sqrt(running_var[j] + eps)
        shift = beta[j] - running_mean[j] * scale
        A_out[i, j] = _f(X[i, j] * scale + shift, act)


def batchnorm_inference(X, gamma, beta, running_mean, running_var, eps, act, A_out):
    """Inference-mode batch norm with the running statistics: A_out = f(gamma * Xhat + beta)."""
    _launch(_k_batchnorm_inference, _blocks(X.size), THREADS, X, gamma, beta, running_mean,
            running_var, float(eps), act, A_out)


@_kernel
def _k_batchnorm_backward(delta, Xhat, inv_std, gamma, dgamma, dbeta, D_prev, act_prev,
                          delta_prev):
    rg = cuda.shared.array((COL_Y, COL_X), _nb_float64)
    rb = cuda.shared.array((COL_Y, COL_X), _nb_float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n, m = delta.shape
    j = cuda.blockIdx.x * COL_X + tx
    sg = 0.0
    sb = 0.0
    if j < m:
        for i in range(ty, n, COL_Y):
            sg += delta[i, j] * Xhat[i, j]
            sb += delta[i, j]
    rg[ty, tx] = sg
    rb[ty, tx] = sb
    cuda.syncthreads()
    _col_tree_sum(rg, ty, tx)
    _col_tree_sum(rb, ty, tx)
    if j < m:
        sg = rg[0, tx]
        sb = rb[0, tx]
        c = gamma[j] * inv_std[j] / n
        for i in range(ty, n, COL_Y):
            dx = c * (n * delta[i, j] - sb - Xhat[i, j] * sg)
            delta_prev[i, j] = _df(D_prev[i, j], act_prev) * dx
        if ty == 0:
            dgamma[j] = sg
            dbeta[j] = sb


def batchnorm_backward(delta, Xhat, inv_std, gamma, dgamma, dbeta, D_prev, act_prev,
                       delta_prev):
    """dgamma = sum(delta * Xhat), dbeta = sum(delta); delta_prev = f'_prev(D_prev) * dX with
    dX = gamma * inv_std / B * (B * delta - dbeta - Xhat * dgamma). One launch."""
    grid, block = _col_grid(delta.shape[1])
    _launch(_k_batchnorm_backward, grid, block, delta, Xhat, inv_std, gamma, dgamma, dbeta,
            D_prev, act_prev, delta_prev)


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


@_kernel
def _k_fill1(a, value):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


def scale(x, c):
    """x *= c in place (a flat, contiguous device array); no wait."""
    _check_flat(x)
    _launch(_k_scale, _blocks(x.size), THREADS, x, x.dtype.type(c))


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


# ---------------------------------------------------------------------------------------
# data movement


@_kernel
def _k_gather_rows(X, idx, out):
    n, m = out.shape
    for k in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = k // m
        j = k - i * m
        out[i, j] = X[idx[i], j]


def gather_rows(X, idx, out):
    """out[i] = X[idx[i]], cast to out's dtype (e.g. a uint8 data set on the device to a
    float32 batch), on the device; X, idx and out are device arrays."""
    _launch(_k_gather_rows, _blocks(out.size), THREADS, X, idx, out)


# ---------------------------------------------------------------------------------------
# memory: device arrays


def empty(shape, dtype):
    """An uninitialised device array."""
    return _alloc(shape, dtype)


def _zero_fill(a):
    """Set the device array `a` (contiguous) to zero in place, on the device."""
    if a.size:
        _launch(_k_fill1, _blocks(a.size), THREADS, _reshape(a, (a.size,)), 0)


def zeros(shape, dtype):
    """A zero-filled device array (filled on the device, no host transfer)."""
    a = _alloc(shape, dtype)
    _zero_fill(a)
    return a


def to_device(host):
    """A device array holding a copy of `host` (a NumPy array, or a device array)."""
    if _COMPILE_ONLY is not None:
        return np.array(host, copy=True)
    _require()
    if _is_device(host):
        out = cuda.device_array(host.shape, host.dtype)
        out.copy_to_device(host)
        return out
    return cuda.to_device(np.ascontiguousarray(host))


def asarray(host):
    """The host array `host` on the device (one upload; a device array is returned as it is)."""
    if _is_device(host):
        return host
    return to_device(host)


def write(dst, host):
    """Copy the host array `host` into the device array `dst` (same shape; cast to dst's
    dtype as ``dst[...] = host`` would). `host` may also be a device array of dst's dtype."""
    if _is_device(host) and host.dtype == dst.dtype and tuple(host.shape) == tuple(dst.shape):
        dst.copy_to_device(host)
        return
    h = np.asarray(host, dtype=dst.dtype)
    if h.shape != tuple(dst.shape):
        h = np.broadcast_to(h, dst.shape)
    # a real copy: broadcast_to and length-1 axes can leave zero strides, which the device
    # copy would read as a broadcast
    h = np.array(h, order="C", copy=True) if 0 in h.strides else np.ascontiguousarray(h)
    if _COMPILE_ONLY is not None or not _is_device(dst):
        dst[...] = h
        return
    dst.copy_to_device(h)


def to_host(arr):
    """A host NumPy copy of the device array `arr` (waits for the work queued before it)."""
    if _is_device(arr):
        return arr.copy_to_host()
    return np.array(arr, copy=True)


def synchronize():
    """Wait until all queued GPU work is done."""
    if _COMPILE_ONLY is None and cuda is not None:
        cuda.synchronize()
