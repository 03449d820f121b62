"""trainable=False on the CUDA backend (under the simulator): the optimizer kernels run over
the trainable ranges of the device arrays, as on the CPU; compute_gradients and sub-models."""

import numpy as np
import pytest

import fastmlp

rng = np.random.default_rng(0)
X = rng.normal(size=(12, 5)).astype(np.float32)
y = rng.integers(0, 3, 12)


@pytest.mark.parametrize("opt", [lambda: fastmlp.SGD(lr=0.1, momentum=0.9), lambda: fastmlp.Adam(lr=0.01),
                                 lambda: fastmlp.LAMB(lr=0.01)], ids=["sgd", "adam", "lamb"])
def test_frozen_layer_same_steps_as_the_cpu(opt):
    models = [fastmlp.MLP([5, 6, 4, 3], device=d, seed=0, optimizer=opt()) for d in ("cuda", "cpu")]
    models[0].set_weights(models[1].get_weights())
    for m in models:
        m.freeze("hidden2")
    frozen = models[0].get_layer("hidden2").get_weights()
    losses = [[m.train_step(X, y) for _ in range(3)] for m in models]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(frozen, models[0].get_layer("hidden2").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_compute_gradients_and_predict_output_on_cuda():
    gpu, cpu = (fastmlp.MLP([5, 6, 3], device=d, seed=0) for d in ("cuda", "cpu"))
    gpu.set_weights(cpu.get_weights())
    lg, gg = gpu.compute_gradients(X, y)
    lc, gc = cpu.compute_gradients(X, y)
    assert lg == pytest.approx(lc, rel=1e-5)
    np.testing.assert_allclose(gg["hidden1"]["dW"], gc["hidden1"]["dW"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gpu.predict(X, output="hidden1"), cpu.predict(X, output="hidden1"),
                               rtol=1e-5, atol=1e-6)


def test_bias_free_dense_same_steps_as_the_cpu():
    models = [fastmlp.Sequential([fastmlp.Dense(5, 6, "tanh", use_bias=False), fastmlp.Dense(6, 3, use_bias=False)],
                                 device=d, seed=0, optimizer=fastmlp.SGD(lr=0.1)) for d in ("cuda", "cpu")]
    models[0].set_weights(models[1].get_weights())
    assert [w.shape for w in models[0].get_weights()] == [(6, 5), (3, 6)]
    for _ in range(3):
        assert models[0].train_step(X, y) == pytest.approx(models[1].train_step(X, y), rel=1e-5)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
