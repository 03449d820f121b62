"""The kernels a graph model adds (add, accumulating delta_backward / weight_grad, the
multi-label count) and the layer kernels on column slices of a wider buffer (what a
Concatenate hands its producers), CPU against the reference on awkward shapes."""

import numpy as np
import pytest

from fastmlp.kernels import cpu
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, ACT_IDS, BATCHES, DTYPE_IDS, DTYPES, FEATURE_PAIRS, activation_of,
                     assert_close, call_both, check_no_return, dot_scale, randn, rng_for)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_add(dtype, batch):
    rng = rng_for("add", batch, np.dtype(dtype).itemsize)
    for _, n in FEATURE_PAIRS:
        X, Y = randn(rng, (batch, n), dtype), randn(rng, (batch, n), dtype)
        out = np.empty((batch, n), dtype)
        r, ra, c, ca = call_both("add", [X, Y, out], out=(2,))
        check_no_return("add", r, c)
        np.testing.assert_array_equal(ra[2], X + Y)  # one rounding: exact in both
        np.testing.assert_array_equal(ca[2], ra[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_add_in_place(dtype):
    """out may be one of the inputs (deltas summed into a fan-out buffer)."""
    rng = rng_for("add-in-place", np.dtype(dtype).itemsize)
    for k in (ref, cpu):
        X, Y = randn(rng, (7, 17), dtype), randn(rng, (7, 17), dtype)
        expected = X + Y
        k.add(X, Y, X)
        np.testing.assert_array_equal(X, expected)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_delta_backward_accumulate(dtype, act, batch):
    """delta_prev = f'(D) * (delta_prev + delta @ W): GEMM with beta = 1, then f'."""
    rng = rng_for("delta_backward_acc", batch, act, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        delta = randn(rng, (batch, fout), dtype)
        W = randn(rng, (fout, fin), dtype)
        A_prev = activation_of(randn(rng, (batch, fin), dtype, scale=2.0), act)
        before = randn(rng, (batch, fin), dtype)
        r, ra, c, ca = call_both("delta_backward", [delta, W, A_prev, act, before, True],
                                 inout=(4,))
        check_no_return("delta_backward", r, c)
        scale = dot_scale(delta, W) + float(np.abs(before).max())
        d = np.empty_like(before)
        ref.delta_backward(delta, W, A_prev, act, d)  # without the accumulated part
        ref.activation_backward(A_prev, act, before_times := before.copy())
        assert_close(ra[4], d.astype(np.float64) + before_times, dtype, scale=scale,
                     what="reference accumulate = write + f' * what was there")
        assert_close(ca[4], ra[4], dtype, scale=scale,
                     what=f"delta_backward accumulate act={act} B={batch} in={fin} out={fout}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_weight_grad_accumulate(dtype, batch):
    rng = rng_for("weight_grad_acc", batch, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        delta = randn(rng, (batch, fout), dtype)
        A_prev = randn(rng, (batch, fin), dtype)
        dW0, db0 = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
        r, ra, c, ca = call_both("weight_grad", [delta, A_prev, dW0, db0, True], inout=(2, 3))
        check_no_return("weight_grad", r, c)
        assert_close(ra[2], dW0.astype(np.float64) + delta.T.astype(np.float64) @ A_prev, dtype,
                     scale=dot_scale(delta.T, A_prev) + float(np.abs(dW0).max()))
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(delta.T, A_prev) + float(np.abs(dW0).max()),
                     what=f"dW accumulate B={batch} in={fin} out={fout}")
        assert_close(ca[3], ra[3], dtype,
                     scale=float(np.abs(delta).sum(axis=0).max()) + float(np.abs(db0).max()),
                     what=f"db accumulate B={batch} out={fout}")


def _columns(rng, batch, width, dtype, left=3, right=2):
    """A (batch, width) column slice out of a wider random buffer."""
    buf = randn(rng, (batch, left + width + right), dtype)
    return buf, buf[:, left : left + width]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("act", [ACT_CODES[0], ACT_CODES[1], ACT_CODES[6]], ids=["identity", "relu", "gelu"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_layer_kernels_on_column_slices(dtype, act, batch):
    """linear_forward into a slice, reading a slice; delta_backward (write and accumulate)
    and weight_grad (write and accumulate) from slices: the same numbers as on whole arrays,
    and the columns outside the slice untouched."""
    rng = rng_for("slices", batch, act, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        _, A_in = _columns(rng, batch, fin, dtype)
        W, b = randn(rng, (fout, fin), dtype, scale=1 / np.sqrt(fin)), randn(rng, (fout,), dtype)
        for k in (cpu,):
            out_buf, out = _columns(rng, batch, fout, dtype)
            outside = out_buf.copy()
            k.linear_forward(A_in, W, b, act, out)
            expected = np.empty((batch, fout), dtype)
            ref.linear_forward(np.ascontiguousarray(A_in), W, b, act, expected)
            assert_close(out, expected, dtype, scale=dot_scale(A_in, W.T) + float(np.abs(b).max()))
            np.testing.assert_array_equal(out_buf[:, :3], outside[:, :3])
            np.testing.assert_array_equal(out_buf[:, 3 + fout :], outside[:, 3 + fout :])

            _, delta = _columns(rng, batch, fout, dtype)
            D = activation_of(randn(rng, (batch, fin), dtype), act)
            for accumulate in (False, True):
                got_buf, got = _columns(rng, batch, fin, dtype)
                want = np.ascontiguousarray(got)
                k.delta_backward(delta, W, D, act, got, accumulate)
                ref.delta_backward(np.ascontiguousarray(delta), W, D, act, want, accumulate)
                assert_close(got, want, dtype, scale=dot_scale(delta, W) + float(np.abs(want).max()))
                dW, db = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
                dW_ref, db_ref = dW.copy(), db.copy()
                k.weight_grad(delta, A_in, dW, db, accumulate)
                ref.weight_grad(np.ascontiguousarray(delta), np.ascontiguousarray(A_in), dW_ref,
                                db_ref, accumulate)
                assert_close(dW, dW_ref, dtype, scale=dot_scale(delta.T, A_in) + float(np.abs(dW_ref).max()))
                assert_close(db, db_ref, dtype, scale=float(np.abs(delta).sum(axis=0).max()) + 10)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_binary_correct(dtype, batch):
    rng = rng_for("binary_correct", batch, np.dtype(dtype).itemsize)
    for k in (1, 5, 17):
        Z = randn(rng, (batch, k), dtype)
        T = rng.integers(0, 2, (batch, k)).astype(dtype)
        expected = int(((Z > 0) == (T > 0.5)).sum())
        assert ref.count_binary_correct(Z, T) == expected
        assert cpu.count_binary_correct(Z, T) == expected


def test_count_binary_correct_known_values():
    Z = np.array([[1.0, -1.0, 0.0], [-2.0, 3.0, 0.5]])
    T = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # row 0: right, right, right (0 is not > 0); row 1: wrong, right, right
    assert ref.count_binary_correct(Z, T) == 5
    assert cpu.count_binary_correct(Z, T) == 5
