"""Divergence: a step whose loss or weights stop being finite raises FloatingPointError
(or, with on_divergence="warn", warns and marks the History) and leaves the weights at their
last finite values."""

import numpy as np
import pytest

import fastmlp
from helpers import blobs, mlp

D = 4  # helpers.blobs: 4 features


def _diverging():
    """Regression with a learning rate far too large: the weights explode within an epoch."""
    X, _ = fastmlp.datasets.load_digits()
    y = X[:256].sum(axis=1)
    model = fastmlp.MLP([64, 32, 1], activation="identity", loss="mse",
                        optimizer=fastmlp.SGD(lr=1.0), seed=0)
    return model, X[:256], y


def test_divergence_stops_fit_and_restores_the_epoch_start():
    model, X, y = _diverging()
    start = model.get_weights()
    with pytest.raises(FloatingPointError, match=r"diverged at epoch 1, step \d+.*back to the start of epoch 1"):
        model.fit(X, y, epochs=5, batch_size=32, verbose=0)
    for a, b in zip(start, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.predict(X)).all()


def test_divergence_can_warn_and_mark_the_history():
    model, X, y = _diverging()
    with pytest.warns(RuntimeWarning, match="diverged"):
        history = model.fit(X, y, epochs=5, batch_size=32, verbose=0, on_divergence="warn")
    assert history.diverged is not None and history.diverged[0] == 0
    assert all(np.isfinite(w).all() for w in model.get_weights())
    with pytest.raises(ValueError, match="on_divergence"):
        model.fit(X, y, on_divergence="ignore")


def test_a_non_finite_loss_never_updates_the_weights():
    model = fastmlp.MLP([2, 3, 2], seed=0, dtype="float32")
    model.set_weights([np.full((3, 2), 1e30), np.zeros(3), np.full((2, 3), 1e30), np.zeros(2)])
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match="weights were not updated"):
        model.train_step(np.ones((4, 2)) * 1e10, [0, 1, 0, 1])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_diverging_fit_raises_floating_point_error():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((40, D)) * 100).astype(np.float32)
    t = X.sum(axis=1) * 100
    model = mlp(sizes=(D, 16, 1), loss="mse", optimizer=fastmlp.SGD(lr=10.0))
    with pytest.raises(FloatingPointError, match=r"diverged.*learning rate"):
        model.fit(X, t, epochs=50, batch_size=8, verbose=0)


def test_diverging_train_step_raises_floating_point_error():
    X, y = blobs(n=16)
    model = mlp(optimizer=fastmlp.SGD(lr=1e30))
    with pytest.raises(FloatingPointError, match="diverged"):
        for _ in range(50):
            model.train_step(X * 1e3, y)


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_train_step_whose_gradient_overflows_raises_and_keeps_the_weights(device):
    # poisson in float32: the loss (computed in float64) is finite, exp(100) in its gradient
    # is not; train_step updated the weights to -inf and returned the finite loss
    model = fastmlp.MLP([1, 1], loss="poisson", dtype="float32", device=device,
                        optimizer=fastmlp.SGD(lr=1e-3))
    model.set_weights([np.eye(1), np.zeros(1)])
    with pytest.raises(fastmlp.DivergenceError, match="gradient became non-finite"):
        model.train_step([[100.0], [1.0]], [1.0, 2.0])
    np.testing.assert_array_equal(model.get_weights()[0], np.eye(1))
    assert model.train_step([[1.0], [2.0]], [1.0, 2.0]) > 0  # a sound batch still trains
    # predicting such a mean raises as any output that overflows does
    with pytest.raises(FloatingPointError, match=r"exp\(output\) overflowed .* float32"):
        model.predict([[100.0]])
