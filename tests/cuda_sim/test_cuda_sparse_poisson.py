"""The CUDA poisson loss summed on the device (``total=``; the kernel against the reference
on every backend: tests/conformance/test_backend_losses.py, the sparse kernels:
test_backend_sparse.py), and a model trained on sparse input and with loss="poisson" on the
simulated device against the same model on the CPU."""

import numpy as np
import pytest

from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref
from helpers import DTYPES, assert_close, rng_for

sp = pytest.importorskip("scipy.sparse")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (13, 1)])
@pytest.mark.parametrize("weighted", [False, True])
def test_poisson(dtype, shape, weighted):
    rng = rng_for("poisson", dtype, shape, weighted)
    Z = rng.normal(0, 2, shape).astype(dtype)
    T = rng.poisson(2.0, shape).astype(dtype)
    w = rng.uniform(0, 2, shape[0]).astype(dtype) if weighted else None
    dZ = np.empty(shape, dtype)
    loss = ref.poisson(Z, T, dZ, w)
    dZ_d = kc.to_device(np.full(shape, np.nan, dtype))
    args = (kc.to_device(Z), kc.to_device(T), dZ_d, None if w is None else kc.to_device(w))
    got = kc.poisson(*args)
    scale = float(np.exp(Z.astype(float)).max() + T.max() * np.abs(Z).max())
    assert_close(got, loss, dtype, scale)
    assert_close(kc.to_host(dZ_d), dZ, dtype, float(np.abs(dZ).max()))
    total = kc.zeros(1, np.float64)
    kc.poisson(*args, total=total)
    assert_close(kc.to_host(total)[0], loss * shape[0], dtype, scale * shape[0])


def test_model_on_sparse_input_and_poisson_matches_cpu():
    import fastmlp as fm

    rng = rng_for("model")
    X = sp.random(24, 9, density=0.3, format="csr", random_state=1)
    y = rng.integers(0, 3, 24)
    counts = rng.poisson(2.0, 24)
    for loss, target, n_out in (("cross_entropy", y, 3), ("poisson", counts, 1)):
        models = [fm.MLP([9, 5, n_out], loss=loss, optimizer=fm.SGD(lr=0.05), dtype="float64",
                         device=device, seed=0) for device in ("cuda", "cpu")]
        hist = [m.fit(X, target, epochs=2, batch_size=8, shuffle=False, verbose=0) for m in models]
        np.testing.assert_allclose(hist[0].history["loss"], hist[1].history["loss"], rtol=1e-10)
        for a, b in zip(models[0].get_weights(), models[1].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(models[0].predict(X), models[1].predict(X), rtol=1e-10)
