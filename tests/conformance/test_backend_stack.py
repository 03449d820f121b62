"""A stack of Dense layers in one kernel call each way (mlp_forward / mlp_backward) on every
backend against the NumPy reference: every activation at every depth, sizes of 1 and odd
sizes, and the row views of larger buffers that a model passes.

As everywhere in this suite: private copies of the same inputs for the reference and the
backend, outputs NaN-filled first (an element a kernel forgets stays NaN), inputs checked
unchanged (helpers.run_stack, helpers.compare_stacks). Which path a backend takes (the CPU's
compiled layer loop calling BLAS, CUDA's fused kernels or its per-layer loop) is its own
business; the CPU's Python fallback and its BLAS are in test_cpu_paths.py, CUDA's paths
in tests/cuda_sim/test_cuda_mlp_fused.py.
"""

import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import reference as ref
from helpers import (EVERY_ACT, EVERY_DTYPE, SIMULATED, STACKS, compare_stacks, make_stack,
                     rng_for, run_stack, stack_acts)


def on(backend):
    """run_stack's keyword arguments that put the arrays on `backend`."""
    return dict(device=backend.device, host=backend.host)


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: f"{s[0]}x{'-'.join(map(str, s[1]))}")
@EVERY_ACT
@EVERY_DTYPE
def test_mlp_forward_backward(backend, dtype, act, stack):
    batch, sizes = stack
    acts = stack_acts(act, len(sizes) - 1)
    inputs = make_stack(rng_for("mlp", dtype, act, stack), dtype, batch, sizes, acts)
    compare_stacks(run_stack(backend, inputs, acts, **on(backend)), run_stack(ref, inputs, acts),
                   acts, dtype)


@EVERY_DTYPE
def test_mlp_on_row_views_of_larger_buffers(backend, dtype):
    """The model passes the first n rows of buffers made for a larger batch."""
    sizes, acts = (17, 9, 4), (codes.GELU, codes.IDENTITY)
    full = make_stack(rng_for("views", dtype), dtype, 40, sizes, acts)
    rows = 5 if SIMULATED else 13
    compare_stacks(run_stack(backend, full, acts, rows, **on(backend)),
                   run_stack(ref, full, acts, rows), acts, dtype)
