"""A stack of Dense layers in one kernel call each way (cpu.mlp_forward / cpu.mlp_backward)
against the NumPy reference, and the BLAS that compiled code calls (kernels/blas.py).

Like tests/conformance/: private copies of the same inputs for both backends, outputs
NaN-filled first (an element a kernel forgets stays NaN), inputs checked unchanged, shapes
with sizes of 1 and odd sizes. Both paths of the CPU backend are tested: the compiled layer
loop calling BLAS, and the Python loop over the single-layer kernels it falls back to when
no BLAS is reachable from Numba.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from fastmlp.kernels import blas, codes, cpu
from fastmlp.kernels import reference as ref
from helpers import ACT_CODES, ACT_IDS, DTYPE_IDS, DTYPES, assert_close, dot_scale, randn, rng_for

STACKS = (  # (batch, sizes)
    (1, (1, 1)),
    (7, (3, 17, 1)),
    (33, (17, 1, 64, 5)),
    (130, (129, 64, 33, 10)),
    (5, (64, 129, 7, 3, 2)),
)


def _stack(rng, dtype, batch, sizes, acts):
    """Inputs of a stack: A[0], W, b, the delta from the loss, and NaN-filled outputs."""
    L = len(sizes) - 1
    A = [randn(rng, (batch, sizes[0]), dtype)]
    A += [np.full((batch, s), np.nan, dtype) for s in sizes[1:]]
    D = [A[0]] + [np.full((batch, sizes[l + 1]), np.nan, dtype) if acts[l] in codes.NEEDS_PREACTIVATION
                  else A[l + 1] for l in range(L)]
    W = [randn(rng, (sizes[l + 1], sizes[l]), dtype, 1 / np.sqrt(sizes[l])) for l in range(L)]
    b = [randn(rng, (sizes[l + 1],), dtype) for l in range(L)]
    delta = [np.full((batch, s), np.nan, dtype) for s in sizes[1:]]
    delta[-1][...] = randn(rng, delta[-1].shape, dtype)
    dW = [np.full_like(w, np.nan) for w in W]
    db = [np.full_like(x, np.nan) for x in b]
    return A, D, W, b, delta, dW, db


def _copy(stack):
    A, D, W, b, delta, dW, db = stack
    A2 = [a.copy() for a in A]
    D2 = [A2[l] if d is A[l] else d.copy() for l, d in enumerate(D)]
    return (A2, D2, [w.copy() for w in W], [x.copy() for x in b], [d.copy() for d in delta],
            [w.copy() for w in dW], [x.copy() for x in db])


def _run(kernels, stack, acts):
    A, D, W, b, delta, dW, db = (tuple(x) for x in stack)
    kernels.mlp_forward(A, D, W, b, acts)
    kernels.mlp_backward(delta, A, D, W, dW, db, acts)


def _compare(ours, theirs, acts, dtype):
    A, D, W, b, delta, dW, db = ours
    rA, rD, rW, rb, rdelta, rdW, rdb = theirs
    for l in range(len(W)):
        np.testing.assert_array_equal(W[l], rW[l], err_msg="mlp_backward changed W")
        np.testing.assert_array_equal(b[l], rb[l], err_msg="mlp_forward changed b")
        scale = dot_scale(rA[l], np.abs(rW[l]).T) + float(np.abs(rb[l]).max())
        assert_close(A[l + 1], rA[l + 1], dtype, max(scale, np.abs(rA[l + 1]).max()), f"A[{l + 1}]")
        if acts[l] in codes.NEEDS_PREACTIVATION:
            assert_close(D[l + 1], rD[l + 1], dtype, scale, f"Z[{l + 1}]")
        assert_close(dW[l], rdW[l], dtype, dot_scale(np.abs(rdelta[l]).T, rA[l]), f"dW[{l}]")
        assert_close(db[l], rdb[l], dtype, float(np.abs(rdelta[l]).sum(axis=0).max()), f"db[{l}]")
        if l > 0:
            sc = dot_scale(rdelta[l], np.abs(rW[l])) * 2  # f' is at most ~1.13 (gelu)
            assert_close(delta[l - 1], rdelta[l - 1], dtype, sc, f"delta[{l - 1}]")
    np.testing.assert_array_equal(A[0], rA[0], err_msg="mlp_forward changed A[0]")


@pytest.fixture(params=["compiled", "python"])
def path(request, monkeypatch):
    """The CPU backend's two paths: the compiled layer loop, and its Python fallback."""
    if request.param == "compiled":
        if not blas.AVAILABLE:
            pytest.skip(f"no BLAS reachable from Numba here: {blas.WHY_NOT}")
    else:
        monkeypatch.setattr(cpu.blas, "AVAILABLE", False)
    return request.param


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: f"{s[0]}x{'-'.join(map(str, s[1]))}")
@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mlp_forward_backward(dtype, act, stack, path):
    batch, sizes = stack
    L = len(sizes) - 1
    # the hidden layers cycle through the activations starting at `act`; the last is identity
    acts = tuple((act + l) % len(ACT_CODES) for l in range(L - 1)) + (codes.IDENTITY,)
    if L == 1:
        acts = (act,)
    inputs = _stack(rng_for("mlp", dtype, act, stack), dtype, batch, sizes, acts)
    ours, theirs = _copy(inputs), _copy(inputs)
    _run(cpu, ours, acts)
    _run(ref, theirs, acts)
    _compare(ours, theirs, acts, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mlp_on_row_views_of_larger_buffers(dtype, path):
    """The model passes the first n rows of buffers made for a larger batch."""
    sizes, acts = (17, 9, 4), (codes.GELU, codes.IDENTITY)
    full = _stack(rng_for("views", dtype), dtype, 40, sizes, acts)
    n = 13
    A, D, W, b, delta, dW, db = full
    views = ([a[:n] for a in A], [d[:n] for d in D], W, b, [d[:n] for d in delta], dW, db)
    views[1][0] = views[0][0]
    views[1][2] = views[0][2]  # identity: D is A
    ours, theirs = _copy(views), _copy(views)
    _run(cpu, ours, acts)
    _run(ref, theirs, acts)
    _compare(ours, theirs, acts, dtype)


def test_the_paths_agree_on_a_model(monkeypatch):
    """A Dense-only model trained through the compiled loop and through the Python loop
    follows the same losses (float64: to rounding)."""
    import fastmlp

    if not blas.AVAILABLE:
        pytest.skip(f"no BLAS reachable from Numba here: {blas.WHY_NOT}")
    X, y = fastmlp.datasets.load_digits()
    losses = []
    for available in (True, False):
        monkeypatch.setattr(cpu.blas, "AVAILABLE", available)
        m = fastmlp.MLP([64, 32, 16, 10], activation=["gelu", "tanh"], device="cpu",
                        dtype="float64", seed=3, optimizer=fastmlp.Adam(lr=1e-3))
        losses.append(m.fit(X[:500], y[:500], epochs=2, batch_size=64, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-12)


# ---------------------------------------------------------------------------------------
# the BLAS called from compiled code


@njit
def _gemm(A, B, C, trans_a, trans_b, beta):
    blas.gemm(A, B, C, trans_a, trans_b, beta)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 1, 3), (1, 17, 5), (33, 65, 1), (130, 17, 64)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gemm_from_compiled_code(dtype, trans_a, trans_b, shape):
    if not blas.AVAILABLE:
        pytest.skip(f"no BLAS reachable from Numba here: {blas.WHY_NOT}")
    M, N, K = shape
    rng = rng_for("gemm", dtype, trans_a, trans_b, shape)
    A = randn(rng, (K, M) if trans_a else (M, K), dtype)
    B = randn(rng, (N, K) if trans_b else (K, N), dtype)
    C0 = randn(rng, (M, N), dtype)
    opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
    for beta in (0.0, 0.5):
        C = C0.copy() if beta else np.full((M, N), np.nan, dtype)
        A_before, B_before = A.copy(), B.copy()
        _gemm(A, B, C, trans_a, trans_b, beta)
        expected = opA.astype(np.float64) @ opB + beta * C0
        assert_close(C, expected, dtype, dot_scale(opA, opB) + abs(beta) * np.abs(C0).max())
        np.testing.assert_array_equal(A, A_before)
        np.testing.assert_array_equal(B, B_before)


def test_gemm_rejects_mixed_dtypes_and_strided_arrays():
    if not blas.AVAILABLE:
        pytest.skip(f"no BLAS reachable from Numba here: {blas.WHY_NOT}")
    a32, a64 = np.ones((2, 2), np.float32), np.ones((2, 2))
    with pytest.raises(Exception, match="one dtype"):
        _gemm(a32, a64, a32, False, False, 0.0)
    wide = np.arange(8.0).reshape(2, 4)
    with pytest.raises(Exception, match="rows are contiguous"):  # every other column
        _gemm(wide[:, ::2], a64, np.empty((2, 2)), False, False, 0.0)
    # a column slice of a wider buffer (rows contiguous, leading dimension = row stride) is
    # taken as it is: a Concatenate's producers write straight into their columns
    out = np.zeros((2, 4))
    _gemm(wide[:, 1:3], a64 + np.eye(2), out[:, 2:4], False, False, 0.0)
    np.testing.assert_allclose(out[:, 2:4], wide[:, 1:3] @ (a64 + np.eye(2)))
    assert not out[:, :2].any()


def test_blas_can_be_switched_off():
    """FASTMLP_NUMBA_BLAS=0: no BLAS from compiled code, the reason said, training still works
    and gives the same loss as with it (the same arithmetic, through NumPy's matmul)."""
    script = (
        "import numpy as np, fastmlp\n"
        "from fastmlp.kernels import blas\n"
        "X, y = fastmlp.datasets.load_digits()\n"
        "m = fastmlp.MLP([64, 16, 10], seed=0, device='cpu', dtype='float64')\n"
        "print(blas.AVAILABLE, '|', blas.WHY_NOT, '|', repr(m.train_step(X[:32], y[:32])))\n"
    )
    results = []
    for value in ("0", "1"):
        env = dict(os.environ, FASTMLP_NUMBA_BLAS=value)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        results.append(out.stdout.strip().split(" | "))
    off, on = results
    assert off[0] == "False" and "FASTMLP_NUMBA_BLAS=0" in off[1]
    assert on[0] == str(blas.AVAILABLE)
    assert float(off[2]) == pytest.approx(float(on[2]), rel=1e-12)
