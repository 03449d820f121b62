"""The CPU backend's own paths, which no other backend has: BLAS called from compiled code
(kernels/blas.py, behind the CPU's mlp_forward / mlp_backward), the switch that turns it off
(FASTMLP_NUMBA_BLAS=0), and a model trained through both the BLAS loop and the Python loop
it falls back to. (mlp_forward / mlp_backward on both paths against the reference:
test_backend_stack.py.) This file runs in the ordinary process only (see conftest.py: the
CUDA simulator's process has no CPU backend under test).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from fastmlp.kernels import blas, cpu
from helpers import EVERY_DTYPE, assert_close, dot_scale, randn, rng_for

needs_blas = pytest.mark.skipif(not blas.AVAILABLE,
                                reason=f"no BLAS reachable from Numba here: {blas.WHY_NOT}")


@needs_blas
def test_the_paths_agree_on_a_model(monkeypatch):
    """A Dense-only model trained through the compiled loop and through the Python loop
    follows the same losses (float64: to rounding)."""
    import fastmlp

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


@njit
def _gemm_alpha(A, B, C, trans_a, trans_b, beta, alpha):
    blas.gemm(A, B, C, trans_a, trans_b, beta, alpha)


@needs_blas
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 1, 3), (1, 17, 5), (33, 65, 1), (130, 17, 64)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@EVERY_DTYPE
def test_gemm_from_compiled_code(dtype, trans_a, trans_b, shape):
    M, N, K = shape
    rng = rng_for("gemm", dtype, trans_a, trans_b, shape)
    A = randn(rng, (K, M) if trans_a else (M, K), dtype)
    B = randn(rng, (N, K) if trans_b else (K, N), dtype)
    C0 = randn(rng, (M, N), dtype)
    opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
    for beta, alpha in ((0.0, None), (0.5, None), (0.0, -0.25), (1.0, 3.0)):
        C = C0.copy() if beta else np.full((M, N), np.nan, dtype)
        A_before, B_before = A.copy(), B.copy()
        if alpha is None:  # left out: 1
            _gemm(A, B, C, trans_a, trans_b, beta)
        else:
            _gemm_alpha(A, B, C, trans_a, trans_b, beta, dtype(alpha))
        a = 1.0 if alpha is None else alpha
        expected = a * (opA.astype(np.float64) @ opB) + beta * C0
        assert_close(C, expected, dtype,
                     abs(a) * dot_scale(opA, opB) + abs(beta) * np.abs(C0).max())
        np.testing.assert_array_equal(A, A_before)
        np.testing.assert_array_equal(B, B_before)


@needs_blas
def test_gemm_rejects_mixed_dtypes_and_strided_arrays():
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
    _gemm_alpha(wide[:, 1:3], a64 + np.eye(2), out[:, 2:4], False, False, 1.0, -2.0)  # alpha too
    np.testing.assert_allclose(out[:, 2:4], -(wide[:, 1:3] @ (a64 + np.eye(2))))
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
