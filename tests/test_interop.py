"""Weights in and out: model.to_torch, fastmlp.from_torch, fastmlp.from_sklearn."""

import numpy as np
import pytest

import fastmlp as fm


def _data(n, d, seed=0, dtype=np.float64):
    return (np.random.default_rng(seed).normal(size=(n, d)) * 2).astype(dtype)


def _trained_bn_model(dtype="float64"):
    model = fm.Sequential([fm.Dense(5, 8), fm.BatchNorm(8, activation="tanh", momentum=0.2, eps=1e-4),
                           fm.Dropout(0.25), fm.Dense(8, 6, "gelu"), fm.Dense(6, 3)],
                          seed=0, dtype=dtype, optimizer=fm.SGD(lr=0.05))
    X = _data(64, 5, dtype=dtype)
    model.fit(X, np.arange(64) % 3, epochs=2, batch_size=16, verbose=0)  # running statistics
    return model


# ----------------------------------------------------------------------------------------
# PyTorch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("act", fm.ACTIVATIONS)
def test_to_torch_computes_the_same_outputs(torch, act):
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-6)):
        model = fm.MLP([5, 7, 6, 3], activation=act, dtype=dtype, seed=1)
        module = model.to_torch().eval()
        assert isinstance(module, torch.nn.Sequential)
        X = _data(9, 5, dtype=dtype)
        with torch.no_grad():
            P = torch.softmax(module(torch.from_numpy(X)), dim=1).numpy()
        assert P.dtype == np.dtype(dtype)
        np.testing.assert_allclose(P, model.predict_proba(X), rtol=0, atol=tol)


def test_to_torch_batchnorm_dropout_and_heads(torch):
    model = _trained_bn_model()
    module = model.to_torch().eval()
    kinds = [type(m).__name__ for m in module]
    assert kinds == ["Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "GELU", "Linear"]
    assert module[1].momentum == 0.2 and module[1].eps == 1e-4 and module[3].p == 0.25
    X = _data(10, 5)
    with torch.no_grad():
        logits = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(),
                               model.predict_proba(X), atol=1e-12)
    regression = fm.MLP([4, 5, 2], activation="softplus", output="sigmoid", loss="mse", dtype="float64", seed=0)
    with torch.no_grad():
        out = regression.to_torch()(torch.from_numpy(_data(6, 4))).numpy()
    np.testing.assert_allclose(out, regression.predict(_data(6, 4)), atol=1e-12)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_to_torch_trains_the_same(torch, opt):
    """After to_torch, one step of the same optimizer on the same batch gives the same loss
    and the same weights on both sides (PyTorch's update formulas, batch statistics)."""
    model = fm.Sequential([fm.Dense(5, 8), fm.BatchNorm(8, activation="relu"), fm.Dense(8, 6, "elu"),
                           fm.Dense(6, 3)], seed=2, dtype="float64",
                          optimizer=fm.SGD(lr=0.1, momentum=0.9) if opt == "sgd" else fm.Adam(lr=0.01))
    module = model.to_torch()
    optimizer = (torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9) if opt == "sgd"
                 else torch.optim.Adam(module.parameters(), lr=0.01))
    X, y = _data(16, 5, seed=3), np.arange(16) % 3
    losses_fm, losses_torch = [], []
    for _ in range(3):
        losses_fm.append(model.train_step(X, y))
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(torch.from_numpy(X)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        losses_torch.append(loss.item())
    np.testing.assert_allclose(losses_fm, losses_torch, rtol=1e-10)
    assert losses_fm[2] < losses_fm[0]
    back = fm.from_torch(module)
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)  # the bias before BatchNorm: ~1e-11 noise


def test_from_torch_round_trip(torch):
    model = _trained_bn_model()
    back = fm.from_torch(model.to_torch())
    assert [l.get_config() for l in back.layers] == [l.get_config() for l in model.layers]
    assert back.dtype == np.float64 and back.loss == "cross_entropy"
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_from_torch_every_module_kind(torch):
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.01), nn.Linear(6, 6), nn.BatchNorm1d(6),
                           nn.ELU(), nn.Dropout(0.1),
                           nn.Sequential(nn.Linear(6, 5), nn.Softplus()), nn.Linear(5, 5), nn.Sigmoid(),
                           nn.Linear(5, 5, bias=False), nn.GELU(), nn.Linear(5, 4), nn.Tanh(),
                           nn.Identity(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.Softmax(dim=1))
    with torch.no_grad():  # non-trivial running statistics
        module[3].running_mean.uniform_(-1, 1)
        module[3].running_var.uniform_(0.5, 2)
    module.eval()
    model = fm.from_torch(module)
    assert model.dtype == np.float32 and model.loss == "cross_entropy"
    assert [l.activation for l in model.layers] == ["leaky_relu", "identity", "elu", "identity", "softplus",
                                                   "sigmoid", "gelu", "tanh", "relu", "identity"]
    X = _data(20, 4, dtype=np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict_proba(X), want, atol=1e-6)
    binary = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()).double()
    model = fm.from_torch(binary, loss="binary_cross_entropy")
    with torch.no_grad():
        want = binary(torch.from_numpy(X.astype(np.float64))).numpy()
    assert model.dtype == np.float64 and model.n_outputs == 1
    np.testing.assert_allclose(model.predict_proba(X.astype(np.float64)), want, atol=1e-12)
    regression = fm.from_torch(nn.Sequential(nn.Linear(4, 2), nn.Sigmoid()), loss="mse")
    assert regression.layers[-1].activation == "sigmoid"


def test_from_torch_refusals(torch):
    nn = torch.nn
    with pytest.raises(TypeError, match="module"):
        fm.from_torch([nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="Sequential"):
        fm.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Conv1d"):
        fm.from_torch(nn.Sequential(nn.Conv1d(1, 1, 1), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="negative_slope"):
        fm.from_torch(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(0.2), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="approximate"):
        fm.from_torch(nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh"), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="must follow a Linear"):
        fm.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="must follow a Linear"):
        fm.from_torch(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Tanh(), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="loss"):
        fm.from_torch(nn.Sequential(nn.Linear(2, 2)), loss="hinge")
    with pytest.raises(ValueError, match="no Linear"):
        fm.from_torch(nn.Sequential())
    with pytest.raises(ValueError, match="affine"):
        fm.from_torch(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="dtype"):
        fm.from_torch(nn.Sequential(nn.Linear(2, 2).half(), nn.Linear(2, 2).half()))


# ----------------------------------------------------------------------------------------
# scikit-learn


@pytest.fixture(scope="module")
def neural_network():
    pytest.importorskip("sklearn")
    from sklearn import neural_network

    return neural_network


def _fit(est, X, y):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        return est.fit(X, y)


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_from_sklearn_classifiers(neural_network, activation):
    X = _data(150, 4, seed=1)
    labels = np.array(["a", "b", "c"])[np.arange(150) % 3]
    cases = [labels, labels[:150] == "a", (X[:, :3] > 0).astype(int)]  # multiclass, binary, multilabel
    for y in cases:
        sk = _fit(neural_network.MLPClassifier(hidden_layer_sizes=(7, 5), activation=activation, max_iter=30, random_state=0), X, y)
        model = fm.from_sklearn(sk)
        assert model.dtype == np.float64
        P, Q = model.predict_proba(X), sk.predict_proba(X)
        if Q.shape[1] == 2 and P.shape[1] == 1:  # binary: sklearn gives [1 - p, p]
            Q = Q[:, 1:]
        np.testing.assert_allclose(P, Q, rtol=0, atol=1e-6)
        if y.ndim == 1:
            np.testing.assert_array_equal(sk.classes_[model.predict(X)], sk.predict(X))
        else:
            np.testing.assert_array_equal(model.predict(X), sk.predict(X))


def test_from_sklearn_regressor_keeps_training(neural_network):
    X = _data(120, 3, seed=2)
    for y in (X @ [1.0, -2.0, 0.5], np.column_stack([X[:, 0], X[:, 1] * X[:, 2]])):
        sk = _fit(neural_network.MLPRegressor(hidden_layer_sizes=(6,), solver="sgd", max_iter=20, random_state=0), X, y)
        model = fm.from_sklearn(sk)
        assert model.loss == "mse" and isinstance(model.optimizer, fm.SGD)
        np.testing.assert_allclose(model.predict(X), sk.predict(X), rtol=0, atol=1e-6)
        before = model.evaluate(X, y)["loss"]
        model.fit(X, y, epochs=5, batch_size=16, verbose=0)
        assert model.evaluate(X, y)["loss"] < before


def test_from_sklearn_refusals(neural_network):
    with pytest.raises(TypeError, match="fitted"):
        fm.from_sklearn(fm.MLP([2, 2]))
    with pytest.raises(ValueError, match="not fitted"):
        fm.from_sklearn(neural_network.MLPClassifier())
    X = np.abs(_data(40, 2))
    if "loss" in neural_network.MLPRegressor().get_params():  # scikit-learn >= 1.7: poisson
        poisson = _fit(neural_network.MLPRegressor(loss="poisson", max_iter=5), X, X[:, 0])
        with pytest.raises(ValueError, match="exp"):
            fm.from_sklearn(poisson)
