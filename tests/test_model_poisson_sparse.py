"""loss="poisson" and sparse input in the core API (fit, train_step, predict*, evaluate)."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.kernels import cpu
from fastmlp.kernels import reference as ref


def _counts(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    return X, y


# ---------------------------------------------------------------------------------------
# poisson


@pytest.mark.parametrize("backend", [cpu, ref], ids=["cpu", "reference"])
def test_poisson_kernel_matches_pytorch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    Z = rng.normal(0, 3, (13, 3))
    T = rng.poisson(2.0, (13, 3)).astype(np.float64)
    w = rng.uniform(0, 2, 13)
    for weights in (None, w):
        dZ = np.empty_like(Z)
        loss = backend.poisson(Z, T, dZ, weights)
        z = torch.tensor(Z, requires_grad=True)
        per = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="none")(z, torch.tensor(T))
        if weights is not None:
            per = per * torch.tensor(weights)[:, None]
        expected = per.mean()
        expected.backward()
        assert loss == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(dZ, z.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_poisson_model_follows_pytorch():
    torch = pytest.importorskip("torch")
    X, y = _counts()
    model = fm.MLP([4, 8, 1], activation="tanh", loss="poisson", optimizer=fm.SGD(lr=0.05),
                   dtype="float64", device="cpu", seed=0)
    W1, b1, W2, b2 = (torch.tensor(a, requires_grad=True) for a in model.get_weights())
    opt = torch.optim.SGD([W1, b1, W2, b2], lr=0.05)
    lossf = torch.nn.PoissonNLLLoss(log_input=True)
    Xt, yt = torch.tensor(X), torch.tensor(y, dtype=torch.float64)[:, None]
    for start in range(0, 120, 40):
        ours = model.train_step(X[start:start + 40], y[start:start + 40])
        opt.zero_grad()
        z = torch.tanh(Xt[start:start + 40] @ W1.T + b1) @ W2.T + b2
        theirs = lossf(z, yt[start:start + 40])
        theirs.backward()
        opt.step()
        assert ours == pytest.approx(theirs.item(), rel=1e-10)
    for a, b in zip(model.get_weights(), (W1, b1, W2, b2)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    mean = model.predict(X)
    np.testing.assert_allclose(mean, np.exp(model._outputs(X, 1024)[:, 0]), rtol=1e-12)
    assert mean.shape == (120,) and (mean > 0).all()


def test_poisson_fit_evaluate_and_errors():
    X, y = _counts(400)
    model = fm.MLP([4, 16, 1], loss="poisson", optimizer=fm.Adam(lr=0.01), device="cpu", seed=0)
    history = model.fit(X, y, epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(X, y)
    assert set(result) == {"loss"} and result["loss"] == pytest.approx(history.history["loss"][-1], rel=0.1)
    corr = np.corrcoef(model.predict(X), np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))[0, 1]
    assert corr > 0.9
    with pytest.raises(ValueError, match="counts or rates >= 0"):
        model.fit(X, -np.ones(len(X)), verbose=0)
    with pytest.raises(ValueError, match="predict_proba"):
        model.predict_proba(X)
    with pytest.raises(ValueError, match="identity"):
        fm.MLP([4, 1], loss="poisson", output="relu")
    saved = fm.saving.from_bytes(fm.saving.to_bytes(model))
    np.testing.assert_array_equal(saved.predict(X), model.predict(X))


# ---------------------------------------------------------------------------------------
# sparse input


def _sparse(n=150, d=40, seed=0):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", random_state=seed)
    y = (X @ rng.normal(size=d) > 0).astype(np.int64)
    return X, y


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_sparse_fit_equals_dense_fit(activation, device):
    X, y = _sparse()
    models = [fm.MLP([40, 8, 5, 2], activation=activation, optimizer="adam", dtype="float64",
                     device=device, seed=0) for _ in range(2)]
    h_sparse = models[0].fit(X, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    h_dense = models[1].fit(X.toarray(), y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    for key in h_dense.history:
        np.testing.assert_allclose(h_sparse.history[key], h_dense.history[key], rtol=1e-10)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # predict, predict_proba, evaluate and train_step, in every SciPy format
    sp = pytest.importorskip("scipy.sparse")
    for Xs in (X, X.tocsc(), X.tocoo(), sp.csr_array(X)):
        np.testing.assert_allclose(models[0].predict_proba(Xs, batch_size=7),
                                   models[1].predict_proba(X.toarray()), rtol=1e-10)
        assert models[0].evaluate(Xs, y) == pytest.approx(models[1].evaluate(X.toarray(), y))
    assert models[0].train_step(X[:9], y[:9]) == pytest.approx(models[1].train_step(X[:9].toarray(), y[:9]))


def test_sparse_input_through_dropout_and_batchnorm_is_densified_per_batch():
    X, y = _sparse()
    layers = lambda: [fm.Dense(40, 8, "relu"), fm.BatchNorm(8), fm.Dropout(0.2), fm.Dense(8, 2)]  # noqa: E731
    a = fm.Sequential(layers(), dtype="float64", device="cpu", seed=0)
    b = fm.Sequential(layers(), dtype="float64", device="cpu", seed=0)
    ha = a.fit(X, y, epochs=2, batch_size=16, verbose=0)
    hb = b.fit(X.toarray(), y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()), rtol=1e-10)


def test_sparse_bad_input():
    X, y = _sparse()
    model = fm.MLP([40, 4, 2], device="cpu")
    with pytest.raises(ValueError, match="40 features"):
        model.fit(X[:, :30], y, verbose=0)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.predict(bad)
    with pytest.raises(ValueError, match="empty"):
        model.predict(X[:0])
