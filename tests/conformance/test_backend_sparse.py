"""The sparse first-layer kernels of every backend against the NumPy reference, on CSR
batches with sizes of 1 and odd sizes, an explicit duplicate entry (it adds up, as in SciPy)
and rows with no entries; SciPy's sparse products are a second, independent oracle.

How the comparison works: test_backend_dense.py. Tolerance rtol 1e-5 (float32) / 1e-12
(float64) relative to the scale of the terms of each output (|X| @ |W|.T, as for a dense
product).
"""

import numpy as np
import pytest

from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, ACT_IDS, EVERY_DTYPE, SIMULATED, assert_close, check_no_return,
                     rng_for)

sp = pytest.importorskip("scipy.sparse")

#: (batch, n_in, n_out)
SHAPES = ((1, 1, 1), (3, 7, 13), (13, 5, 3)) if SIMULATED else (
    (1, 1, 1), (1, 13, 7), (7, 1, 3), (13, 31, 5), (37, 101, 17))
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def random_csr(rng, n_rows, n_cols, density, dtype, duplicates=False):
    """A random SciPy CSR matrix and its (data, indices, indptr); with `duplicates`, one
    explicit duplicate entry in row 0. An empty matrix gets a data and indices array of one
    unused entry (a device array cannot be empty)."""
    X = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng, dtype=np.float64)
    X = X.astype(dtype)
    data, indices, indptr = X.data, X.indices, X.indptr
    if duplicates and X.nnz:
        coo = X.tocoo()
        r = np.r_[coo.row, coo.row[:1]]
        c = np.r_[coo.col, coo.col[:1]]
        d = np.r_[coo.data, coo.data[:1]]
        order = np.argsort(r, kind="stable")
        data, indices = d[order].astype(dtype), c[order].astype(np.int32)
        indptr = np.r_[0, np.cumsum(np.bincount(r, minlength=n_rows))].astype(np.int32)
        X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
    if not X.nnz:
        data, indices = np.zeros(1, dtype), np.zeros(1, np.int32)
    return X, data, indices, indptr


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@EVERY_DTYPE
def test_sparse_linear_forward(backend, dtype, shape, act):
    B, n_in, n_out = shape
    rng = rng_for("slf", dtype, B, n_in, n_out, act)
    X, data, indices, indptr = random_csr(rng, B, n_in, 0.3, dtype, duplicates=act == 0)
    W = rng.normal(0, 1, (n_out, n_in)).astype(dtype)
    b = rng.normal(0, 1, n_out).astype(dtype)
    r, ra, c, ca = backend.run("sparse_linear_forward",
                               [data, indices, indptr, W, b, act, np.empty((B, n_out), dtype)],
                               out=(6,))
    check_no_return("sparse_linear_forward", r, c)
    scale = float((abs(X) @ np.abs(W.T)).max(initial=0.0) + np.abs(b).max())
    assert_close(ca[6], ra[6], dtype, scale, what=f"sparse_linear_forward act={act} {shape}")
    dense = np.full((B, n_out), np.nan, dtype)
    ref.linear_forward(X.toarray(), W, b, act, dense)  # the dense kernel as oracle
    assert_close(ra[6], dense, dtype, scale, what="reference vs the dense kernel")


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@EVERY_DTYPE
def test_sparse_weight_grad(backend, dtype, shape):
    B, n_in, n_out = shape
    rng = rng_for("swg", dtype, B, n_in, n_out)
    X, data, indices, indptr = random_csr(rng, B, n_in, 0.3, dtype, duplicates=True)
    delta = rng.normal(0, 1, (B, n_out)).astype(dtype)
    r, ra, c, ca = backend.run("sparse_weight_grad",
                               [delta, data, indices, indptr, np.empty((n_out, n_in), dtype),
                                np.empty(n_out, dtype)], out=(4, 5))
    check_no_return("sparse_weight_grad", r, c)
    expected = np.asarray((X.T @ delta.astype(np.float64)).T)  # SciPy's product as oracle
    scale = float((np.abs(delta.T) @ abs(X)).max(initial=0.0))
    db_scale = float(np.abs(delta).sum(axis=0).max())
    for dW, db, who in ((ra[4], ra[5], "reference"), (ca[4], ca[5], backend.name)):
        assert_close(dW, expected, dtype, scale, what=f"dW {who} {shape}")
        assert_close(db, delta.astype(np.float64).sum(axis=0), dtype, db_scale,
                     what=f"db {who} {shape}")


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_csr_rows_and_csr_to_dense(backend, index_dtype):
    rng = rng_for("gather", index_dtype)
    X, data, indices, indptr = random_csr(rng, 29, 11, 0.4, np.float64)
    indices, indptr = indices.astype(index_dtype), indptr.astype(index_dtype)
    idx = rng.permutation(29)[:13]
    cap = X.nnz
    out = [backend.device(np.full(cap, np.nan)), backend.device(np.full(cap, -1, index_dtype)),
           backend.device(np.full(14, -1, index_dtype))]
    nnz = backend.gather_csr_rows(backend.device(data), backend.device(indices),
                                  backend.device(indptr), backend.device(idx), *out)
    # the host backends return the count, CUDA None (no wait): it is out_indptr[-1]
    assert nnz == (None if backend.on_device else X[idx].nnz)
    assert backend.host(out[2])[-1] == X[idx].nnz
    dense = backend.device(np.full((13, 11), np.nan))
    check_no_return("csr_to_dense", None, backend.csr_to_dense(*out, dense))
    np.testing.assert_array_equal(backend.host(dense), X[idx].toarray())
    # a run of rows passes as a slice of indptr (no copy, indptr[0] != 0)
    dense = backend.device(np.full((5, 11), np.nan))
    backend.csr_to_dense(backend.device(data), backend.device(indices),
                         backend.device(indptr)[7:13], dense)
    np.testing.assert_array_equal(backend.host(dense), X[7:12].toarray())
