"""The CUDA kernels under numba-cuda's simulator: collected only in a process that has
NUMBA_ENABLE_CUDASIM=1 set before numba was imported (tests/test_cuda_simulator.py starts
such a process from the normal test run); elsewhere this folder is skipped whole.

The simulator runs one Python thread per CUDA thread and its block scheduler polls the
threads while holding the GIL, so a short GIL switch interval makes it several times
faster; this process runs nothing else.

The simulator allocates a block's shared array when the first thread reaches the
``cuda.shared.array`` line, by a check-then-insert on a dict that is not locked: when the
interpreter switches threads in between, two threads of one block get different "shared"
arrays and a block reduction silently loses terms (rare with the default switch interval,
frequent with a short one). ``_locked_shared_array`` below is the same function with a lock.
"""

import importlib.util
import os
import sys
import threading

_SIMULATED = (os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() == "1"
              and importlib.util.find_spec("numba_cuda") is not None)

if not _SIMULATED:
    collect_ignore_glob = ["test_*.py"]
else:
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

    def pytest_configure(config):
        # splitmix64 wraps around 2**64 by design; under the simulator that is NumPy
        # uint64 scalar arithmetic, which warns about it
        config.addinivalue_line("filterwarnings",
                                "ignore:overflow encountered in scalar:RuntimeWarning")
