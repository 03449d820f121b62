"""Gradients against finite differences, and training end to end on real data."""

import os
from pathlib import Path

import numpy as np
import pytest

import fastmlp

ACTIVATIONS = sorted(fastmlp.ACTIVATIONS)  # every activation of the table
LOSSES = ["cross_entropy", "binary_cross_entropy", "mse"]
MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


def _problem(loss, n=9, n_in=5, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, n)
    elif loss == "binary_cross_entropy":
        n_out = 1
        y = rng.integers(0, 2, n).astype(float)
    else:
        y = rng.normal(size=(n, n_out))
    return X, y, n_out


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_every_activation_and_loss(activation, loss, device):
    X, y, n_out = _problem(loss)
    model = fastmlp.MLP([5, 7, 6, n_out], activation=activation, loss=loss, dtype="float64",
                        device=device, seed=1)
    # biases away from zero so no ReLU unit sits on its kink
    model.set_weights([w + 0.05 if w.ndim == 1 else w for w in model.get_weights()])
    assert fastmlp.gradcheck(model, X, y) <= 1e-6


@pytest.mark.parametrize("output", ["sigmoid", "tanh", "elu"])
def test_gradcheck_mse_with_output_activation(output):
    X, y, _ = _problem("mse", n_out=2)
    model = fastmlp.MLP([5, 4, 2], activation="tanh", output=output, loss="mse",
                        dtype="float64", seed=2)
    assert fastmlp.gradcheck(model, X, y) <= 1e-6


def test_gradcheck_one_hot_and_soft_targets():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(8, 4))
    soft = rng.dirichlet(np.ones(3), size=8)
    model = fastmlp.MLP([4, 5, 3], activation="tanh", dtype="float64", seed=0)
    assert fastmlp.gradcheck(model, X, soft) <= 1e-6
    assert fastmlp.gradcheck(model, X, np.eye(3)[rng.integers(0, 3, 8)]) <= 1e-6


def test_gradcheck_detects_a_wrong_gradient():
    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], activation="tanh", dtype="float64", seed=0)
    good = fastmlp.gradcheck(model, X, y)
    backward = model._backward

    def broken(v):  # a backward pass that gets the first bias gradient wrong
        backward(v)
        model.db[0][0] *= 1.5

    model._backward = broken
    assert good <= 1e-6 < fastmlp.gradcheck(model, X, y)


def test_gradcheck_leaves_weights_unchanged():
    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], seed=0, dtype="float64")
    before = model.get_weights()
    fastmlp.gradcheck(model, X, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_digits_reach_95_percent():
    X, y = fastmlp.datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:360], order[360:]
    model = fastmlp.MLP([64, 128, 64, 10], optimizer=fastmlp.SGD(lr=0.05, momentum=0.9), seed=0)
    history = model.fit(X[train], y[train], epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(X[test], y[test])["accuracy"] >= 0.95


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "elu", "leaky_relu"])
def test_digits_learn_with_every_activation(activation):
    X, y = fastmlp.datasets.load_digits()
    model = fastmlp.MLP([64, 32, 10], activation=activation, optimizer=fastmlp.Adam(lr=0.01), seed=0)
    model.fit(X[:1400], y[:1400], epochs=30, batch_size=32, verbose=0)
    assert model.evaluate(X[1400:], y[1400:])["accuracy"] >= 0.9


def test_binary_and_regression_training():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    yb = (X[:, 0] * X[:, 1] > 0).astype(np.int64)  # xor-like: needs the hidden layer
    clf = fastmlp.MLP([4, 32, 1], activation="tanh", loss="binary_cross_entropy",
                      optimizer=fastmlp.Adam(lr=0.01), seed=0)
    clf.fit(X[:300], yb[:300], epochs=60, batch_size=16, verbose=0)
    assert (clf.predict(X[300:]) == yb[300:]).mean() >= 0.9
    yr = np.sin(X[:, :1] * 2) + X[:, 1:2] ** 2
    reg = fastmlp.MLP([4, 64, 1], activation="tanh", loss="mse", optimizer=fastmlp.Adam(lr=0.01), seed=0)
    reg.fit(X[:300], yr[:300], epochs=80, batch_size=16, verbose=0)
    assert reg.evaluate(X[300:], yr[300:])["loss"] < 0.1 * float(np.var(yr[300:]))


def _mnist():
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    if not all((MNIST / f).exists() for f in files):
        pytest.skip(f"MNIST not found in {MNIST}")
    X, y = fastmlp.datasets.load_idx(MNIST / files[0], MNIST / files[1])
    Xt, yt = fastmlp.datasets.load_idx(MNIST / files[2], MNIST / files[3])
    return X, y, Xt, yt


@pytest.mark.slow
def test_mnist_784_256_128_10_reaches_97_5_percent():
    X, y, Xt, yt = _mnist()
    model = fastmlp.MLP([784, 256, 128, 10], activation="relu", loss="cross_entropy",
                        optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0)
    accuracies = []
    for _ in range(8):
        model.fit(X, y, epochs=1, batch_size=128, verbose=0)
        accuracies.append(model.evaluate(Xt, yt)["accuracy"])
        if accuracies[-1] >= 0.975:
            break
    assert max(accuracies) >= 0.975, accuracies
