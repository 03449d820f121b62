"""The kernels a graph model adds: the elementwise sum (Add's forward pass, deltas summed
into a buffer that feeds several consumers) and the multi-label count. The accumulating
GEMMs (``delta_backward`` / ``weight_grad`` with ``accumulate=True``) are in ``gemm``."""

import numpy as np

from .device import (MAX_REDUCE_BLOCKS, THREADS, _blocks, _launch, _sum_partials,
                     count_kernel, elementwise)


def _add(X, Y, i, j):
    return X[i, j] + Y[i, j]


def add(X, Y, out):
    """out = X + Y, elementwise (out may be X or Y; any of them may be a column slice)."""
    _launch(elementwise(_add, "add"), _blocks(out.size), THREADS, X, Y, out)


def _label_is_right(Z, T, k):  # the element k of the flattened (B, K) labels
    m = Z.shape[1]
    i = k // m
    j = k - i * m
    return (Z[i, j] > 0) == (T[i, j] > 0.5)


def count_binary_correct(Z, T, total=None):
    """How many of the B x K labels are right, (Z > 0) == (T > 0.5). Returns an int
    (synchronises), or adds the count to the device scalar ``total[0]`` and returns None."""
    grid = _blocks(Z.size, cap=MAX_REDUCE_BLOCKS)
    got = _sum_partials(count_kernel(_label_is_right, "count_binary_correct"), grid,
                        (Z, T, Z.size), np.int64, total)
    return None if total is not None else int(got)
