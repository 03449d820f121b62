"""The buffers of a model's training step and forward passes (model._Network's)."""

from types import SimpleNamespace

import numpy as np


class _Buffers:
    """The arrays one training step (or one forward pass) works in, for up to `capacity` rows.

    The model makes its own arrays (``model._allocate_activations``: A, Z, delta and the
    layers' scratch for a Sequential stack; one set per node for a graph); the targets live
    here, in a 2-D buffer of `target_width` columns (for integer labels, width 1, ``T`` is
    its column). ``views(n)`` gives the first n rows of each, made once per n and kept:
    ``v.X`` (one array per model input), ``v.out`` and ``v.dout`` (the output and d loss /
    d output), ``v.D_out`` (what the output's f' is taken from), the targets, and the model's
    own views.
    """

    def __init__(self, model, capacity, target_width=0, target_dtype=None, weighted=False,
                 sparse=False):
        k, dtype = model._kernels, model.dtype
        self.model = model
        self.capacity = capacity
        self.training = target_width > 0
        self.weighted = weighted
        #: sparse input multiplied by the first layer directly: no dense input rows
        self.sparse = sparse and model._sparse_first_layer
        self.arrays = model._allocate_activations(capacity, self.training, self.sparse)
        if self.training:
            self.T2d = k.empty((capacity, target_width), target_dtype)
            self.labels2d = k.empty((capacity, 1), np.int64)
            self.w2d = k.empty((capacity, 1), dtype) if weighted else None
        self._views = {}

    def fits(self, n, target_width, target_dtype, weighted, sparse=False):
        return (self.capacity >= n and self.T2d.shape[1] == target_width
                and self.T2d.dtype == target_dtype and self.weighted == weighted
                and self.sparse == (sparse and self.model._sparse_first_layer))

    def views(self, n):
        if n in self._views:
            return self._views[n]
        v = SimpleNamespace(n=n)
        self.model._activation_views(self.arrays, n, v, self.training)
        if self.training:
            v.T2d = self.T2d[:n]
            v.T0 = v.T2d[:, 0]
            v.T = v.T0 if v.T2d.dtype == np.int64 else v.T2d
            v.labels2d = self.labels2d[:n]
            v.labels = v.labels2d[:, 0]
            v.w2d = None if self.w2d is None else self.w2d[:n]
            v.w = None if self.w2d is None else v.w2d[:, 0]
        self._views[n] = v
        return v
