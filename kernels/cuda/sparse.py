"""Sparse input on the device: the first Dense layer multiplies CSR rows directly.

A CSR batch is three device arrays (``data``, ``indices``, ``indptr``; ``indptr`` has B + 1
entries and may start at any offset). No atomics, so every result is the same bit for bit
on every run:

- ``sparse_linear_forward``: one thread per (row, output), looping over the row's entries:
  ``A_out[i, o] = f(b[o] + sum_k data[k] W[o, indices[k]])``.
- ``sparse_weight_grad``: one thread per output o owns row o of dW: it zeroes the row,
  then walks the batch's entries in order adding ``delta[i, o] * data[k]`` into ``dW[o, indices[k]]`` and sums ``db[o]``.
  Parallel over the outputs only (a layer has tens to hundreds): the batch's entries are
  few, and this keeps the order of the additions fixed.
- ``gather_csr_rows``: one thread computes the batch's row offsets (a prefix sum over B
  rows), then one thread per row copies its entries. Returns None without waiting (the
  host backends return the entry count; nothing on the device path needs it).
- ``csr_to_dense``: one thread per row zeroes its output row and adds its entries.
"""

import functools

import numpy as np

from .device import THREADS, _blocks, _kernel, _launch, activations, cuda


def _dt(a):
    return np.dtype(a.dtype).type


@functools.lru_cache(maxsize=None)
def _forward_kernel(dt, act):
    f = activations(dt).f_of[act]

    def forward(data, indices, indptr, W, b, A_out):
        B, n_out = A_out.shape
        for idx in range(cuda.grid(1), B * n_out, cuda.gridsize(1)):
            i = idx // n_out
            o = idx - i * n_out
            acc = b[o]
            for k in range(indptr[i], indptr[i + 1]):
                acc += data[k] * W[o, indices[k]]
            A_out[i, o] = f(acc)

    return cuda.jit(forward)


def sparse_linear_forward(data, indices, indptr, W, b, act, A_out):
    """A_out = f(X @ W.T + b) for the CSR rows X (one launch)."""
    _launch(_forward_kernel(_dt(A_out), int(act)), _blocks(A_out.size), THREADS,
            data, indices, indptr, W, b, A_out)


@functools.lru_cache(maxsize=None)
def _weight_grad_kernel(dt):
    ZERO = dt(0)

    def weight_grad(delta, data, indices, indptr, dW, db):
        n_out, n_in = dW.shape
        B = delta.shape[0]
        o = cuda.grid(1)
        if o >= n_out:
            return
        for j in range(n_in):
            dW[o, j] = ZERO
        total = ZERO
        for i in range(B):
            d = delta[i, o]
            total += d
            for k in range(indptr[i], indptr[i + 1]):
                dW[o, indices[k]] += d * data[k]
        db[o] = total

    return cuda.jit(weight_grad)


def sparse_weight_grad(delta, data, indices, indptr, dW, db):
    """dW = delta.T @ X for the CSR rows X, db = sum of delta over the batch (one launch)."""
    n_out = dW.shape[0]
    threads = min(THREADS, n_out)
    _launch(_weight_grad_kernel(_dt(dW)), _blocks(n_out, threads, cap=1 << 30), threads,
            delta, data, indices, indptr, dW, db)


@_kernel
def _k_row_offsets(indptr, idx, out_indptr):
    if cuda.grid(1) == 0:
        out_indptr[0] = 0
        for i in range(idx.shape[0]):
            r = idx[i]
            out_indptr[i + 1] = out_indptr[i] + indptr[r + 1] - indptr[r]


@_kernel
def _k_copy_rows(data, indices, indptr, idx, out_data, out_indices, out_indptr):
    for i in range(cuda.grid(1), idx.shape[0], cuda.gridsize(1)):
        r = idx[i]
        start = indptr[r]
        at = out_indptr[i]
        for k in range(indptr[r + 1] - start):
            out_data[at + k] = data[start + k]
            out_indices[at + k] = indices[start + k]


def gather_csr_rows(data, indices, indptr, idx, out_data, out_indices, out_indptr):
    """Rows idx of a CSR matrix as a CSR batch in the out_ arrays (two launches, no wait;
    returns None: the entry count is out_indptr[-1], on the device)."""
    _launch(_k_row_offsets, 1, 1, indptr, idx, out_indptr)
    _launch(_k_copy_rows, _blocks(idx.shape[0]), THREADS, data, indices, indptr, idx,
            out_data, out_indices, out_indptr)


@functools.lru_cache(maxsize=None)
def _to_dense_kernel(dt):
    ZERO = dt(0)

    def to_dense(data, indices, indptr, out):
        B, m = out.shape
        for i in range(cuda.grid(1), B, cuda.gridsize(1)):
            for j in range(m):
                out[i, j] = ZERO
            for k in range(indptr[i], indptr[i + 1]):
                out[i, indices[k]] += data[k]

    return cuda.jit(to_dense)


def csr_to_dense(data, indices, indptr, out):
    """out = the CSR rows as a dense (B, n_cols) array (one launch)."""
    _launch(_to_dense_kernel(_dt(out)), _blocks(out.shape[0]), THREADS, data, indices, indptr, out)
