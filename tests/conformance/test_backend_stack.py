"""A stack of Dense layers in one kernel call each way (mlp_forward / mlp_backward) on every
backend against the NumPy reference: every activation at every depth, sizes of 1 and odd
sizes, and the row views of larger buffers that a model passes.

As everywhere in this suite: private copies of the same inputs for the reference and the
backend, outputs NaN-filled first (an element a kernel forgets stays NaN), inputs checked
unchanged (helpers.run_stack, helpers.compare_stacks). The CPU backend is run on both of its
paths: the compiled layer loop calling BLAS, and the Python loop over the single-layer
kernels it falls back to when no BLAS is reachable from Numba. CUDA's paths (fused kernels,
per-layer loop) are told apart in tests/cuda_sim/test_cuda_mlp_fused.py; its BLAS and
more of the CPU's own paths are in test_cpu_paths.py.
"""

import pytest

from fastmlp.kernels import blas, cpu
from helpers import (BACKENDS, EVERY_ACT, EVERY_DTYPE, EVERY_STACK, SIMULATED, check_stack,
                     check_stack_on_row_views)

#: (backend, path): the CPU's two paths, one for every other backend
EVERY_PATH = pytest.mark.parametrize(
    "backend, path", [pytest.param(name, path, id=f"{name}-{path}" if path else name)
                      for name in BACKENDS
                      for path in (("blas", "python") if name == "cpu" else ("",))],
    indirect=["backend"])


@pytest.fixture
def take(path, monkeypatch):
    """Puts the CPU backend on `path` for the test (nothing for the other backends)."""
    if path == "blas" and not blas.AVAILABLE:
        pytest.skip(f"no BLAS reachable from Numba here: {blas.WHY_NOT}")
    if path == "python":
        monkeypatch.setattr(cpu.blas, "AVAILABLE", False)


@EVERY_STACK
@EVERY_ACT
@EVERY_DTYPE
@EVERY_PATH
def test_mlp_forward_backward(backend, path, take, dtype, act, stack):
    check_stack(backend, dtype, act, stack)


@EVERY_DTYPE
@EVERY_PATH
def test_mlp_on_row_views_of_larger_buffers(backend, path, take, dtype):
    """The model passes the first n rows of buffers made for a larger batch."""
    check_stack_on_row_views(backend, dtype, rows=5 if SIMULATED else 13)
