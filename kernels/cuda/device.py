"""Availability, tile and block sizes, the launch helper, the small device functions every
other module of the CUDA backend shares (block and column reductions, the activations) and
the kernels made from the formula of one item (element-wise maps, counts)."""

import functools
import importlib.util
import math
import os
import threading

import numpy as np

from .. import scalar
from ..codes import SIGMOID

_IMPORT_ERROR = None
cuda = None
numba = None
SIM = False
if importlib.util.find_spec("numba_cuda") is None:
    _IMPORT_ERROR = ("the numba-cuda package is not installed "
                     "(pip install numba-cuda, or fastmlp's 'cuda' extra)")
else:
    try:
        import numba
        from numba import cuda

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

#: at most this many blocks do the row reductions (one partial sum each)
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
        from numba.cuda.cudadrv import runtime as _runtime

        versions = drv.get_version(), _runtime.get_version()
    except Exception:  # no NVRTC to ask: numba-cuda reports that itself when it compiles
        versions = None
    if versions is not None:
        mismatch = _toolkit_mismatch(*versions)
        if mismatch is not None:
            return mismatch
    try:
        if len(cuda.gpus) == 0:
            return "no CUDA device was found"
    except Exception as exc:
        return f"no CUDA device was found: {exc}"
    return None


def _toolkit_mismatch(driver_version, toolkit_version):
    """None when code compiled by numba-cuda's CUDA toolkit libraries (NVVM, NVRTC) of
    `toolkit_version` loads on a driver supporting CUDA `driver_version` (both (major,
    minor)); else why not, naming the extra that installs matching libraries.

    A driver runs PTX of its own CUDA major version or older; PTX of a newer major version
    (CUDA 13's NVVM with a CUDA 12 driver) fails to load at the first launch. Within one
    major version numba-cuda links for the driver itself (minor version compatibility)."""
    (d_major, d_minor), (t_major, t_minor) = driver_version, toolkit_version
    if t_major <= d_major:
        return None
    extra = f"cuda{d_major}" if d_major in (12, 13) else None
    fix = (f"install the CUDA {d_major} libraries: pip install 'fastmlp[{extra}]' (that is "
           f"numba-cuda[cu{d_major}]) in place of the CUDA {t_major} ones, or "
           if extra else "")
    return (f"numba-cuda compiles with the CUDA {t_major}.{t_minor} toolkit (NVVM) but the "
            f"NVIDIA driver supports CUDA {d_major}.{d_minor} only, so no kernel would load: "
            f"{fix}update the NVIDIA driver to one for CUDA {t_major}")


def is_available():
    """True when the kernels of this module can run: a CUDA GPU with a driver and
    numba-cuda, or numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return why_unavailable() is None


def _require():
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(f"the CUDA backend is not available: {reason}")


# ---------------------------------------------------------------------------------------
# launching


def _kernel(fn):
    return cuda.jit(fn) if cuda is not None else fn


def _device(fn):
    return cuda.jit(device=True)(fn) if cuda is not None else fn


def _inlined(fn):
    """A device function that NVVM always inlines into its callers, so that local arrays it
    is handed stay in registers (the simulator has no such option and needs none)."""
    if cuda is None:
        return fn
    return cuda.jit(device=True)(fn) if SIM else cuda.jit(device=True, forceinline=True)(fn)


def _launch(kernel, grid, block, *args):
    """Launch `kernel` over `grid` blocks of `block` threads on the default stream (no
    wait)."""
    _run(kernel, grid, block, args)


def _run(kernel, grid, block, args):
    """The launch itself; tests replace it to record the launches, or to compile each
    kernel to PTX for its arguments' types without a GPU."""
    _configured(kernel, grid, block)(*args)


_CONFIGURED = {}


def _configured(kernel, grid, block):
    """``kernel[grid, block]``, configured once per (kernel, grid, block) and kept (host
    time per launch is what a small network's step is made of).

    fastmlp sizes every grid to its work (a loss over 128 rows is one block), so numba-cuda's
    low-occupancy warning (grids under 128 blocks) is not raised for these launches: the
    configuration is made for a large grid and then given its real one. Nothing global is
    touched, so the user's own launches still warn."""
    if SIM:  # the simulator's kernel keeps one configuration: set it at every launch
        return kernel[grid, block]
    key = (kernel, grid, block)
    launch = _CONFIGURED.get(key)
    if launch is None:
        if cuda is None:
            _require()
        else:
            from numba.cuda.dispatcher import _LaunchConfiguration
            from numba.cuda.errors import normalize_kernel_dimensions

            griddim, blockdim = normalize_kernel_dimensions(grid, block)
            launch = _LaunchConfiguration(kernel, (1 << 16, 1, 1), blockdim, 0, 0)
            launch.griddim = griddim
        if len(_CONFIGURED) > 4096:  # many batch sizes: start over rather than grow
            _CONFIGURED.clear()
        _CONFIGURED[key] = launch
    return launch


def _blocks(n, threads=None, cap=None):
    threads = THREADS if threads is None else threads
    cap = MAX_BLOCKS if cap is None else cap
    return max(1, min(cap, (n + threads - 1) // threads))


def _is_device(a):
    return hasattr(a, "copy_to_host")


def _alloc(shape, dtype):
    _require()
    return cuda.device_array(shape, dtype)


# ---------------------------------------------------------------------------------------
# scratch arrays: private to a thread and a CUDA context (two threads training two models
# never share one), dropped when the context changes (after cuda.close(), a new one)

_local = threading.local()


def _context():
    return None if SIM else cuda.current_context()


def _store():
    """This thread's scratch arrays in the current CUDA context (a new, empty store after
    the context changed)."""
    ctx = _context()
    if getattr(_local, "ctx", _local) is not ctx:
        _local.store = {}
        _local.ctx = ctx
    return _local.store


def _scratch(dtype, size, purpose):
    """A private (size,) device array of `dtype` (a NumPy scalar type) for `purpose`, made
    once per thread and CUDA context."""
    store = _store()
    key = (dtype, size, purpose)
    a = store.get(key)
    if a is None:
        a = store[key] = _alloc((size,), dtype)
    return a


def _dummies(dtype):
    """Tiny (1,) and (1, 1) device arrays of `dtype` standing in for absent optional
    arguments (never written), made once per thread and context like the scratch arrays."""
    store = _store()
    key = (dtype, "dummies")
    d = store.get(key)
    if d is None:
        d = store[key] = (_alloc((1,), dtype), _alloc((1, 1), dtype))
    return d


def _dummy(dtype, ndim):
    """The (1,) (ndim 1) or (1, 1) (ndim 2) stand-in of _dummies."""
    return _dummies(dtype)[ndim - 1]


def _reshape(a, shape):
    return a if tuple(a.shape) == tuple(shape) else a.reshape(*shape)


# ---------------------------------------------------------------------------------------
# the activations and the element-wise losses (kernels/scalar.py), and block reductions


@functools.lru_cache(maxsize=None)
def activations(dt):
    """f and f' as device functions whose constants are of the dtype `dt`, so that float32
    data is computed in float32: ``.f(z, act)``, ``.df(a, act)``, ``.f_of[act]``,
    ``.df_of[act]`` (see scalar.compile_with)."""
    return scalar.compile_with(_device, math, dtype=dt)


@functools.lru_cache(maxsize=None)
def loss_terms(dt):
    """The element-wise losses of scalar.LOSSES as device functions of the dtype `dt`, but
    those of scalar.PRECISE_LOSSES (Poisson) in float64, as on the CPU: {name: loss(z, t,
    w)}."""
    return scalar.compile_losses(_device, activations(dt).f_of[SIGMOID], np.float64, math,
                                 dtype=dt)


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
def _col_thread(X):
    """This thread's place in a column reduction over the rows of X (a launch of
    _col_grid): ``n, m, j, ty, tx``: X's shape, the column j it sums, the first of the rows
    ty, ty + COL_Y, ... it takes, and its lane tx (j = blockIdx.x * COL_X + tx)."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n, m = X.shape
    return n, m, cuda.blockIdx.x * COL_X + tx, ty, tx


@_device
def _col_sum(red, s, ty, tx):
    """The sum of the values s of the COL_Y threads (ty) of column tx, returned to each of
    them: written to red (a (COL_Y, COL_X) shared array), summed in a fixed tree order,
    read back; red is free for the next sum on return."""
    red[ty, tx] = s
    cuda.syncthreads()
    h = COL_Y // 2
    while h > 0:
        if ty < h:
            red[ty, tx] += red[ty + h, tx]
        cuda.syncthreads()
        h //= 2
    total = red[0, tx]
    cuda.syncthreads()  # everyone has read red[0, tx] before red is written again
    return total


@_device
def _block_sum_to(red, t, partials):
    """The ending of a block reduction: every thread of the block (THREADS of them) has
    written its value to red[t]; they are summed in a fixed tree order and the block's sum
    is written to partials[blockIdx.x]."""
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        partials[cuda.blockIdx.x] = red[0]


@_kernel
def _k_add_partials(partials, n, out, add):
    """out[0] (+)= partials[0] + ... + partials[n-1], in that order (one thread)."""
    if cuda.grid(1) == 0:
        s = out[0] if add else 0
        for i in range(n):
            s += partials[i]
        out[0] = s


def _sum_partials(kernel, grid, args, dtype, total, add=True):
    """Launch the reducing `kernel` on `grid` blocks of THREADS with `args` and its per-block
    partials (of `dtype`), then add the partials in block order into ``total[0]`` (or store
    their sum there, add=False) and return None, nothing waiting; with ``total=None``, into
    a scratch scalar that is read back and returned."""
    partials = _scratch(dtype, MAX_REDUCE_BLOCKS, "partials")
    _launch(kernel, grid, THREADS, *args, partials)
    if total is not None:
        _launch(_k_add_partials, 1, 1, partials, grid, total, bool(add))
        return None
    out = _scratch(np.float64 if np.dtype(dtype).kind == "f" else np.int64, 1, "result")
    _launch(_k_add_partials, 1, 1, partials, grid, out, False)
    return out.copy_to_host()[0]


# ---------------------------------------------------------------------------------------
# kernels made from the formula of one item: element-wise maps and counts


@functools.lru_cache(maxsize=None)
def elementwise(element, name):
    """The kernel `name` ``(X, Y, out)``: out[i, j] = element(X, Y, i, j) for every (i, j)
    of the 2-D out, one grid-stride loop over the flattened index (`element` a Python
    function, compiled here as a device function)."""
    element = _device(element)

    def run(X, Y, out):
        n, m = out.shape
        for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
            i = idx // m
            j = idx - i * m
            out[i, j] = element(X, Y, i, j)

    return cuda.jit(scalar.unique_name(run, name))


@functools.lru_cache(maxsize=None)
def count_kernel(is_right, name):
    """The kernel `name` ``(Z, Y, n, partials)`` for _sum_partials: each block's count of
    the items k < n (rows, or elements) for which ``is_right(Z, Y, k)`` holds (a Python
    function, compiled here as a device function), summed in the block and written to
    partials[blockIdx.x]."""
    is_right = _device(is_right)

    def count(Z, Y, n, partials):
        red = cuda.shared.array(THREADS, np.int64)
        t = cuda.threadIdx.x
        c = 0
        for k in range(cuda.grid(1), n, cuda.gridsize(1)):
            if is_right(Z, Y, k):
                c += 1
        red[t] = c
        _block_sum_to(red, t, partials)

    return cuda.jit(scalar.unique_name(count, name))


_sm_count = []


def _multiprocessors():
    """How many blocks run at once, roughly: the device's multiprocessor count (4 under the
    simulator, so that its tests meet both tile configurations)."""
    if not _sm_count:
        if _SMALL:
            _sm_count.append(4)
        else:
            try:
                _sm_count.append(int(cuda.get_current_device().MULTIPROCESSOR_COUNT))
            except Exception:
                _sm_count.append(80)
    return _sm_count[0]


def _col_grid(m):
    return (max(1, (m + COL_X - 1) // COL_X),), (COL_X, COL_Y)
