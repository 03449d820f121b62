"""Integer codes (and the disk-cache switch) shared by every backend.

Kernels take the activation as a small integer so that one generic kernel serves all six
activations (Numba specialises the branch away per call site's constant); the Python layer
maps names to codes with :func:`activation_code`.
"""

import hashlib
import os



def _kernel_sources_digest():
    """SHA-256 of every .py file of the kernels package (sub-packages too)."""
    digest = hashlib.sha256()
    root = os.path.dirname(os.path.abspath(__file__))
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def _stamp_kernel_caches():
    """Make the disk cache of a kernel stale whenever ANY kernel source changes.

    Numba stamps a cached function with its own source file only, but a kernel here calls
    functions of other files (cpu.py's loops inline scalar.py's activations and vecmath's
    math): after an upgrade or a branch switch that changes only scalar.py, the loops
    cached for cpu.py would be loaded with the old formulas, silently wrong. This puts a
    locator in front of Numba's own for the files of this package, whose stamp is the file's
    own stamp together with the digest of all kernel sources."""
    try:
        from numba.core import caching

        locators = caching.CacheImpl._locator_classes
        base = caching._CacheLocator
    except (ImportError, AttributeError):  # pragma: no cover - another Numba layout
        return
    if any(getattr(cls, "fastmlp_kernels", False) for cls in locators):
        return
    root = os.path.dirname(os.path.abspath(__file__)) + os.sep
    stamp = _kernel_sources_digest()

    class KernelSourcesLocator(base):
        fastmlp_kernels = True

        def __init__(self, inner):
            self._inner = inner

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        def get_source_stamp(self):
            return (self._inner.get_source_stamp(), stamp)

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(root):
                return None
            for other in list(locators):
                if other is not cls:
                    inner = other.from_function(py_func, py_file)
                    if inner is not None:
                        return cls(inner)
            return None

    locators.insert(0, KernelSourcesLocator)


_stamp_kernel_caches()


def _cache_writable():
    """Whether Numba can keep a disk cache for the kernels in this folder: somewhere among
    NUMBA_CACHE_DIR, the package folder and the user's cache folder is writable. Where
    none is (a read-only install run by a user without a writable home, as in many
    containers), ``cache=True`` would make Numba raise at import; the kernels are then
    compiled in memory only."""
    try:
        from numba.core.caching import FunctionCache
    except ImportError:  # pragma: no cover - another Numba layout: let Numba decide
        return True
    try:
        FunctionCache(_cache_writable)
    except RuntimeError:
        return False
    return True


#: Numba's on-disk cache of compiled kernels (``cache=True``): on unless FASTMLP_NO_CACHE=1
#: was set before fastmlp was imported, or no folder for it is writable
CACHE = (os.environ.get("FASTMLP_NO_CACHE", "").strip().lower() in ("", "0", "false", "no")
         and _cache_writable())

IDENTITY, RELU, LEAKY_RELU, ELU, SIGMOID, TANH, GELU, SOFTPLUS = range(8)

ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "gelu": GELU,
    "softplus": SOFTPLUS,
}

#: activations whose derivative cannot be recovered from their output: for these the
#: derivative kernels take the pre-activation Z instead of the activation A (GELU is not
#: monotonic, so A does not determine Z). Every other f' is computed from A = f(Z).
NEEDS_PREACTIVATION = frozenset({GELU})

#: negative slope of leaky_relu, as torch.nn.LeakyReLU's default
LEAKY_SLOPE = 0.01
#: alpha of elu, as torch.nn.ELU's default
ELU_ALPHA = 1.0


def activation_code(name, argument="activation"):
    """Map an activation name to its kernel code, or raise a ValueError naming `argument`."""
    if not isinstance(name, str):
        raise TypeError(
            f"{argument} must be a string, one of {sorted(ACTIVATIONS)}; got {name!r} "
            f"of type {type(name).__name__}"
        )
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"{argument} must be one of {sorted(ACTIVATIONS)}; got {name!r}"
        ) from None
