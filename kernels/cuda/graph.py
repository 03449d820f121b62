"""The kernels a graph model adds: the elementwise sum (Add's forward pass, deltas summed
into a buffer that feeds several consumers) and the multi-label count. The accumulating
GEMMs (``delta_backward`` / ``weight_grad`` with ``accumulate=True``) are in ``gemm``."""

import numpy as np

from .device import (MAX_REDUCE_BLOCKS, THREADS, _block_sum_to, _blocks, _kernel, _launch,
                     _sum_partials, cuda)


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
def _k_count_binary_correct(Z, T, partials):
    red = cuda.shared.array(THREADS, np.int64)
    t = cuda.threadIdx.x
    n, m = Z.shape
    c = 0
    for idx in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = idx // m
        j = idx - i * m
        if (Z[i, j] > 0) == (T[i, j] > 0.5):
            c += 1
    red[t] = c
    _block_sum_to(red, t, partials)


def count_binary_correct(Z, T, total=None):
    """How many of the B x K labels are right, (Z > 0) == (T > 0.5). Returns an int
    (synchronises), or adds the count to the device scalar ``total[0]`` and returns None."""
    grid = _blocks(Z.size, cap=MAX_REDUCE_BLOCKS)
    got = _sum_partials(_k_count_binary_correct, grid, (Z, T), np.int64, total)
    return None if total is not None else int(got)
