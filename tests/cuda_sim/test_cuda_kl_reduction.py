"""softmax_kl_divergence on the CUDA backend (under the simulator) against the reference, with
and without ``total=``; a reduction="sum" model step for step as on the CPU."""

import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import cuda as kcuda
from fastmlp.kernels import reference as kref


def _probs(B, K, seed):
    r = np.random.default_rng(seed)
    P = r.random((B, K)) ** 2
    P[r.random((B, K)) < 0.2] = 0
    P[np.arange(B), r.integers(0, K, B)] += 0.1
    return P / P.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("B,K,weighted", [(1, 2, False), (19, 3, True), (40, 5, False)])
def test_kl_kernel_matches_reference(B, K, weighted):
    r = np.random.default_rng(B)
    Z = (r.normal(size=(B, K)) * 2).astype(np.float32)
    T = _probs(B, K, K).astype(np.float32)
    w = (r.random(B) + 0.5).astype(np.float32) if weighted else None
    dZ_ref = np.empty_like(Z)
    want = kref.softmax_kl_divergence(Z, T, dZ_ref, w)
    dZ = kcuda.zeros(Z.shape, np.float32)
    wd = None if w is None else kcuda.to_device(w)
    got = kcuda.softmax_kl_divergence(kcuda.to_device(Z), kcuda.to_device(T), dZ, wd)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(kcuda.to_host(dZ), dZ_ref, rtol=1e-4, atol=1e-6)
    total = kcuda.zeros(1, np.float64)
    kcuda.write(total, np.array([1.0]))
    assert kcuda.softmax_kl_divergence(kcuda.to_device(Z), kcuda.to_device(T), dZ, wd, total=total) is None
    assert kcuda.to_host(total)[0] == pytest.approx(1.0 + B * want, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("loss", ["kl_divergence", "mse"])
def test_sum_reduction_model_same_steps_as_the_cpu(loss):
    r = np.random.default_rng(0)
    X = r.normal(size=(12, 4)).astype(np.float32)
    y = _probs(12, 3, 1).astype(np.float32) if loss == "kl_divergence" else r.normal(size=(12, 3)).astype(np.float32)
    models = [fastmlp.MLP([4, 5, 3], loss=loss, reduction="sum", device=d, seed=0,
                          optimizer=fastmlp.SGD(lr=0.005)) for d in ("cuda", "cpu")]
    models[0].set_weights(models[1].get_weights())
    for _ in range(3):
        assert models[0].train_step(X, y) == pytest.approx(models[1].train_step(X, y), rel=1e-4)
    h = [m.fit(X, y, epochs=2, batch_size=5, verbose=0, shuffle=False).history["loss"] for m in models]
    np.testing.assert_allclose(h[0], h[1], rtol=1e-4)
