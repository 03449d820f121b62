"""Sparse input (SciPy's sparse matrices and arrays: CSR, CSC, COO...) for fit, train_step,
predict*, evaluate and the scikit-learn estimators.

The matrix is kept in CSR form (``data``, ``indices``, ``indptr``), never densified as a
whole: each batch's rows are gathered into small CSR buffers (``gather_csr_rows``) and the
first Dense layer multiplies them directly (``sparse_linear_forward``: X @ W.T + b, and
``sparse_weight_grad``: delta.T @ X), so memory grows with the number of stored entries,
not with n_samples * n_features. A model whose first layer is not a Dense layer, or whose
stack holds Dropout/BatchNorm, gets each batch densified (``csr_to_dense``: batch rows only).
A contiguous run of rows (predict, evaluate) is passed as views of its entries, without a
copy.

SciPy is needed only when such input is passed: ``import fastmlp`` does not import it.
"""

import sys

import numpy as np

__all__ = ["issparse", "check_sparse_X", "SparseRows"]


def issparse(X):
    """True for a SciPy sparse matrix or array (without importing SciPy: if scipy.sparse
    was never imported, X cannot be one)."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(X)


def check_sparse_X(X, n_features=None, name="X", dtype=None):
    """A SciPy sparse X as a checked CSR matrix with `dtype` data (copied only where the
    format or the dtype differ); the same checks and messages as dense input."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got a sparse array of shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int, uint or float); got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {X.shape}, needs at least one sample")
    from ._validation import check_features, check_finite

    check_features(X.shape, n_features, name)

    X = X.tocsr()
    def where(at):  # a stored value's row and column in X, not its position in X.data
        row = int(np.searchsorted(X.indptr, at[0], side="right")) - 1
        return f"at row {row}, column {int(X.indices[at[0]])}"

    check_finite(X.data, f"{name} (its stored values)", dtype, where)
    dtype = np.dtype(dtype or np.float64)
    if X.data.dtype != dtype:
        X = X.astype(dtype)
    if not (X.data.flags.c_contiguous and X.indices.flags.c_contiguous and X.indptr.flags.c_contiguous):
        X = X.copy()
    return X


class SparseRows:
    """A CSR matrix on a backend, and the CSR buffers of one batch of its rows."""

    def __init__(self, k, X, batch_size):
        self.k = k
        self.data, self.indices, self.indptr = (k.asarray(a) for a in (X.data, X.indices, X.indptr))
        lengths = np.diff(X.indptr)
        # the most entries any batch of batch_size rows can hold
        cap = int(np.sort(lengths)[-batch_size:].sum()) if lengths.size else 0
        cap = max(cap, 1)
        self.batch_data = k.empty(cap, X.data.dtype)
        self.batch_indices = k.empty(cap, X.indices.dtype)
        self.batch_indptr = k.empty(batch_size + 1, X.indptr.dtype)

    def gather(self, idx):
        """The rows idx (a backend index array) as a CSR triple of backend arrays."""
        n = idx.shape[0]
        indptr = self.batch_indptr[: n + 1]
        self.k.gather_csr_rows(self.data, self.indices, self.indptr, idx, self.batch_data,
                               self.batch_indices, indptr)
        return self.batch_data, self.batch_indices, indptr


def csr_run(k, X, start, stop):
    """Rows start:stop of the CSR matrix X as a CSR triple on backend k: views of its
    entries (no copy on the host backends; only these rows' entries go to a GPU)."""
    lo, hi = int(X.indptr[start]), int(X.indptr[stop])
    return (k.asarray(X.data[lo:hi]), k.asarray(X.indices[lo:hi]),
            k.asarray(X.indptr[start : stop + 1] - X.indptr.dtype.type(lo)))
