"""Data movement and metric kernels of every backend against the NumPy reference:
gather_rows, count_correct, count_binary_correct and regression_sums."""

import numpy as np
import pytest

from helpers import (BATCHES, EVERY_BATCH, EVERY_DTYPE, FEATURES, assert_close, check_no_return,
                     randn, rng_for)


@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32], ids=["i64", "i32"])
@pytest.mark.parametrize(
    "src_dtype, out_dtype",
    [(np.float32, np.float32), (np.float64, np.float64), (np.uint8, np.float32),
     (np.uint8, np.float64), (np.float64, np.float32), (np.int64, np.int64)],
    ids=["f32", "f64", "u8->f32", "u8->f64", "f64->f32", "i64"],
)
def test_gather_rows(backend, src_dtype, out_dtype, idx_dtype):
    rng = rng_for("gather", np.dtype(src_dtype).str, np.dtype(out_dtype).str,
                  np.dtype(idx_dtype).str)
    n = 40
    for features in FEATURES:
        if np.dtype(src_dtype).kind == "f":
            X = randn(rng, (n, features), src_dtype, scale=100.0)
        else:
            X = rng.integers(0, 256, size=(n, features)).astype(src_dtype)
        for batch in BATCHES:
            idx = rng.integers(0, n, size=batch).astype(idx_dtype)
            idx[0] = n - 1  # the last row, and (batch > 1) a repeated index and row 0
            if batch > 1:
                idx[1], idx[-1] = 0, idx[0]
            out = np.full((batch, features), 7, out_dtype)
            # float outputs are NaN-filled first; integer ones keep the 7s (no NaN to use)
            is_float = out.dtype.kind == "f"
            r, ra, c, ca = backend.run("gather_rows", [X, idx, out],
                                       out=(2,) if is_float else (),
                                       inout=() if is_float else (2,))
            check_no_return("gather_rows", r, c)
            np.testing.assert_array_equal(ca[2], ra[2])
            np.testing.assert_array_equal(ca[2], X[idx].astype(out_dtype))


@pytest.mark.parametrize("outputs, label_dtype", [
    ("multiclass", np.int64), ("multiclass", np.int32), ("multiclass", np.float64),
    ("one_output", np.int64), ("one_output", np.float32), ("one_output", np.float64),
], ids=["i64", "i32", "f64", "1-i64", "1-f32", "1-f64"])
@EVERY_BATCH
@EVERY_DTYPE
def test_count_correct(backend, dtype, batch, outputs, label_dtype):
    """Multi-class logits (K >= 2: the first maximum wins), and one output (z > 0 is class 1)."""
    seed_name = "count_correct" if outputs == "multiclass" else "count_correct1"
    rng = rng_for(seed_name, batch, np.dtype(dtype).itemsize, np.dtype(label_dtype).str)
    if outputs == "one_output":
        Z = randn(rng, (batch, 1), dtype)
        Z[::3] = 0.0  # z == 0 predicts class 0
        y = rng.integers(0, 2, size=batch).astype(label_dtype)
        r, _, c, _ = backend.run("count_correct", [Z, y])
        assert isinstance(c, (int, np.integer))
        assert c == r == int(((Z[:, 0] > 0) == (y == 1)).sum())
        return
    for k in FEATURES[1:] + (2,):
        # small integer logits: ties are common and must go to the first maximum
        Z = rng.integers(-2, 3, size=(batch, k)).astype(dtype)
        y = rng.integers(0, k, size=batch)
        y[: batch // 2] = Z[: batch // 2].argmax(axis=1)  # about half right
        y = y.astype(label_dtype)
        r, _, c, _ = backend.run("count_correct", [Z, y])
        assert isinstance(c, (int, np.integer))
        assert c == r, f"count_correct B={batch} K={k}"


def test_count_correct_known_values(backend):
    Z = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 3.0]])
    y = np.array([1, 0, 1, 0])  # right, right, tie -> class 0 (wrong), wrong
    Z1 = np.array([[0.5], [-0.5], [0.0], [2.0]])
    y1 = np.array([1.0, 0.0, 1.0, 0.0])  # right, right, wrong (0 -> class 0), wrong
    assert backend.run("count_correct", [Z, y])[2] == 2
    assert backend.run("count_correct", [Z1, y1])[2] == 2


@EVERY_BATCH
@EVERY_DTYPE
def test_count_binary_correct(backend, dtype, batch):
    rng = rng_for("binary_correct", batch, np.dtype(dtype).itemsize)
    for k in (1, 5, 17):
        Z = randn(rng, (batch, k), dtype)
        T = rng.integers(0, 2, (batch, k)).astype(dtype)
        r, _, c, _ = backend.run("count_binary_correct", [Z, T])
        assert c == r == int(((Z > 0) == (T > 0.5)).sum())


def test_count_binary_correct_known_values(backend):
    Z = np.array([[1.0, -1.0, 0.0], [-2.0, 3.0, 0.5]])
    T = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # row 0: right, right, right (0 is not > 0); row 1: wrong, right, right
    assert backend.run("count_binary_correct", [Z, T])[2] == 5


@pytest.mark.parametrize("target_shape", ["2d", "1d"])
@EVERY_BATCH
@EVERY_DTYPE
def test_regression_sums(backend, dtype, batch, target_shape):
    """abs_err, sq_err += per-output sums of |Z - T|, (Z - T)^2, over two calls."""
    if target_shape == "1d" and backend.name == "cpu":
        pytest.skip("the CPU kernel takes T shaped like Z (the model passes 2-D targets)")
    rng = rng_for("regression_sums", batch, target_shape, np.dtype(dtype).str)
    for k in FEATURES if target_shape == "2d" else (1,):
        abs_err, sq_err = np.full(k, 0.5), np.full(k, 0.25)  # accumulates onto what is there
        expected_abs, expected_sq = abs_err.copy(), sq_err.copy()
        for _ in range(2):
            Z = randn(rng, (batch, k), dtype)
            T = randn(rng, (batch,) if target_shape == "1d" else (batch, k), dtype)
            r, ra, c, ca = backend.run("regression_sums", [Z, T, abs_err, sq_err], inout=(2, 3))
            check_no_return("regression_sums", r, c)
            assert_close(ca[2], ra[2], dtype, what=f"abs {(batch, k)}")
            assert_close(ca[3], ra[3], dtype, what=f"sq {(batch, k)}")
            D = Z.astype(np.float64) - T.reshape(batch, -1)
            expected_abs += np.abs(D).sum(0)
            expected_sq += (D * D).sum(0)
            np.testing.assert_allclose(ra[2], expected_abs, rtol=1e-5 if dtype == np.float32 else 1e-12)
            np.testing.assert_allclose(ra[3], expected_sq, rtol=1e-5 if dtype == np.float32 else 1e-12)
            abs_err, sq_err = ca[2], ca[3]
