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

import numpy as np

from fastmlp.kernels import blas, codes, cpu, stack
from fastmlp.kernels import reference as ref
from helpers import (BACKENDS, EVERY_ACT, EVERY_BATCH, EVERY_DTYPE, EVERY_STACK, FEATURE_PAIRS,
                     SIMULATED, activation_of, assert_close, check_stack,
                     check_stack_on_row_views, dot_scale, randn, rng_for)

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


@pytest.mark.parametrize("into", ["no delta_prev", "write", "accumulate"])
@pytest.mark.parametrize("act", [codes.ACTIVATIONS["relu"], codes.ACTIVATIONS["tanh"]],
                         ids=["relu", "tanh"])
@EVERY_BATCH
@EVERY_DTYPE
def test_dense_backward_sgd(backend, dtype, batch, act, into):
    """stack.dense_backward_sgd (a graph Model's Dense backward with plain SGD's update
    folded in) on this backend's kernels against the formulas in float64: delta_prev from
    the old W (written, added to, or none for a layer on an Input), W -= lr delta.T @ A_in,
    b -= lr sum(delta); odd shapes and 1."""
    k, lr = backend.k, 0.05
    rng = rng_for("dense_backward_sgd", np.dtype(dtype).itemsize, batch, act, into)
    for fin, fout in FEATURE_PAIRS:
        delta = randn(rng, (batch, fout), dtype)
        A_in = randn(rng, (batch, fin), dtype)
        W, b = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
        D_prev = activation_of(randn(rng, (batch, fin), dtype, scale=2.0), act)
        before = randn(rng, (batch, fin), dtype)
        d, Wd, bd, Dd, pd = (backend.device(x) for x in (delta, W, b, D_prev, before))
        stack.dense_backward_sgd(k, d, backend.device(A_in), Wd, bd, lr,
                                 None if into == "no delta_prev" else Dd, act,
                                 None if into == "no delta_prev" else pd, into == "accumulate")
        what = f"B={batch} in={fin} out={fout} {into}"
        step_scale = lr * dot_scale(delta.T, A_in) + float(np.abs(W).max())
        assert_close(backend.host(Wd), W - lr * (delta.T.astype(np.float64) @ A_in), dtype,
                     scale=step_scale, what="W " + what)
        assert_close(backend.host(bd), b - lr * delta.astype(np.float64).sum(axis=0), dtype,
                     scale=lr * float(np.abs(delta).sum(axis=0).max()) + float(np.abs(b).max()),
                     what="b " + what)
        if into != "no delta_prev":
            G = delta.astype(np.float64) @ W
            if into == "accumulate":
                G += before
            expected = G.astype(dtype)
            ref.activation_backward(D_prev, act, expected)
            assert_close(backend.host(pd), expected, dtype,
                         scale=dot_scale(delta, W) + (float(np.abs(before).max())
                                                      if into == "accumulate" else 0.0),
                         what="delta_prev " + what)
