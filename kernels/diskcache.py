"""Numba's on-disk cache of the kernels: the switch, and what makes it safe.

``CACHE`` is what every ``njit(cache=CACHE)`` of this package passes: on unless
FASTMLP_NO_CACHE=1 was set before fastmlp was imported, or no folder for the cache is
writable. Importing this module also puts two safeguards in front of Numba's cache for the
files of this package (and only those): a cached kernel goes stale when any kernel source
changes, and several processes may read and write the cache at once.
"""

import contextlib
import hashlib
import itertools
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
            path = self._inner.get_cache_path()
            _CACHE_PATHS.add(path)
            return path

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


#: cache folders of this package's kernels (filled by KernelSourcesLocator)
_CACHE_PATHS = set()


@contextlib.contextmanager
def _cache_lock(path, exclusive):
    """An advisory lock (fcntl.flock) on `path` + '.lock'; nothing where there is none to
    be had (no fcntl, or a read-only folder: then nobody writes there)."""
    try:
        import fcntl

        f = open(path + ".lock", "a")
    except (ImportError, OSError):
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _serialise_kernel_cache_files():
    """Make Numba's cache files of this package safe for several processes at once.

    Numba saves an entry as: read the index, pick the first data-file number the index does
    not use, write the index, then write the data file; and a stale index (another source
    version) counts as empty. Two processes adding different signatures at once can both
    pick number 1, and a process that reads between another's index and data writes loads
    the data of some other entry: compiled code for the wrong types or the wrong version,
    silently. Here, for this package's cache folders only, saving holds an exclusive lock,
    removes the data files of a stale index first, writes the data before the index that
    points to it; loading holds a shared lock."""
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:  # pragma: no cover - another Numba layout
        return
    if getattr(IndexDataCacheFile.save, "fastmlp_serialised", False):
        return
    numba_save, numba_load = IndexDataCacheFile.save, IndexDataCacheFile.load

    def save(self, key, data):
        if self._cache_path not in _CACHE_PATHS:
            return numba_save(self, key, data)
        with _cache_lock(self._index_path, exclusive=True):
            overloads = self._load_index()
            if not overloads:  # new or stale: no data file of it is trusted
                prefix = self._index_name[: -len(".nbi")] + "."
                for name in os.listdir(self._cache_path):
                    if name.startswith(prefix) and name.endswith(".nbc"):
                        with contextlib.suppress(OSError):
                            os.remove(os.path.join(self._cache_path, name))
            name = overloads.get(key)
            if name is None:
                used = set(overloads.values())
                name = next(self._data_name(i) for i in itertools.count(1)
                            if self._data_name(i) not in used)
            self._save_data(name, data)
            overloads[key] = name
            self._save_index(overloads)

    def load(self, key):
        if self._cache_path not in _CACHE_PATHS:
            return numba_load(self, key)
        with _cache_lock(self._index_path, exclusive=False):
            return numba_load(self, key)

    save.fastmlp_serialised = True
    IndexDataCacheFile.save, IndexDataCacheFile.load = save, load


_stamp_kernel_caches()
_serialise_kernel_cache_files()


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


