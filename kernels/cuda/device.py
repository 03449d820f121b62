"""Availability, tile and block sizes, the launch helper and the small device functions
every other module of the CUDA backend shares (block reductions, the activations)."""

import functools
import importlib.util
import os

import numpy as np

from .. import scalar

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
    _run(kernel, grid, block, args)


def _run(kernel, grid, block, args):
    """The launch itself (tests replace this to record or skip the launches)."""
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


def _col_grid(m):
    return (max(1, (m + COL_X - 1) // COL_X),), (COL_X, COL_Y)
