"""Gradients against finite differences (``fastmlp.gradcheck``): every activation and
loss, output activations and soft targets, Dropout and BatchNorm, graph models; and the check
itself (it finds a wrong gradient, it leaves the model as it was, it checks a float32 model
in float64, it probes the documented sample, its result says what it measured, its bad
arguments are named, its progress bar)."""

import io
import pickle
import re
import sys

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
    model = fastmlp.MLP([4, 5, 3], activation="tanh", loss="cross_entropy", dtype="float64",
                        seed=0)
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


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], activation="tanh", dtype="float64", seed=0)
    good = fastmlp.gradcheck(model, X, y)
    backward = fastmlp.Sequential._backward

    def broken(self, v, *rest):  # a backward pass that gets the first bias gradient wrong
        backward(self, v, *rest)
        self.db[0][0] *= 1.5

    # on the class: gradcheck runs on a float64 copy of the model, which is a Sequential
    monkeypatch.setattr(fastmlp.Sequential, "_backward", broken)
    assert good <= 1e-6 < fastmlp.gradcheck(model, X, y)


def test_gradcheck_leaves_weights_unchanged():
    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], seed=0, dtype="float64")
    before = model.get_weights()
    fastmlp.gradcheck(model, X, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _float32_model(device="cpu"):
    """A small float32 classifier, its weights moved off their initial values (biases
    away from zero, as training leaves them), and a batch of 8 rows: the README's
    gradcheck line, shrunk."""
    rng = np.random.default_rng(4)
    X = rng.random((8, 30), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    model = fastmlp.MLP([30, 40, 20, 4], activation="relu", dtype="float32", device=device,
                        optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0)
    model.set_weights([w + rng.normal(0, 0.05, w.shape) for w in model.get_weights()])
    model.train_step(X, y)  # a momentum buffer to stay unchanged too
    return model, X, y


def test_gradcheck_checks_a_float32_model_in_float64_and_leaves_it_alone():
    model, X, y = _float32_model()
    before = model.get_weights()
    optimizer_before = {k: np.array(v, copy=True) for k, v in model._opt_state.items()
                        if isinstance(v, np.ndarray)}
    result = fastmlp.gradcheck(model, X, y)
    # finite differences in float32 are noise (about 1e-3); the float64 copy is exact
    assert result < 1e-6 and result.dtype == "float64"
    assert model.dtype == np.float32 and model._theta.dtype == np.float32
    assert all(w.dtype == np.float32 for w in model.get_weights())
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for name, state in optimizer_before.items():
        np.testing.assert_array_equal(state, model._opt_state[name])


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_gradcheck_finds_a_kernel_that_scales_its_gradient(monkeypatch, device):
    model, X, y = _float32_model(device)
    assert fastmlp.gradcheck(model, X, y) < 1e-6
    # every Dense layer's weight gradient 1 % too large: on the reference, its layer kernel
    # weight_grad (the stack's backward calls it); on the cpu, the stack's one compiled
    # backward call mlp_backward (its dW: a list, one array per layer)
    if device == "reference":
        kernels, name = fastmlp.kernels.reference, "weight_grad"
        weight_grads = lambda args: [args[2]]  # noqa: E731  (delta, A_prev, dW, db)
    else:
        kernels, name = fastmlp.kernels.cpu, "mlp_backward"
        weight_grads = lambda args: args[4]  # noqa: E731  (delta, A, D, W, dW, db, acts)
    right = getattr(kernels, name)

    def scaled(*args, **kwargs):
        right(*args, **kwargs)
        for dW in weight_grads(args):
            dW *= 1.01

    monkeypatch.setattr(kernels, name, scaled)
    result = fastmlp.gradcheck(model, X, y)
    assert result > 1e-3 and result.worst.endswith(".W"), repr(result)
    assert result == pytest.approx(0.01 / 1.01, rel=0.05)


def test_gradcheck_probes_the_documented_sample(monkeypatch):
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(6, 20)), rng.integers(0, 3, 6)
    model = fastmlp.MLP([20, 30, 10, 3], activation="tanh", dtype="float64", seed=0)
    sizes = [600, 30, 300, 10, 30, 3]  # W1, b1, W2, b2, W3, b3
    assert model.n_parameters == sum(sizes)
    forward = fastmlp.Sequential._forward
    passes = []

    def counted(self, *args, **kwargs):
        passes.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(fastmlp.Sequential, "_forward", counted)
    for n, checked in [(None, sum(sizes)), ("all", sum(sizes)), (25, 25 * 4 + 10 + 3),
                       (fastmlp.gradcheck.__defaults__[1], sum(min(s, 100) for s in sizes))]:
        passes.clear()
        result = fastmlp.gradcheck(model, X, y, n=n)
        assert (result.checked, result.total) == (checked, sum(sizes))
        assert len(passes) == 1 + 2 * checked  # the analytic pass, then two per probe
        assert result < 1e-6
    assert fastmlp.gradcheck.__defaults__[1] == 100  # gradcheck's documented default n


def test_gradcheck_sample_holds_the_largest_gradient():
    from fastmlp.gradcheck import _sample

    grad = np.linspace(-1, 1, 50)
    grad[17] = 5.0
    for seed in range(5):
        idx = _sample(grad, 6, np.random.default_rng(seed))
        assert len(idx) == 6 and len(set(idx.tolist())) == 6 and 17 in idx
        assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < 50
    np.testing.assert_array_equal(_sample(grad, 50, np.random.default_rng(0)), np.arange(50))
    np.testing.assert_array_equal(_sample(grad, None, np.random.default_rng(0)), np.arange(50))


def test_gradcheck_result_says_what_it_measured():
    X, y, n_out = _problem("cross_entropy", n_in=5)
    model = fastmlp.MLP([5, 200, n_out], activation="tanh", dtype="float64", seed=0)
    sampled = fastmlp.gradcheck(model, X, y)
    assert isinstance(sampled, float) and 0 <= sampled < 1e-6
    assert f"{sampled:.2e}" == f"{float(sampled):.2e}"  # formats as the number
    text = repr(sampled)
    assert text == str(sampled)
    assert text.startswith(f"worst relative error over {100 + 100 + 100 + 3} sampled "
                           f"parameters of {model.n_parameters}, float64: ")
    assert sampled.worst in sampled.errors and set(sampled.errors) == {
        "hidden1.W", "hidden1.b", "output.W", "output.b"}
    assert sampled == max(sampled.errors.values())
    whole = fastmlp.gradcheck(model, X, y, n="all")
    assert repr(whole).startswith(f"worst relative error over all {model.n_parameters} "
                                  "parameters, float64: ")
    again = pickle.loads(pickle.dumps(whole))
    assert again == whole and repr(again) == repr(whole)


def test_gradcheck_bad_arguments_are_named():
    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], dtype="float64", seed=0)
    for kwargs, error, match in [
        (dict(n=0), ValueError, r"n must be an integer >= 1 .* None or 'all'; got 0"),
        (dict(n=2.5), ValueError, r"n must be an integer >= 1 .*; got 2.5"),
        (dict(n=True), ValueError, r"n must be an integer >= 1 .*; got True"),
        (dict(n="some"), ValueError, r"n must be .*; got 'some'"),
        (dict(seed=-1), ValueError, r"seed must be an integer >= 0; got -1"),
        (dict(verbose="yes"), TypeError, r"verbose must be True, False or None; got 'yes'"),
        (dict(eps=0.0), ValueError, r"eps"),
    ]:
        with pytest.raises(error, match=match):
            fastmlp.gradcheck(model, X, y, **kwargs)
    with pytest.raises(TypeError, match="model must be a fastmlp model .*; got str"):
        fastmlp.gradcheck("model", X, y)
    with pytest.raises(ValueError):  # the data is checked as fit checks it
        fastmlp.gradcheck(model, X[:, :3], y)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_gradcheck_progress_bar(monkeypatch, capsys):
    from fastmlp.gradcheck import _Progress

    X, y, n_out = _problem("cross_entropy")
    model = fastmlp.MLP([5, 6, n_out], dtype="float64", seed=0)
    fastmlp.gradcheck(model, X, y)  # quick, and stderr is no terminal: nothing drawn
    fastmlp.gradcheck(model, X, y, verbose=False)
    assert capsys.readouterr().err == ""
    fastmlp.gradcheck(model, X, y, verbose=True)  # no terminal: one closing line
    assert re.fullmatch(rf"gradcheck 57/57 probes \[={{30}}\] - [0-9.]+s\n",
                        capsys.readouterr().err)

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fastmlp.gradcheck(model, X, y)  # a terminal, but done within a second: nothing drawn
    assert terminal.getvalue() == ""
    fastmlp.gradcheck(model, X, y, verbose=True)  # redrawn in place, then a newline
    text = terminal.getvalue()
    assert text.startswith("\rgradcheck ") and text.endswith(" probes [" + "=" * 30 + "] - "
                                                             + text.split("] - ")[-1])
    assert text.count("\n") == 1 and text.endswith("s\n")
    monkeypatch.setattr(_Progress, "quiet_for", 0.0)  # a check that takes long: drawn
    terminal.seek(0)
    terminal.truncate()
    fastmlp.gradcheck(model, X, y)
    assert terminal.getvalue().startswith("\rgradcheck ") and "57/57" in terminal.getvalue()


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
