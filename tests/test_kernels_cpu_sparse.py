"""The Poisson loss and the sparse first-layer kernels: CPU against the NumPy reference,
on odd shapes (1, primes), with SciPy's sparse products as a second, independent oracle."""

import numpy as np
import pytest

from fastmlp.kernels import codes, cpu
from fastmlp.kernels import reference as ref
from helpers import assert_close, rng_for

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
ACTS = sorted(codes.ACTIVATIONS.values())
BACKENDS = [pytest.param(cpu, id="cpu"), pytest.param(ref, id="reference")]


# ---------------------------------------------------------------------------------------
# poisson


# ---------------------------------------------------------------------------------------
# sparse first layer


def close(actual, expected, dtype, scale=1.0):
    """assert_close with this file's float32 tolerance (sums of exp() lose a little more)."""
    assert_close(actual, expected, dtype, scale, rtol=RTOL[np.dtype(dtype)])


def random_csr(rng, n_rows, n_cols, density, dtype, duplicates=False):
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng, dtype=np.float64)
    X = X.astype(dtype)
    data, indices, indptr = X.data, X.indices, X.indptr
    if duplicates and X.nnz:  # an explicit duplicate entry in row 0 (adds up, as in SciPy)
        coo = X.tocoo()
        r = np.r_[coo.row, coo.row[:1]]
        c = np.r_[coo.col, coo.col[:1]]
        d = np.r_[coo.data, coo.data[:1]]
        order = np.argsort(r, kind="stable")
        data, indices = d[order].astype(dtype), c[order].astype(np.int32)
        indptr = np.r_[0, np.cumsum(np.bincount(r, minlength=n_rows))].astype(np.int32)
        X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
    return X, data, indices, indptr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,n_in,n_out", [(1, 1, 1), (1, 13, 7), (7, 1, 3), (13, 31, 5), (37, 101, 17)])
@pytest.mark.parametrize("act", ACTS)
def test_sparse_linear_forward(dtype, B, n_in, n_out, act):
    rng = rng_for("slf", dtype, B, n_in, n_out, act)
    X, data, indices, indptr = random_csr(rng, B, n_in, 0.3, dtype, duplicates=act == 0)
    W = rng.normal(0, 1, (n_out, n_in)).astype(dtype)
    b = rng.normal(0, 1, n_out).astype(dtype)
    out_ref = np.full((B, n_out), np.nan, dtype)
    out_cpu = np.full((B, n_out), np.nan, dtype)
    ref.sparse_linear_forward(data, indices, indptr, W, b, act, out_ref)
    cpu.sparse_linear_forward(data, indices, indptr, W, b, act, out_cpu)
    scale = (abs(X) @ np.abs(W.T)).max() + np.abs(b).max() if X.nnz else 1.0
    close(out_cpu, out_ref, dtype, scale)
    dense_ref = np.full((B, n_out), np.nan, dtype)
    ref.linear_forward(X.toarray(), W, b, act, dense_ref)  # the dense kernel as oracle
    close(out_ref, dense_ref, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,n_in,n_out", [(1, 1, 1), (1, 13, 7), (7, 1, 3), (13, 31, 5), (37, 101, 17)])
def test_sparse_weight_grad(dtype, B, n_in, n_out):
    rng = rng_for("swg", dtype, B, n_in, n_out)
    X, data, indices, indptr = random_csr(rng, B, n_in, 0.3, dtype, duplicates=True)
    delta = rng.normal(0, 1, (B, n_out)).astype(dtype)
    outs = {}
    for name, k in (("ref", ref), ("cpu", cpu)):
        dW = np.full((n_out, n_in), np.nan, dtype)
        db = np.full(n_out, np.nan, dtype)
        k.sparse_weight_grad(delta, data, indices, indptr, dW, db)
        outs[name] = dW, db
    expected = np.asarray((X.T @ delta).T, np.float64)
    scale = (np.abs(delta.T) @ abs(X)).max() if X.nnz else 1.0
    for dW, db in outs.values():
        close(dW, expected, dtype, scale)
        close(db, delta.astype(np.float64).sum(axis=0), dtype, np.abs(delta).sum(axis=0).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_csr_rows_and_offset_indptr(backend, index_dtype):
    rng = rng_for("gather", index_dtype)
    X, data, indices, indptr = random_csr(rng, 29, 11, 0.4, np.float64)
    indices, indptr = indices.astype(index_dtype), indptr.astype(index_dtype)
    idx = rng.permutation(29)[:13]
    cap = X.nnz
    od, oi, op = np.full(cap, np.nan), np.full(cap, -1, index_dtype), np.full(14, -1, index_dtype)
    nnz = backend.gather_csr_rows(data, indices, indptr, idx, od, oi, op)
    assert nnz == op[-1] == X[idx].nnz
    dense = np.full((13, 11), np.nan)
    backend.csr_to_dense(od, oi, op, dense)
    np.testing.assert_array_equal(dense, X[idx].toarray())
    # a run of rows passes as a slice of indptr (no copy, indptr[0] != 0)
    dense = np.full((5, 11), np.nan)
    backend.csr_to_dense(data, indices, indptr[7:13], dense)
    np.testing.assert_array_equal(dense, X[7:12].toarray())
