"""What several test files share: seeded generators, tolerances, awkward shapes, the
activation codes, small data sets and model builders.

Test modules import from here (``from helpers import ...``; tests/conftest.py puts this
folder on sys.path), never from each other.
"""

import importlib
import importlib.util
import os
import zlib

import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import codes

#: this process runs under numba-cuda's CUDA simulator (tests/test_cuda_simulator.py starts
#: one such process for tests/conformance and tests/cuda_sim)
SIMULATED = (os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() == "1"
             and importlib.util.find_spec("numba_cuda") is not None)

DTYPES = (np.float32, np.float64)
DTYPE_IDS = ("f32", "f64")
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

# Awkward sizes: 1, and sizes that are multiples of no tile. The simulator runs one Python
# thread per CUDA thread, so there they stay tiny but still cross every tile edge of its small
# configuration: GEMM tiles of 8 x 8 (with a k-step of 4) for outputs of 4 tiles or more, of
# 4 x 4 below (17 x 9 takes the large tiles, 17 x 3 the small ones), 16-thread blocks, at most
# 4 blocks (64 threads) for the grid-stride loops (17 x 9 = 153 elements run them).
if SIMULATED:
    BATCHES = (1, 17)
    FEATURES = (1, 17)
    FEATURE_PAIRS = ((1, 3), (17, 9))
    PARAM_SIZES = (1, 37, 67)  # 67 > 4 blocks x 16 threads: the grid-stride loop runs
else:
    BATCHES = (1, 7, 33, 130)
    FEATURES = (1, 3, 17, 64, 129)
    # (in_features, out_features) pairs built from FEATURES; every size appears on both sides
    FEATURE_PAIRS = ((1, 1), (1, 129), (3, 17), (17, 3), (64, 129), (129, 64), (129, 1), (17, 17))
    PARAM_SIZES = (1, 7, 130, 1031)

ACTS = sorted(codes.ACTIVATIONS.items(), key=lambda kv: kv[1])
ACT_CODES = [code for _, code in ACTS]
ACT_IDS = [name for name, _ in ACTS]

#: the parametrisations the kernel tests share: every dtype, every activation, every batch size
EVERY_DTYPE = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
EVERY_ACT = pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
EVERY_BATCH = pytest.mark.parametrize("batch", BATCHES)

BIG = 1e4  # "huge" logits for the stability tests; exactly representable in float32


def rng_for(*key):
    """A generator seeded by the test's parameters, so every case is reproducible
    (crc32, not hash(): str hashes change from one interpreter run to the next)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def assert_close(actual, expected, dtype, scale=None, what="", rtol=None):
    """assert_allclose(actual, expected) with rtol = RTOL[dtype] (unless given) and
    atol = rtol * scale.

    Why atol = rtol * scale rather than a pure relative check: a kernel output that is a sum
    (a dot product, a column sum, p - t, p - lr * d) can cancel to nearly zero, and its
    rounding error is then bounded by the magnitude of the *terms*, not by the (tiny)
    result, so a purely relative check would reject correct kernels. `scale` is therefore
    the magnitude of the terms: by default the largest |expected| of the array (the array's
    own scale), and for matrix products the largest entry of |A| @ |B| (the standard
    forward-error bound of a dot product), passed explicitly by the caller. We deliberately
    do not use max(1, |expected|.max()): several outputs live far below 1 (dZ = (p - t)/B is
    O(1/B), Adam's v is O(g^2)), and a floor of 1 would accept 100 % errors there. Where the
    scale is zero the output must match to within the smallest normal number, i.e. exactly.
    """
    dtype = np.dtype(dtype)
    rtol = RTOL[dtype] if rtol is None else rtol
    expected = np.asarray(expected, dtype=np.float64)
    if scale is None:
        scale = float(np.abs(expected).max(initial=0.0))
    atol = rtol * max(float(scale), float(np.finfo(dtype).tiny))
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol, err_msg=what
    )


def dot_scale(A, B):
    """Largest entry of |A| @ |B|: the scale of the rounding error of A @ B."""
    return float((np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64))).max(initial=0.0))


#: the backends this process compares with the reference: the CUDA simulator's process
#: runs the CUDA backend only, the ordinary run the others
BACKENDS = ("cuda",) if SIMULATED else ("reference", "cpu")


class Backend:
    """One kernel module under test (``.k``) and how to move arrays to it and back."""

    def __init__(self, name):
        self.name = name
        self.k = importlib.import_module(f"fastmlp.kernels.{name}")
        self.on_device = name == "cuda"

    def __repr__(self):
        return self.name

    def __getattr__(self, fname):  # backend.matmul(...) is the module's kernel
        return getattr(self.k, fname)

    def device(self, a):
        """A private copy of host array `a` where this backend's kernels take their arrays."""
        return self.k.to_device(a) if self.on_device else a.copy()

    def host(self, a):
        return self.k.to_host(a) if self.on_device else a

    def run(self, fname, args, out=(), inout=(), **kwargs):
        """Run ``reference.fname`` and this backend's ``fname`` on private copies of `args`.

        Positions in `out` are pure outputs and are filled with NaN in both copies first, so
        an element a kernel forgets to write fails the comparison. Positions in `inout` are
        updated in place (e.g. optimizer state). Every other array argument must come back
        bit for bit unchanged. Returns ``(ref_result, ref_args, result, args)``, the outputs
        read back from the very arrays that were passed to the kernels; `kwargs` go to the
        backend's kernel only (CUDA's ``total=``).
        """
        from fastmlp.kernels import reference as ref

        ref_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        for i in out:
            ref_args[i].fill(np.nan)
        ours = []
        for i, a in enumerate(args):
            if not isinstance(a, np.ndarray):
                ours.append(a)
            elif i in out:
                ours.append(nan_array(self, a.shape, a.dtype))
            else:
                ours.append(self.device(a))
        ref_res = getattr(ref, fname)(*ref_args)
        res = getattr(self.k, fname)(*ours, **kwargs)
        back = []
        for i, (a, d) in enumerate(zip(args, ours)):
            if not isinstance(a, np.ndarray):
                back.append(a)
                continue
            h = self.host(d)
            assert h.dtype == a.dtype and h.shape == a.shape
            if i not in out and i not in inout:
                np.testing.assert_array_equal(
                    h, a, err_msg=f"{self.name}.{fname} modified its input argument {i}")
            back.append(h)
        return ref_res, ref_args, res, back


def nan_array(backend, shape, dtype):
    """An array of `backend` filled with NaN: an element a kernel forgets to write stays NaN."""
    return backend.device(np.full(shape, np.nan, dtype))


def check_no_return(fname, ref_res, res):
    # the contract's in-place kernels return nothing; the result is in the arrays passed
    assert ref_res is None and res is None, f"{fname} should return None"


def activation_of(Z, act):
    """A = f(Z) from the reference's forward pass (f' is computed from the stored A)."""
    from fastmlp.kernels import reference as ref

    A = np.empty_like(Z)
    ref.activate(Z, act, A)
    return A


def activation_inputs(rng, batch, features, dtype, scale=3.0):
    """Random pre-activations plus the edge cases 0, +-30 and +-BIG in the first row."""
    Z = randn(rng, (batch, features), dtype, scale=scale)
    edge = np.array([0.0, -0.0, 30.0, -30.0, BIG, -BIG, 1e-3, -1e-3], dtype)
    n = min(features, edge.size)
    Z[0, :n] = edge[:n]
    return Z


def targets(rng, kind, batch, k, dtype):
    """Targets of softmax cross-entropy: labels (B,) or a (B, K) target matrix."""
    if kind in ("labels", "labels_int32"):
        return rng.integers(0, k, size=batch).astype(np.int32 if kind == "labels_int32"
                                                     else np.int64)
    if kind == "onehot":
        return np.eye(k, dtype=dtype)[rng.integers(0, k, size=batch)]
    if kind == "probs":  # rows on the simplex, not one-hot (k == 1 is necessarily one-hot)
        return rng.dirichlet(np.ones(k), size=batch).astype(dtype)
    if kind == "unnormalized":  # rows summing to anything in [0.5, 2]: dZ uses sum(T)
        T = rng.dirichlet(np.ones(k), size=batch) * rng.uniform(0.5, 2.0, size=(batch, 1))
        return T.astype(dtype)
    raise AssertionError(kind)


def bce_targets(rng, kind, batch, k, dtype):
    """Targets of binary cross-entropy."""
    if kind == "labels_1d":  # K == 1 only: labels of shape (B,)
        return rng.integers(0, 2, size=batch).astype(dtype)
    if kind == "labels_int":  # K == 1 only: integer labels of shape (B,)
        return rng.integers(0, 2, size=batch)
    if kind == "binary":
        return rng.integers(0, 2, size=(batch, k)).astype(dtype)
    if kind == "soft":
        return rng.uniform(0, 1, size=(batch, k)).astype(dtype)
    raise AssertionError(kind)


def blobs(n=60, d=4, k=3, seed=0, dtype=np.float32, shuffle=True, centers_seed=None):
    """k well separated Gaussian blobs (labels int64): learnable in a few epochs.

    The labels cycle 0, 1, ..., k-1 (shuffled unless ``shuffle=False``); the centres come
    from `seed`'s generator unless `centers_seed` gives them their own."""
    rng = np.random.default_rng(seed)
    if centers_seed is None:
        centers = rng.standard_normal((k, d)) * 3
    else:
        centers = np.random.default_rng(centers_seed).standard_normal((k, d)) * 3
    y = np.arange(n) % k
    if shuffle:
        y = rng.permutation(y)
    X = (centers[y] + rng.standard_normal((n, d))).astype(dtype)
    return X, y.astype(np.int64)


def mlp(sizes=(4, 8, 3), activation="relu", loss="cross_entropy", optimizer=None, dtype="float32", seed=0,
        device="cpu", **kw):
    """A small fastmlp.MLP on the CPU, SGD(lr=0.1, momentum=0.9) unless told otherwise."""
    if optimizer is None:
        optimizer = fastmlp.SGD(lr=0.1, momentum=0.9)
    return fastmlp.MLP(list(sizes), activation=activation, loss=loss, optimizer=optimizer,
                       device=device, dtype=dtype, seed=seed, **kw)


def assert_same_weights(a, b):
    """Two lists of arrays (get_weights()) equal bit for bit, with the same shapes and dtypes."""
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        assert wa.shape == wb.shape and wa.dtype == wb.dtype
        np.testing.assert_array_equal(wa, wb)


def digits_split():
    """The digits data set (fastmlp.datasets.load_digits): 1200 training, 597 test rows."""
    X, y = fastmlp.datasets.load_digits()
    return X[:1200], y[:1200], X[1200:], y[1200:]


# ---------------------------------------------------------------------------------------
# a stack of Dense layers (mlp_forward / mlp_backward)


#: (batch, sizes) of the stacks: 1 to 4 layers, widths of 1 and of no tile's multiple
if SIMULATED:
    # CUDA's two paths: its fused kernels (every width after the input at most 32 under the
    # simulator, the input at most 64), with batches that give 1, 2 and 4 rows per block and
    # are no multiple of it; then its per-layer loop (a width of 33)
    FUSED_STACKS = ((1, (3, 1)), (7, (40, 17, 3)), (13, (5, 32, 1, 9, 2)), (19, (6, 11, 3, 5)))
    LOOP_STACKS = ((5, (3, 33, 7)),)
    STACKS = FUSED_STACKS + LOOP_STACKS
else:
    STACKS = (
        (1, (1, 1)),
        (7, (3, 17, 1)),
        (33, (17, 1, 64, 5)),
        (130, (129, 64, 33, 10)),
        (5, (64, 129, 7, 3, 2)),
    )


EVERY_STACK = pytest.mark.parametrize("stack", STACKS,
                                      ids=lambda s: f"{s[0]}x{'-'.join(map(str, s[1]))}")


def stack_acts(act, n_layers):
    """The layers' activations: cycling through all codes from `act`, the output layer too
    (so that, over all `act`, every activation meets every depth, GELU's separate
    pre-activation array included, and one of them ends in identity)."""
    return tuple((act + l) % len(ACT_CODES) for l in range(n_layers))


def make_stack(rng, dtype, batch, sizes, acts):
    """Host inputs of a stack, as lists: A[0], W, b, the delta from the loss, and NaN-filled
    outputs; D[l+1] is A[l+1] itself unless layer l's activation needs its pre-activation."""
    L = len(sizes) - 1
    A = [randn(rng, (batch, sizes[0]), dtype)]
    A += [np.full((batch, s), np.nan, dtype) for s in sizes[1:]]
    D = [A[0]] + [np.full((batch, sizes[l + 1]), np.nan, dtype)
                  if acts[l] in codes.NEEDS_PREACTIVATION else A[l + 1] for l in range(L)]
    W = [randn(rng, (sizes[l + 1], sizes[l]), dtype, 1 / np.sqrt(sizes[l])) for l in range(L)]
    b = [randn(rng, (sizes[l + 1],), dtype) for l in range(L)]
    delta = [np.full((batch, s), np.nan, dtype) for s in sizes[1:]]
    delta[-1][...] = randn(rng, delta[-1].shape, dtype)
    dW = [np.full_like(w, np.nan) for w in W]
    db = [np.full_like(x, np.nan) for x in b]
    return A, D, W, b, delta, dW, db


def run_stack(kernels, stack, acts, rows=None, device=lambda a: a.copy(), host=lambda a: a):
    """mlp_forward then mlp_backward of `kernels` on private copies of `stack` (made by
    `device`, D[l] staying the very array A[l] where it is); with `rows`, on the first `rows`
    rows of those copies (the model passes views of buffers made for a larger batch).
    Returns the seven lists read back by `host`."""
    A, D, W, b, delta, dW, db = stack
    batch = slice(None) if rows is None else slice(0, rows)
    A2 = [device(a)[batch] for a in A]
    D2 = [A2[l] if d is A[l] else device(d)[batch] for l, d in enumerate(D)]
    delta2 = [device(d)[batch] for d in delta]
    dev = [A2, D2] + [[device(x) for x in part] for part in (W, b)] + [delta2] + [
        [device(x) for x in part] for part in (dW, db)]
    A2, D2, W2, b2, delta2, dW2, db2 = (tuple(x) for x in dev)
    kernels.mlp_forward(A2, D2, W2, b2, acts)
    kernels.mlp_backward(delta2, A2, D2, W2, dW2, db2, acts)
    return tuple([host(x) for x in part] for part in dev)


def compare_stacks(ours, theirs, acts, dtype, what=""):
    """Every output of a stack run against the reference's, each to rtol times the scale of
    its terms; the inputs W, b and A[0] unchanged. `ours`, `theirs`: (A, D, W, b, delta, dW, db)."""
    A, D, W, b, delta, dW, db = ours
    rA, rD, rW, rb, rdelta, rdW, rdb = theirs
    for l in range(len(W)):
        np.testing.assert_array_equal(W[l], rW[l], err_msg="mlp_backward changed W " + what)
        np.testing.assert_array_equal(b[l], rb[l], err_msg="mlp_forward changed b " + what)
        scale = dot_scale(rA[l], np.abs(rW[l]).T) + float(np.abs(rb[l]).max())
        assert_close(A[l + 1], rA[l + 1], dtype, max(scale, np.abs(rA[l + 1]).max()),
                     f"A[{l + 1}] {what}")
        if acts[l] in codes.NEEDS_PREACTIVATION:
            assert_close(D[l + 1], rD[l + 1], dtype, scale, f"Z[{l + 1}] {what}")
        assert_close(dW[l], rdW[l], dtype, dot_scale(np.abs(rdelta[l]).T, rA[l]), f"dW[{l}] {what}")
        assert_close(db[l], rdb[l], dtype, float(np.abs(rdelta[l]).sum(axis=0).max(initial=0.0)),
                     f"db[{l}] {what}")
        if l > 0:
            sc = dot_scale(rdelta[l], np.abs(rW[l])) * 2  # f' is at most ~1.13 (gelu)
            assert_close(delta[l - 1], rdelta[l - 1], dtype, sc, f"delta[{l - 1}] {what}")
    np.testing.assert_array_equal(A[0], rA[0], err_msg="mlp_forward changed A[0] " + what)


def check_stack(backend, dtype, act, stack):
    """mlp_forward and mlp_backward of `backend` (a Backend) on a random (batch, sizes)
    `stack`, the activations cycling from `act`, against the reference's."""
    from fastmlp.kernels import reference as ref

    batch, sizes = stack
    acts = stack_acts(act, len(sizes) - 1)
    inputs = make_stack(rng_for("mlp", dtype, act, stack), dtype, batch, sizes, acts)
    ours = run_stack(backend, inputs, acts, device=backend.device, host=backend.host)
    compare_stacks(ours, run_stack(ref, inputs, acts), acts, dtype)


def check_stack_on_row_views(backend, dtype, rows):
    """check_stack on the first `rows` rows of buffers made for a batch of 40 (as a model
    passes them), a GELU layer (its own Z array) then an identity one."""
    from fastmlp.kernels import reference as ref

    sizes, acts = (17, 9, 4), (codes.GELU, codes.IDENTITY)
    full = make_stack(rng_for("views", dtype), dtype, 40, sizes, acts)
    ours = run_stack(backend, full, acts, rows, device=backend.device, host=backend.host)
    compare_stacks(ours, run_stack(ref, full, acts, rows), acts, dtype)
