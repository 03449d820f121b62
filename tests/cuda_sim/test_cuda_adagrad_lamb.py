"""The Adagrad and LAMB kernels of the CUDA backend against the NumPy reference, under the
simulator (sizes 1, 7, 37: one block, several blocks, a tensor longer than a block)."""

import numpy as np
import pytest

from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("size", [1, 7, 37])
def test_adagrad_update(dtype, size):
    rng = np.random.default_rng(size)
    p, acc = rng.normal(size=size).astype(dtype), np.full(size, 0.1, dtype)
    dp, dacc = kc.to_device(p), kc.to_device(acc)
    for step in range(1, 4):
        g = rng.normal(size=size).astype(dtype)
        lr = 0.1 / (1 + (step - 1) * 0.01)
        ref.adagrad_update(p, g, acc, lr, 1e-3, 1e-10)
        assert kc.adagrad_update(dp, kc.to_device(g), dacc, lr, 1e-3, 1e-10) is None
        np.testing.assert_allclose(kc.to_host(dp), p, **TOL[dtype])
        np.testing.assert_allclose(kc.to_host(dacc), acc, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("size, segments", [(1, [0, 1]), (7, [0, 3, 3, 7]), (37, [0, 30, 35, 37])])
def test_lamb_update(dtype, size, segments):
    rng = np.random.default_rng(size)
    p = rng.normal(size=size).astype(dtype)
    m, v = np.zeros(size, dtype), np.zeros(size, dtype)
    dp, dm, dv = kc.to_device(p), kc.to_device(m), kc.to_device(v)
    segments = np.array(segments, np.int64)
    for step in range(1, 4):
        g = rng.normal(size=size).astype(dtype)
        dg = kc.to_device(g)
        ref.lamb_update(p, g, m, v, step, 0.01, 0.9, 0.999, 1e-6, 0.01, segments)
        kc.lamb_update(dp, dg, dm, dv, step, 0.01, 0.9, 0.999, 1e-6, 0.01, segments)
        for got, want in ((dp, p), (dm, m), (dv, v), (dg, g)):
            np.testing.assert_allclose(kc.to_host(got), want, **TOL[dtype])
