"""The graph kernels on CUDA (add, accumulating delta_backward / weight_grad, the
multi-label count, layer kernels on column slices) against the reference, simulator shapes."""

import numpy as np
import pytest

from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, DTYPE_IDS, DTYPES, activation_of, assert_close, dot_scale, randn,
                     rng_for)
from sim_helpers import run_both

SHAPES = ((1, 1, 1), (7, 3, 17), (17, 9, 3), (33, 17, 7))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_add(dtype):
    rng = rng_for("add", np.dtype(dtype).str)
    for batch, n, _ in SHAPES:
        X, Y = randn(rng, (batch, n), dtype), randn(rng, (batch, n), dtype)
        r, ra, c, ca = run_both("add", [X, Y, np.empty((batch, n), dtype)], out=(2,))
        assert c is None
        np.testing.assert_array_equal(ca[2], ra[2])


@pytest.mark.parametrize("act", [ACT_CODES[0], ACT_CODES[1], ACT_CODES[5]], ids=["identity", "relu", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_delta_backward_accumulate(dtype, act):
    rng = rng_for("delta_acc", act, np.dtype(dtype).str)
    for batch, fin, fout in SHAPES:
        delta, W = randn(rng, (batch, fout), dtype), randn(rng, (fout, fin), dtype)
        D = activation_of(randn(rng, (batch, fin), dtype), act)
        before = randn(rng, (batch, fin), dtype)
        r, ra, c, ca = run_both("delta_backward", [delta, W, D, act, before, True], inout=(4,))
        assert_close(ca[4], ra[4], dtype, scale=dot_scale(delta, W) + float(np.abs(before).max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_weight_grad_accumulate(dtype):
    rng = rng_for("wg_acc", np.dtype(dtype).str)
    for batch, fin, fout in SHAPES:
        delta, A = randn(rng, (batch, fout), dtype), randn(rng, (batch, fin), dtype)
        dW, db = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
        r, ra, c, ca = run_both("weight_grad", [delta, A, dW, db, True], inout=(2, 3))
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(delta.T, A) + float(np.abs(dW).max()))
        assert_close(ca[3], ra[3], dtype, scale=float(np.abs(delta).sum(axis=0).max()) + float(np.abs(db).max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_binary_correct(dtype):
    rng = rng_for("bin_correct", np.dtype(dtype).str)
    for batch, k, _ in SHAPES:
        Z = randn(rng, (batch, k), dtype)
        T = rng.integers(0, 2, (batch, k)).astype(dtype)
        expected = ref.count_binary_correct(Z, T)
        assert kc.count_binary_correct(kc.to_device(Z), kc.to_device(T)) == expected
        total = kc.zeros(1, np.int64)
        kc.count_binary_correct(kc.to_device(Z), kc.to_device(T), total=total)
        kc.count_binary_correct(kc.to_device(Z), kc.to_device(T), total=total)
        assert int(kc.to_host(total)[0]) == 2 * expected


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_layer_kernels_on_column_slices(dtype):
    """A Concatenate's producers write into and read from column slices of its buffers."""
    rng = rng_for("cuda-slices", np.dtype(dtype).str)
    act = ACT_CODES[1]
    for batch, fin, fout in SHAPES:
        A_host = randn(rng, (batch, fin + 5), dtype)
        W, b = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
        out_host = randn(rng, (batch, fout + 4), dtype)
        A_d, out_d = kc.to_device(A_host), kc.to_device(out_host)
        kc.linear_forward(A_d[:, 2 : 2 + fin], kc.to_device(W), kc.to_device(b), act, out_d[:, 1 : 1 + fout])
        want = np.empty((batch, fout), dtype)
        ref.linear_forward(A_host[:, 2 : 2 + fin], W, b, act, want)
        got = kc.to_host(out_d)
        assert_close(got[:, 1 : 1 + fout], want, dtype, scale=dot_scale(A_host[:, 2 : 2 + fin], W.T) + 3)
        np.testing.assert_array_equal(got[:, 0], out_host[:, 0])
        np.testing.assert_array_equal(got[:, 1 + fout :], out_host[:, 1 + fout :])
        # delta (a column view) back through W, accumulated into a whole buffer
        dA = kc.to_device(out_host)
        before = randn(rng, (batch, fin), dtype)
        prev_d = kc.to_device(before)
        kc.delta_backward(dA[:, 1 : 1 + fout], kc.to_device(W), kc.to_device(A_host[:, :fin].copy()),
                          act, prev_d, True)
        want = before.copy()
        ref.delta_backward(out_host[:, 1 : 1 + fout], W, A_host[:, :fin], act, want, True)
        assert_close(kc.to_host(prev_d), want, dtype, scale=dot_scale(out_host, np.abs(W).sum() * np.ones((fout + 4, 1))) + 3)
