"""Gradients against finite differences (``fastmlp.gradcheck``): every activation and
loss, output activations and soft targets, Dropout and BatchNorm, graph models; and the check
itself (it finds a wrong gradient, it leaves the weights as they were)."""

import numpy as np
import pytest

import fastmlp
from _shared_graphs import GRAPH_IDS, GRAPHS, XA, Y3, data_for
from helpers import assert_same_weights, blobs, mlp

ACTIVATIONS = sorted(fastmlp.ACTIVATIONS)  # every activation of the table
LOSSES = ["cross_entropy", "binary_cross_entropy", "mse"]
D, K = 4, 3  # helpers.blobs: 4 features, 3 classes


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


# ---------------------------------------------------------------------------------------
# MLPs: every activation and loss, output activations, targets


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


def test_gradcheck_float64():
    X, y = blobs(n=10)
    model = mlp(sizes=(D, 5, K), activation="tanh", dtype="float64")
    before = model.get_weights()
    assert fastmlp.gradcheck(model, X, y) < 1e-6
    assert_same_weights(before, model.get_weights())


# ---------------------------------------------------------------------------------------
# the check itself


def test_gradcheck_detects_a_wrong_gradient():
    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], activation="tanh", dtype="float64", seed=0)
    good = fastmlp.gradcheck(model, X, y)
    backward = model._backward

    def broken(v, *rest):  # a backward pass that gets the first bias gradient wrong
        backward(v, *rest)
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


# ---------------------------------------------------------------------------------------
# Dropout and BatchNorm

rng0 = np.random.default_rng(0)
X_SMALL = rng0.normal(size=(12, 5))
Y_SMALL = rng0.integers(0, 3, 12)


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("layers", [
    lambda: [fastmlp.Dense(5, 8, "relu"), fastmlp.Dropout(0.3), fastmlp.Dense(8, 3)],
    lambda: [fastmlp.Dropout(0.2), fastmlp.Dense(5, 8, "tanh"), fastmlp.Dense(8, 3)],
    lambda: [fastmlp.Dense(5, 8), fastmlp.BatchNorm(8, activation="relu"), fastmlp.Dense(8, 3)],
    lambda: [fastmlp.BatchNorm(5), fastmlp.Dense(5, 8, "elu"), fastmlp.Dense(8, 3)],
    lambda: [fastmlp.Dense(5, 8), fastmlp.BatchNorm(8, activation="gelu"), fastmlp.Dropout(0.25),
             fastmlp.Dense(8, 6, "softplus"), fastmlp.BatchNorm(), fastmlp.Dense(6, 3)],
    lambda: [fastmlp.Dense(5, 8, "gelu"), fastmlp.Dense(8, 7, "softplus"), fastmlp.Dense(7, 3)],
], ids=["dropout", "input-dropout", "batchnorm-relu", "input-batchnorm", "mixed", "gelu-softplus"])
def test_gradcheck_layers(layers, device):
    model = fastmlp.Sequential(layers(), dtype="float64", device=device, seed=3)
    model.set_weights([w + 0.03 if w.ndim == 1 else w for w in model.get_weights()])
    before = model.get_weights()
    assert fastmlp.gradcheck(model, X_SMALL, Y_SMALL) <= 1e-6
    for a, b in zip(before, model.get_weights()):  # running statistics restored too
        np.testing.assert_array_equal(a, b)


def test_gradcheck_label_smoothing_and_mse_with_gelu_output():
    model = fastmlp.MLP([5, 6, 3], activation="tanh", dtype="float64", seed=0, label_smoothing=0.2)
    assert fastmlp.gradcheck(model, X_SMALL, Y_SMALL) <= 1e-6
    reg = fastmlp.MLP([5, 6, 2], activation="softplus", output="gelu", loss="mse", dtype="float64", seed=0)
    assert fastmlp.gradcheck(reg, X_SMALL, rng0.normal(size=(12, 2))) <= 1e-6


# ---------------------------------------------------------------------------------------
# graph models


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("make", GRAPHS, ids=GRAPH_IDS)
def test_gradcheck_graphs(make, device):
    inputs, out = make()
    model = fastmlp.Model(inputs, out, dtype="float64", seed=0, device=device)
    assert fastmlp.gradcheck(model, data_for(inputs), Y3) <= 1e-6


def test_gradcheck_softmax_output_and_residual_mlp():
    x = fastmlp.Input(6)
    hidden = fastmlp.Dense(5, activation="relu")(x)
    model = fastmlp.Model(x, fastmlp.Dense(3, activation="softmax")(hidden), dtype="float64", seed=0)
    assert model.loss == "cross_entropy"
    assert fastmlp.gradcheck(model, XA, Y3) <= 1e-6
    res = fastmlp.MLP([6, 5, 5, 5, 3], residual=True, dtype="float64", seed=0)
    assert isinstance(res, fastmlp.Model) and sum(n.kind == "Add" for n in res._graph.nodes) == 2
    assert fastmlp.gradcheck(res, XA, Y3) <= 1e-6
