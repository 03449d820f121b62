"""Shared test configuration.

device="auto" is pinned to the CPU in every test (see ``_auto_means_cpu``) unless the test
is marked ``auto_device`` or FASTMLP_TEST_DEVICE=auto is set.

With FASTMLP_RELIABILITY_TABLE=PATH set, every ``pytest.raises`` block that catches an
error records the test, the error type and its message, and the session writes them to PATH
as JSON: ``tools/reliability_table.py`` turns that into the README's Reliability table.

In a process with NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda_simulator.py starts one for
tests/conformance and tests/cuda_sim) the CUDA backend runs under numba-cuda's simulator.
The simulator runs one Python thread per CUDA thread and its block scheduler polls the
threads while holding the GIL, so a short GIL switch interval makes it several times
faster; this process runs nothing else.

The simulator allocates a block's shared array when the first thread reaches the
``cuda.shared.array`` line, by a check-then-insert on a dict that is not locked: when the
interpreter switches threads in between, two threads of one block get different "shared"
arrays and a block reduction silently loses terms (rare with the default switch interval,
frequent with a short one). ``_locked_shared_array`` below is the same function with a lock.
"""

import json
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # test modules import helpers.py from here
from helpers import SIMULATED  # noqa: E402

#: the one-line "compiling the kernels" notice stays out of the outputs the tests compare
#: (a cold cache prints it in any process that compiles); test_compile_notice.py turns it on
os.environ.setdefault("FASTMLP_COMPILE_NOTICE", "0")

#: the suite runs on the CPU: "auto" means "cpu" in every test, so that a GPU machine runs
#: the same tests as CI (a test that means the real "auto" is marked ``auto_device``).
#: FASTMLP_TEST_DEVICE=auto lets "auto" pick a GPU where there is one.
_PIN_CPU = os.environ.get("FASTMLP_TEST_DEVICE", "cpu").strip().lower() == "cpu"
_TABLE = os.environ.get("FASTMLP_RELIABILITY_TABLE")


#: the test files that run longest (subprocesses: the CUDA simulator, cold-cache compiles,
#: mpiexec, the command line, the benchmark smoke run): collected first, so that with the
#: files spread over the cores (below) none of them starts last and runs on alone
_LONGEST_FIRST = ("test_cuda_simulator.py", "test_cache.py", "test_distributed.py",
                  "test_cli.py", "test_bench_smoke.py", "test_sklearn.py",
                  "test_bench_gpu_smoke.py")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Spreads the test files over the cores with pytest-xdist (in the ``test`` extra), one
    file to a worker at a time, when the run names no ``-n`` and no single test: on the
    2-core CI machine this halves the suite's wall time, most of which is single-threaded
    (Numba compiles, subprocesses). ``-n 0`` runs everything in this process. Runs the same
    tests either way; the reliability table (FASTMLP_RELIABILITY_TABLE) is gathered in one
    process."""
    if not config.pluginmanager.hasplugin("xdist") or config.option.numprocesses is not None:
        return
    if hasattr(config, "workerinput") or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker, or a pytest a worker started: never workers of workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2 or _TABLE or config.getoption("usepdb", False) or \
            config.option.collectonly or any("::" in str(arg) for arg in config.args):
        return
    config.option.numprocesses = min(cores, 4)
    if config.option.dist == "no":
        config.option.dist = "loadfile"
        config.option.loadscopereorder = False  # keep _LONGEST_FIRST's order


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as found


def pytest_configure(config):
    config.addinivalue_line("markers", "auto_device: device='auto' is not pinned to the CPU")
    if SIMULATED:
        # splitmix64 wraps around 2**64 by design; under the simulator that is NumPy
        # uint64 scalar arithmetic, which warns about it
        config.addinivalue_line("filterwarnings",
                                "ignore:overflow encountered in scalar:RuntimeWarning")


if SIMULATED:
    import numpy as np
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    _original_shared_array = kernelapi.FakeCUDAShared.array
    _shared_lock = threading.Lock()

    def _locked_shared_array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return _original_shared_array(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)  # the kernel line that asks, as the simulator keys it
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with _shared_lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = _locked_shared_array
    sys.setswitchinterval(5e-5)


@pytest.fixture(autouse=True)
def _auto_means_cpu(request, monkeypatch):
    if _PIN_CPU and request.node.get_closest_marker("auto_device") is None:
        import fastmlp.kernels as kernels

        real = kernels.backend

        def backend(device="auto"):
            if isinstance(device, str) and device.strip().lower() == "auto":
                return real("cpu")
            return real(device)

        monkeypatch.setattr(kernels, "backend", backend)
    yield

_RECORDS = []


class _Recording:
    def __init__(self, context, nodeid):
        self.context = context
        self.nodeid = nodeid

    def __enter__(self):
        self.info = self.context.__enter__()
        return self.info

    def __exit__(self, *exc):
        suppressed = self.context.__exit__(*exc)
        if suppressed and self.info.value is not None:
            _RECORDS.append({"test": self.nodeid, "error": type(self.info.value).__name__,
                             "message": str(self.info.value)})
        return suppressed


if _TABLE:
    @pytest.fixture(autouse=True)
    def _record_raised_errors(request, monkeypatch):
        real = pytest.raises

        def raises(*args, **kwargs):
            context = real(*args, **kwargs)
            if len(args) > 1:  # pytest.raises(Error, function, ...) form: already ran
                return context
            return _Recording(context, request.node.nodeid)

        monkeypatch.setattr(pytest, "raises", raises)
        yield

    def pytest_sessionfinish(session, exitstatus):
        with open(_TABLE, "w") as f:
            json.dump(_RECORDS, f, indent=1)
