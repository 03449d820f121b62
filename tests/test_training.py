"""Training end to end on real data: digits, binary and regression problems, MNIST.
(Gradients against finite differences are in test_gradcheck.py.)"""

from pathlib import Path

import numpy as np
import pytest

import fastmlp

MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


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
