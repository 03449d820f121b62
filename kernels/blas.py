"""BLAS sgemm/dgemm callable from Numba-compiled code, without SciPy.

Numba's own ``np.dot`` reaches BLAS through SciPy, which is not a dependency. NumPy itself
links a BLAS (OpenBLAS in the wheels from PyPI, exported as ``scipy_cblas_sgemm64_``...;
MKL or another CBLAS in other builds): this module finds that library among the ones the
process has loaded, checks its ``cblas_?gemm`` on a small product, and registers it with
LLVM under a fixed name (``fastmlp_sgemm`` / ``fastmlp_dgemm``). Compiled code refers to
the name, not the address, so it can be cached on disk and linked again in a later process.

``gemm(A, B, C, trans_a, trans_b, beta[, alpha])`` is then usable inside ``@njit``
functions: C = alpha * op(A) @ op(B) + beta * C (alpha 1 when left out) for row-major 2-D
arrays whose rows are contiguous (C-contiguous arrays, or column slices of one, whose
leading dimension is their row stride).

``AVAILABLE`` says whether a BLAS was found (``WHY_NOT`` says why not when it was not);
without one, the CPU backend runs its kernels one by one from Python with NumPy's matmul,
which is slower for small batches but gives the same results. ``FASTMLP_NUMBA_BLAS=0``
switches this module off.
"""

import ctypes
import glob
import os
import sys
import threading

import numpy as np
from numba import types
from numba.extending import overload

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # the CBLAS enum values

#: (symbol name, integer width of its size arguments), in the order they are tried
_SYMBOLS = (("scipy_cblas_{}gemm64_", 64), ("cblas_{}gemm64_", 64), ("cblas_{}gemm", 32))


def _loaded_libraries():
    """Paths of shared libraries that may hold NumPy's BLAS: the ones bundled with NumPy,
    then every library this process has mapped whose name mentions blas or mkl."""
    numpy_dir = os.path.dirname(np.__file__)
    paths = []
    for pattern in ("../numpy.libs/*", ".dylibs/*"):
        paths += sorted(glob.glob(os.path.join(numpy_dir, pattern)))
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    path = line.split()[-1] if "/" in line else ""
                    name = os.path.basename(path).lower()
                    if ("blas" in name or "mkl" in name) and path not in paths:
                        paths.append(path)
        except OSError:
            pass
    return [p for p in paths if "blas" in os.path.basename(p).lower()
            or "mkl" in os.path.basename(p).lower()]


def _ctypes_gemm(fn, bits, ctype):
    """A ctypes prototype for cblas_?gemm with `bits`-wide size arguments."""
    Int = ctypes.c_int64 if bits == 64 else ctypes.c_int32
    P = ctypes.c_void_p
    fn.restype = None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, Int, Int, Int, ctype, P, Int,
                   P, Int, ctype, P, Int]
    return fn


def _works(fn, dtype):
    """Does `fn` compute a small product with transposes right?"""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 3)).astype(dtype)   # used transposed: (3, 5)
    B = rng.standard_normal((4, 5)).astype(dtype)   # used transposed: (5, 4)
    C = np.full((3, 4), 1.0, dtype)
    fn(ROW_MAJOR, TRANS, TRANS, 3, 4, 5, 2.0, A.ctypes.data, 3, B.ctypes.data, 5, 0.5,
       C.ctypes.data, 4)
    return np.allclose(C, 2.0 * A.T @ B.T + 0.5, rtol=1e-5, atol=1e-5)


def _find():
    """(sgemm address, dgemm address, integer bits, library path), or a reason string."""
    if os.environ.get("FASTMLP_NUMBA_BLAS", "").strip().lower() in ("0", "false", "no", "off"):
        return "switched off by FASTMLP_NUMBA_BLAS=0"
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, bits in _SYMBOLS:
            try:
                s = _ctypes_gemm(getattr(lib, pattern.format("s")), bits, ctypes.c_float)
                d = _ctypes_gemm(getattr(lib, pattern.format("d")), bits, ctypes.c_double)
            except AttributeError:
                continue
            if _works(s, np.float32) and _works(d, np.float64):
                address = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
                return address(s), address(d), bits, path
    return "no CBLAS sgemm/dgemm found in the libraries NumPy loaded"


def _register():
    found = _find()
    if isinstance(found, str):
        return None, found
    import llvmlite.binding as llvm

    s_addr, d_addr, bits, path = found
    llvm.add_symbol("fastmlp_sgemm", s_addr)
    llvm.add_symbol("fastmlp_dgemm", d_addr)
    Int = types.int64 if bits == 64 else types.int32
    E, P = types.int32, types.uintp  # enums; pointers as addresses

    def signature(real):
        return types.void(E, E, E, Int, Int, Int, real, P, Int, P, Int, real, P, Int)

    return (types.ExternalFunction("fastmlp_sgemm", signature(types.float32)),
            types.ExternalFunction("fastmlp_dgemm", signature(types.float64)),
            np.int64 if bits == 64 else np.int32, path), None


_FOUND, WHY_NOT = _register()
AVAILABLE = _FOUND is not None
LIBRARY = _FOUND[3] if AVAILABLE else None


#: OpenBLAS's names for its core-type query, as the builds NumPy ships export it
_CORENAME = ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
             "openblas_get_corename64_", "openblas_get_corename")
#: OpenBLAS's AVX2 kernel sets, and the AVX-512 instructions its SkylakeX set needs
_AVX2_CORES = ("haswell", "zen", "sandybridge")
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def openblas_core():
    """The kernel set NumPy's OpenBLAS runs ('Haswell', 'SkylakeX', ...), or None when the
    BLAS is not OpenBLAS (or not found)."""
    if LIBRARY is None:
        return None
    try:
        lib = ctypes.CDLL(LIBRARY)
        fn = next(getattr(lib, name) for name in _CORENAME if hasattr(lib, name))
    except (OSError, StopIteration):
        return None
    fn.restype = ctypes.c_char_p
    name = fn()
    return name.decode(errors="replace") if name else None


def slow_core_advice():
    """A sentence when OpenBLAS runs its AVX2 kernels on a CPU that has AVX-512 because
    OPENBLAS_CORETYPE says so (OpenBLAS's AVX-512 kernels run products up to twice as fast;
    old OpenBLAS builds needed that pin on some processors, a current NumPy does not), else
    None."""
    core, pinned = openblas_core(), os.environ.get("OPENBLAS_CORETYPE")
    if core is None or pinned is None or core.lower() not in _AVX2_CORES:
        return None
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if not all(features.get(f, False) for f in _AVX512):
        return None
    return (f"OpenBLAS runs its {core} (AVX2) kernels because OPENBLAS_CORETYPE={pinned} is "
            "set, on a CPU with AVX-512: without that variable a current NumPy's OpenBLAS "
            "picks its AVX-512 kernels, up to twice the product rate")


def gemm(A, B, C, trans_a, trans_b, beta, alpha=1.0):
    """C = alpha * op(A) @ op(B) + beta * C, from compiled code only (see the module
    docstring)."""
    raise NotImplementedError("blas.gemm is called from @njit code")


if AVAILABLE:
    _sgemm, _dgemm, _blas_int, _ = _FOUND

    @overload(gemm, jit_options={"nogil": True})
    def _gemm_impl(A, B, C, trans_a, trans_b, beta, alpha=1.0):
        kernel = {types.float32: _sgemm, types.float64: _dgemm}.get(C.dtype)
        if kernel is None or A.dtype != C.dtype or B.dtype != C.dtype:
            raise TypeError(f"gemm takes float32 or float64 arrays of one dtype; got "
                            f"{A.dtype}, {B.dtype}, {C.dtype}")
        if not all(x.ndim == 2 for x in (A, B, C)):
            raise TypeError("gemm takes 2-D arrays (transpose with the flags)")
        real = np.float32 if C.dtype == types.float32 else np.float64
        if all(x.layout == "C" for x in (A, B, C)):
            def impl(A, B, C, trans_a, trans_b, beta, alpha=1.0):
                M, N = C.shape
                K = A.shape[0] if trans_a else A.shape[1]
                if M == 0 or N == 0:
                    return
                kernel(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS,
                       _blas_int(M), _blas_int(N), _blas_int(K), real(alpha),
                       A.ctypes.data, _blas_int(max(A.shape[1], 1)),
                       B.ctypes.data, _blas_int(max(B.shape[1], 1)), real(beta),
                       C.ctypes.data, _blas_int(max(C.shape[1], 1)))

            return impl

        def impl_strided(A, B, C, trans_a, trans_b, beta, alpha=1.0):
            # column slices of a wider buffer (a Concatenate's): rows contiguous, the leading
            # dimension from the row stride
            M, N = C.shape
            K = A.shape[0] if trans_a else A.shape[1]
            if M == 0 or N == 0:
                return
            size = C.itemsize
            if ((A.shape[1] > 1 and A.strides[1] != size) or (B.shape[1] > 1 and B.strides[1] != size)
                    or (C.shape[1] > 1 and C.strides[1] != size)):
                raise ValueError("gemm takes arrays whose rows are contiguous")
            kernel(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS,
                   _blas_int(M), _blas_int(N), _blas_int(K), real(alpha),
                   A.ctypes.data, _blas_int(max(A.strides[0] // size, A.shape[1], 1)),
                   B.ctypes.data, _blas_int(max(B.strides[0] // size, B.shape[1], 1)), real(beta),
                   C.ctypes.data, _blas_int(max(C.strides[0] // size, C.shape[1], 1)))

        return impl_strided


#: OpenBLAS's thread-count calls, as the builds NumPy ships export them: (get, set) pairs
_THREADS = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads"))


def _thread_calls():
    """(get, set) ctypes functions of NumPy's OpenBLAS's thread count, or None when the BLAS
    is not an OpenBLAS whose threads can be set. (Its ``openblas_set_num_threads_local``
    is not used: in the pthreads builds NumPy ships it sets the process's count too.)"""
    if LIBRARY is None:
        return None
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError:  # pragma: no cover - it was loaded to find gemm
        return None
    for get_name, set_name in _THREADS:
        if hasattr(lib, get_name) and hasattr(lib, set_name):
            get, set_ = getattr(lib, get_name), getattr(lib, set_name)
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            return get, set_
    return None


_THREAD_CALLS = _thread_calls()


def max_threads():
    """How many threads the BLAS may use (OpenBLAS's count, which OPENBLAS_NUM_THREADS,
    threadpoolctl and joblib's workers set; while a `one_thread` context holds it at 1, the
    count before), or None when that cannot be read."""
    if _THREAD_CALLS is None:
        return None
    with one_thread._lock:
        if one_thread._inside:
            return int(one_thread._previous)
        return int(_THREAD_CALLS[0]())


class one_thread:
    """A context in which the BLAS runs each product on one thread, so that two threads
    can each run their own products side by side. The count is the process's, as
    threadpoolctl sets it; contexts entered by several threads at once share one setting,
    and the last to leave puts the count back. Without a BLAS whose threads can be set,
    nothing changes (``works`` is False)."""

    _lock = threading.Lock()
    _inside = 0        # contexts entered and not left, in all threads
    _previous = None   # the count before the first of them

    def __init__(self):
        self.works = _THREAD_CALLS is not None

    def __enter__(self):
        if self.works:
            get, set_ = _THREAD_CALLS
            with one_thread._lock:
                if one_thread._inside == 0:
                    one_thread._previous = get()
                    set_(1)
                one_thread._inside += 1
        return self

    def __exit__(self, *exc):
        if self.works:
            with one_thread._lock:
                one_thread._inside -= 1
                if one_thread._inside == 0:
                    _THREAD_CALLS[1](one_thread._previous)


def _after_fork_in_child():
    """A child made by fork while another thread was inside `one_thread` starts outside it
    (that thread was not copied): the count it set is put back."""
    one_thread._lock = threading.Lock()
    if one_thread._inside:
        one_thread._inside = 0
        _THREAD_CALLS[1](one_thread._previous)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
