"""The kernels a graph model adds: the elementwise sum (Add's forward pass, deltas summed
into a buffer that feeds several consumers) and the multi-label count. The accumulating
GEMMs (``delta_backward`` / ``weight_grad`` with ``accumulate=True``) are in ``gemm``."""

import numpy as np

from .device import (MAX_REDUCE_BLOCKS, THREADS, _blocks, _kernel, _launch, _nb_int64,
                     _read_scalar, _tree_sum, _zeroed_scalar, cuda)


@_kernel
def _k_add(X, Y, out):
    n, m = out.shape
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        out[i, j] = X[i, j] + Y[i, j]


def add(X, Y, out):
    """out = X + Y, elementwise (out may be X or Y; any of them may be a column slice)."""
    _launch(_k_add, _blocks(out.size), THREADS, X, Y, out)


@_kernel
def _k_count_binary_correct(Z, T, total):
    red = cuda.shared.array(THREADS, _nb_int64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    c = 0
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        if (Z[i, j] > 0) == (T[i, j] > 0.5):
            c += 1
    red[t] = c
    cuda.syncthreads()
    _tree_sum(red, t, THREADS)
    if t == 0:
        cuda.atomic.add(total, 0, red[0])


def count_binary_correct(Z, T, total=None):
    """How many of the B x K labels are right, (Z > 0) == (T > 0.5). Returns an int
    (synchronises), or adds the count to the device scalar ``total[0]`` and returns None."""
    grid = _blocks(Z.size, cap=MAX_REDUCE_BLOCKS)
    if total is not None:
        _launch(_k_count_binary_correct, grid, THREADS, Z, T, total)
        return None
    scratch = _zeroed_scalar(np.int64)
    _launch(_k_count_binary_correct, grid, THREADS, Z, T, scratch)
    return int(_read_scalar(scratch))
