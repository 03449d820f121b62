"""A stack of Dense layers in one call each way on the CUDA backend (cuda.mlp_forward /
cuda.mlp_backward), under the CUDA simulator: which path it takes, and the numbers of the
layouts and launch configurations only CUDA has, against the NumPy reference.

Narrow networks (every width after the input at most FUSED_MAX_WIDTH, 32 under the
simulator, and the input at most FUSED_MAX_INPUT, 64) take the fused kernels: the whole
forward pass in one launch, the whole delta chain in one launch followed by one
weight-gradient GEMM per layer. Wider ones take the per-layer loop of tiled GEMMs. The
paths are told apart by their launches; the numbers of every stack of helpers.STACKS with
every activation are compared with the reference in tests/conformance/test_backend_stack.py.

Here W and b are views of one flat device array (the model's layout), outputs NaN-filled on
the device first so that an element a kernel forgets fails, inputs checked unchanged.
Tolerance rtol 1e-5 (float32) / 1e-12 (float64) relative to the scale of each output's terms.

Under the simulator the fused kernels take at most 4 rows per block, 2 rows and 2 units per
thread, 8 threads per block, and the simulator reports 4 multiprocessors: a batch of 16 or
more runs 4 rows per block (2 row groups), 8 to 15 rows 2 per block, fewer 1 per block. The
batches below meet all three, the real GPU's configuration (16 rows, 4 per thread, 256
threads; 8 rows in float64) is run in test_the_real_launch_configuration.
"""

import contextlib
import unittest.mock as mock

import numpy as np
import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, ACT_IDS, DTYPE_IDS, DTYPES, FUSED_STACKS, LOOP_STACKS, Backend,
                     compare_stacks, nan_array, randn, rng_for, stack_acts)

CUDA = Backend("cuda")

#: helpers.STACKS under the simulator, the stacks that tests/conformance/test_backend_stack.py
#: compares with the reference: these fused (widths <= 32 after the input, which may be up to
#: 64), then loop; 1 to 4 layers, batches giving 1, 2 and 4 rows per block, none a multiple
#: of the block


def test_the_simulator_uses_the_small_fused_configuration():
    assert kc.FUSED_MAX_WIDTH == 32 and kc.fused.FUSED_ROWS == 4
    rows = {kc.fused._fused_config(np.float32, s, batch)[0] for batch, s in FUSED_STACKS}
    assert rows == {1, 2, 4}
    assert all(max(s[1:]) <= kc.FUSED_MAX_WIDTH and s[0] <= kc.FUSED_MAX_INPUT for _, s in FUSED_STACKS)
    assert all(max(s[1:]) > kc.FUSED_MAX_WIDTH for _, s in LOOP_STACKS)


def make_stack(rng, dtype, batch, sizes, acts):
    """Host inputs of a stack: A[0], the flat parameters, delta[L-1] from the loss."""
    n = sum(sizes[l] * sizes[l + 1] + sizes[l + 1] for l in range(len(acts)))
    flat = np.empty(n, dtype)
    off = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        flat[off:off + n_in * n_out] = randn(rng, n_in * n_out, dtype, 1 / np.sqrt(n_in))
        flat[off + n_in * n_out:off + n_in * n_out + n_out] = randn(rng, n_out, dtype)
        off += n_in * n_out + n_out
    return randn(rng, (batch, sizes[0]), dtype), flat, randn(rng, (batch, sizes[-1]), dtype)


def buffers(make, batch, sizes, acts, dtype):
    """A, D, delta as the model lays them out: D[l+1] is A[l+1] itself unless the layer's
    activation needs its pre-activation; `make(shape)` makes one NaN-filled array."""
    L = len(acts)
    A = [None] + [make((batch, s)) for s in sizes[1:]]
    D = [None] + [make((batch, sizes[l + 1])) if acts[l] in codes.NEEDS_PREACTIVATION else A[l + 1]
                  for l in range(L)]
    delta = [make((batch, s)) for s in sizes[1:]]
    return A, D, delta


def reference_run(X, flat, top, sizes, acts):
    dtype = X.dtype
    A, D, delta = buffers(lambda shape: np.full(shape, np.nan, dtype), X.shape[0], sizes, acts,
                          dtype)
    A[0] = D[0] = X.copy()
    delta[-1][...] = top
    W, b = kc.fused._layer_views(flat.copy(), sizes)
    dW, db = kc.fused._layer_views(np.full(flat.size, np.nan, dtype), sizes)
    ref.mlp_forward(tuple(A), tuple(D), W, b, acts)
    ref.mlp_backward(tuple(delta), tuple(A), tuple(D), W, dW, db, acts)
    return A, D, delta, W, b, dW, db


class Launches:
    """Records the kernels launched (and still runs them, unless `run` is False)."""

    def __init__(self, monkeypatch, run=True):
        self.kernels = []
        original = kc.device._run

        def record(kernel, grid, block, args):
            self.kernels.append(kernel)
            return original(kernel, grid, block, args) if run else None

        monkeypatch.setattr(kc.device, "_run", record)

    def take(self):
        out, self.kernels = self.kernels, []
        return out


def cuda_run(X, flat, top, sizes, acts, launches, make=None):
    """mlp_forward then mlp_backward on device copies; returns host copies of everything
    and the kernels each call launched."""
    dtype = X.dtype
    make = make or (lambda shape: nan_array(CUDA, shape, dtype))
    A, D, delta = buffers(make, X.shape[0], sizes, acts, dtype)
    A[0] = D[0] = kc.to_device(X)
    kc.write(delta[-1], top)
    dflat = kc.to_device(flat)
    dgrad = nan_array(CUDA, flat.size, dtype)
    W, b = kc.fused._layer_views(dflat, sizes)
    dW, db = kc.fused._layer_views(dgrad, sizes)
    launches.take()
    kc.mlp_forward(tuple(A), tuple(D), W, b, acts)
    forward = launches.take()
    kc.mlp_backward(tuple(delta), tuple(A), tuple(D), W, dW, db, acts)
    backward = launches.take()
    host = [[kc.to_host(a) for a in group] for group in (A, D, delta, W, b, dW, db)]
    np.testing.assert_array_equal(kc.to_host(dflat), flat, err_msg="the parameters changed")
    np.testing.assert_array_equal(host[0][0], X, err_msg="A[0] changed")
    np.testing.assert_array_equal(host[2][-1], top, err_msg="delta[L-1] changed")
    return host, forward, backward


def compare(ours, theirs, acts, dtype, what):
    """helpers.compare_stacks on cuda_run's and reference_run's (A, D, delta, W, b, dW, db)."""
    def order(run):
        A, D, delta, W, b, dW, db = run
        return A, D, W, b, delta, dW, db
    compare_stacks(order(ours), order(theirs), acts, dtype, what)


def expect_fused(forward, backward, dtype, sizes, acts, batch):
    dt = np.dtype(dtype).type
    config = kc.fused._fused_config(dt, sizes, batch)
    assert forward == [kc.fused._fused_forward_kernel(dt, sizes, acts, True, *config)], \
        "forward: not fused"
    L = len(acts)
    if L > 1:
        assert backward[0] is kc.fused._fused_delta_kernel(dt, sizes, acts, *config), \
            "backward: not fused"
    assert len(backward) == (L + 1 if L > 1 else 1), "backward: one GEMM per layer expected"


def expect_loop(forward, backward, acts):
    L = len(acts)
    n_gelu = sum(a in codes.NEEDS_PREACTIVATION for a in acts)
    assert len(forward) == L + n_gelu and len(backward) == 2 * L - 1


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_each_stack_takes_its_path(dtype, act, monkeypatch):
    """The fused kernels for the narrow stacks, the per-layer loop for the wide one (the
    launches are recorded, not run: the numbers are compared with the reference, on these
    very stacks and activations, in tests/conformance/test_backend_stack.py)."""
    launches = Launches(monkeypatch, run=False)
    stacks = [(True, s) for s in FUSED_STACKS] + [(False, s) for s in LOOP_STACKS]
    for fused, (batch, sizes) in stacks:
        acts = stack_acts(act, len(sizes) - 1)
        X, flat, top = make_stack(rng_for("mlp", np.dtype(dtype).str, act, sizes), dtype,
                                  batch, sizes, acts)
        _, forward, backward = cuda_run(X, flat, top, sizes, acts, launches)
        if fused:
            expect_fused(forward, backward, dtype, sizes, acts, batch)
        else:
            expect_loop(forward, backward, acts)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_row_views_of_larger_buffers_are_fused(dtype, monkeypatch):
    """The model passes the first n rows of buffers made for a larger batch: still fused
    (the numbers on row views: tests/conformance/test_backend_stack.py)."""
    launches = Launches(monkeypatch, run=False)
    batch, sizes, acts = 9, (7, 17, 3, 5), (codes.GELU, codes.TANH, codes.IDENTITY)
    X, flat, top = make_stack(rng_for("rows", np.dtype(dtype).str), dtype, batch, sizes, acts)
    _, forward, backward = cuda_run(X, flat, top, sizes, acts, launches,
                                    make=lambda shape: nan_array(CUDA, (13, shape[1]), dtype)[:batch])
    expect_fused(forward, backward, dtype, sizes, acts, batch)


def test_arrays_of_mixed_layouts_are_fused(monkeypatch):
    """A non-contiguous hidden activation (a column slice) among contiguous ones: the fused
    kernels index their tuples with constants, so arrays of any layout mix."""
    launches = Launches(monkeypatch)
    dtype, batch = np.float64, 5
    sizes, acts = (4, 6, 3, 2), (codes.SIGMOID, codes.TANH, codes.IDENTITY)
    X, flat, top = make_stack(rng_for("layouts"), dtype, batch, sizes, acts)
    made = []

    def make(shape):  # the first array made, A[1], is a column slice of a wider one
        made.append(shape)
        if len(made) == 1:
            return nan_array(CUDA, (shape[0], shape[1] + 2), dtype)[:, 1:shape[1] + 1]
        return nan_array(CUDA, shape, dtype)

    ours, forward, backward = cuda_run(X, flat, top, sizes, acts, launches, make=make)
    expect_fused(forward, backward, dtype, sizes, acts, batch)
    compare(ours, reference_run(X, flat, top, sizes, acts), acts, dtype, "column slices")


def test_an_empty_batch_gives_zero_gradients(monkeypatch):
    launches = Launches(monkeypatch)
    dtype, sizes, acts = np.float32, (3, 5, 2), (codes.RELU, codes.IDENTITY)
    X, flat, top = make_stack(rng_for("empty"), dtype, 0, sizes, acts)
    (A, D, delta, W, b, dW, db), forward, backward = cuda_run(X, flat, top, sizes, acts, launches)
    assert forward == [] and len(backward) == 2  # no rows to push through: only the gradients
    for g in dW + db:
        np.testing.assert_array_equal(g, 0)


def test_launches_per_training_step_for_mnist(monkeypatch):
    """784-256-128-10 (relu, relu, identity) at the real GPU's limits: its 784-wide input is
    above FUSED_MAX_INPUT, so it takes the per-layer GEMMs (3 + 5 launches); with the input
    limit raised, the forward pass is 1 launch instead of 3, the backward pass 1 + 3 instead
    of 3 + 2. (The launches are only recorded, not run: the simulator would take minutes.)"""
    kernels = []
    monkeypatch.setattr(kc.device, "_run", lambda kernel, grid, block, args: kernels.append(kernel))
    dtype, batch, sizes, acts = np.float32, 2, (784, 256, 128, 10), (1, 1, 0)
    A, D, delta = buffers(lambda shape: kc.empty(shape, dtype), batch, sizes, acts, dtype)
    A[0] = D[0] = kc.empty((batch, sizes[0]), dtype)
    flat = kc.empty(sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:])), dtype)
    W, b = kc.fused._layer_views(flat, sizes)
    dW, db = kc.fused._layer_views(kc.empty(flat.size, dtype), sizes)
    counts = {}
    for max_width, max_input in ((256, 256), (256, 784), (128, 784)):
        monkeypatch.setattr(kc.fused, "FUSED_MAX_WIDTH", max_width)
        monkeypatch.setattr(kc.fused, "FUSED_MAX_INPUT", max_input)
        kc.mlp_forward(tuple(A), tuple(D), W, b, acts)
        n_forward = len(kernels)
        kc.mlp_backward(tuple(delta), tuple(A), tuple(D), W, dW, db, acts)
        counts[max_width, max_input] = (n_forward, len(kernels) - n_forward)
        kernels.clear()
    assert counts == {(256, 256): (3, 5), (256, 784): (1, 4), (128, 784): (3, 5)}


def real_gpu_settings(sm_count=132):
    """The fused kernels' settings on a real GPU (an H100's 132 multiprocessors)."""
    return [mock.patch.object(kc.fused, "FUSED_ROWS", 16),
            mock.patch.object(kc.fused, "FUSED_ROWS_PER_THREAD", 4),
            mock.patch.object(kc.fused, "FUSED_THREADS", 256),
            mock.patch.object(kc.fused, "_WARP", 32),
            mock.patch.object(kc.fused, "_multiprocessors", lambda: sm_count)]


def test_rows_per_block_fit_the_shared_memory_and_the_machine():
    """Two (rows, pitch) buffers per block within 48 KiB (16 rows in float32 at width 256,
    8 in float64); fewer rows per block while the batch would leave multiprocessors idle;
    whole warps of threads, no more than the widest layer needs."""
    sizes = (256, 256, 128, 10)
    with contextlib.ExitStack() as stack:
        for patch in real_gpu_settings():
            stack.enter_context(patch)
        config = kc.fused._fused_config
        assert config(np.float32, sizes, 1 << 14) == (16, 4, 64)  # 256 threads, 1024 blocks
        assert config(np.float64, sizes, 1 << 14) == (8, 4, 128)  # 8 rows: 48 KiB
        assert config(np.float32, sizes, 128) == (1, 1, 128)  # 128 blocks of 1 row
        assert config(np.float32, sizes, 512) == (2, 2, 128)  # 256 blocks of 2 rows
        assert config(np.float32, (32, 64, 64, 64, 2), 4096) == (16, 4, 32)  # 128 threads
        assert config(np.float32, (3, 5, 2), 1000) == (4, 4, 32)  # one warp
        for dt in (np.float32, np.float64):
            for batch in (1, 100, 1000, 1 << 18):
                R, RT, C = config(dt, sizes, batch)
                threads = (R // RT) * C
                assert 2 * R * kc.fused._pitch(sizes) * np.dtype(dt).itemsize <= \
                    kc.fused.FUSED_SHARED_BYTES
                assert R % RT == 0 and threads % 32 == 0 and threads <= 256
                assert -(-batch // R) >= 132 or R == 1
    assert kc.fused._pitch((784, 256, 128, 10)) == 785
    assert kc.fused._pitch((32, 64, 2)) == 65 and kc.fused._pitch((5, 7, 3)) == 7


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_the_real_launch_configuration(dtype, monkeypatch):
    """16 rows per block, 4 per thread (4 row groups), an odd pitch, and as many threads as
    the simulator affords (32 instead of 256): a batch of three blocks, the last one short."""
    launches = Launches(monkeypatch)
    monkeypatch.setattr(kc.fused, "FUSED_ROWS", 16)
    monkeypatch.setattr(kc.fused, "FUSED_ROWS_PER_THREAD", 4)
    monkeypatch.setattr(kc.fused, "FUSED_THREADS", 32)
    monkeypatch.setattr(kc.fused, "_multiprocessors", lambda: 1)
    batch, sizes = 37, (9, 20, 13, 6)
    acts = (codes.TANH, codes.GELU, codes.IDENTITY)
    assert kc.fused._fused_config(np.dtype(dtype).type, sizes, batch) == (16, 4, 8)
    X, flat, top = make_stack(rng_for("real config", np.dtype(dtype).str), dtype, batch, sizes, acts)
    ours, forward, backward = cuda_run(X, flat, top, sizes, acts, launches)
    expect_fused(forward, backward, dtype, sizes, acts, batch)
    compare(ours, reference_run(X, flat, top, sizes, acts), acts, dtype, "real configuration")
