"""The losses beyond cross-entropy and MSE: kl_divergence (probability targets; softmax
fused), reduction="mean" | "sum" for every loss, and loss="poisson" (log link): the kernels
against the reference and PyTorch, models step for step against PyTorch."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp import kernels
from fastmlp.kernels import cpu
from fastmlp.kernels import reference as ref

rng = np.random.default_rng(0)


def _probs(B, K, seed=0):
    r = np.random.default_rng(seed)
    P = r.random((B, K)) ** 3
    P[r.random((B, K)) < 0.2] = 0  # zero targets: 0 log 0 = 0
    P[np.arange(B), r.integers(0, K, B)] += 0.1
    return P / P.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("B,K", [(1, 2), (7, 3), (33, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_kl_kernel_is_cross_entropy_minus_entropy(device, B, K, weighted):
    k = kernels.backend(device)
    Z = rng.normal(size=(B, K)) * 3
    T = _probs(B, K, B + K)
    w = rng.random(B) + 0.5 if weighted else None
    dZ, dZ_ce = np.empty_like(Z), np.empty_like(Z)
    kl = k.softmax_kl_divergence(Z, T, dZ, w)
    ce = k.softmax_cross_entropy(Z, T, dZ_ce, w)
    W = np.ones(B) if w is None else w
    plogp = np.where(T > 0, T * np.log(np.where(T > 0, T, 1)), 0).sum(1)
    assert kl == pytest.approx(ce + (W * plogp).sum() / B, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(dZ, dZ_ce, rtol=1e-12)
    assert kl >= -1e-12
    dZ_same = np.empty_like(Z)  # KL of a distribution with itself is 0
    assert k.softmax_kl_divergence(np.log(np.maximum(T, 1e-300)), T, dZ_same) == pytest.approx(0, abs=1e-9)


def test_kl_kernel_against_torch():
    torch = pytest.importorskip("torch")
    Z = rng.normal(size=(9, 4))
    T = _probs(9, 4, 3)
    Zt = torch.tensor(Z, requires_grad=True)
    loss = torch.nn.functional.kl_div(torch.log_softmax(Zt, 1), torch.tensor(T), reduction="batchmean")
    loss.backward()
    for device in ("cpu", "reference"):
        dZ = np.empty_like(Z)
        assert kernels.backend(device).softmax_kl_divergence(Z, T, dZ) == pytest.approx(loss.item(), rel=1e-10)
        np.testing.assert_allclose(dZ, Zt.grad.numpy(), rtol=1e-9, atol=1e-14)


def _torch_loss(torch, name, out, T, reduction):
    F = torch.nn.functional
    if name == "cross_entropy":
        return F.cross_entropy(out, T, reduction=reduction)
    if name == "kl_divergence":
        return F.kl_div(torch.log_softmax(out, 1), T, reduction="batchmean" if reduction == "mean" else "sum")
    if name == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(out, T, reduction=reduction)
    if name == "mse":
        return F.mse_loss(out, T, reduction=reduction)
    return F.poisson_nll_loss(out, T, log_input=True, full=False, reduction=reduction)


def _targets(name, n):
    if name == "cross_entropy":
        return rng.integers(0, 3, n), 3
    if name == "kl_divergence":
        return _probs(n, 3, 7), 3
    if name == "binary_cross_entropy":
        return rng.integers(0, 2, (n, 2)).astype(np.float64), 2
    if name == "mse":
        return rng.normal(size=(n, 2)), 2
    return rng.poisson(2.0, (n, 2)).astype(np.float64), 2


@pytest.mark.parametrize("loss", ["cross_entropy", "kl_divergence", "binary_cross_entropy", "mse", "poisson"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_steps_match_torch(loss, reduction):
    torch = pytest.importorskip("torch")
    X = rng.normal(size=(20, 5))
    y, K = _targets(loss, 20)
    lr = 0.05 if reduction == "mean" else 0.002
    m = fm.MLP([5, 6, K], activation="tanh", loss=loss, reduction=reduction, dtype="float64",
               device="cpu", seed=0, optimizer=fm.SGD(lr=lr, momentum=0.5))
    net = m.to_torch()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.5)
    Tt = torch.tensor(y)
    for _ in range(3):
        ours = m.train_step(X, y)
        opt.zero_grad()
        theirs = _torch_loss(torch, loss, net(torch.tensor(X)), Tt, reduction)
        theirs.backward()
        opt.step()
        assert ours == pytest.approx(theirs.item(), rel=1e-9)
    np.testing.assert_allclose(m.get_weights()[0], net[0].weight.detach().numpy(), rtol=1e-8)


def test_sum_is_mean_with_a_larger_step_and_history_reports_the_mean():
    X = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, 16)
    mean = fm.MLP([5, 4, 3], dtype="float64", device="cpu", seed=0, optimizer=fm.SGD(lr=0.32))
    total = fm.MLP([5, 4, 3], dtype="float64", device="cpu", seed=0, optimizer=fm.SGD(lr=0.02),
                   reduction="sum")
    hm = mean.fit(X, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    hs = total.fit(X, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    np.testing.assert_allclose(hm.history["loss"], hs.history["loss"], rtol=1e-10)
    for a, b in zip(mean.get_weights(), total.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    loss, grads = total.compute_gradients(X, y)
    loss_m, grads_m = mean.compute_gradients(X, y)
    assert loss == pytest.approx(16 * loss_m, rel=1e-12)
    np.testing.assert_allclose(grads["output"]["dW"], 16 * grads_m["output"]["dW"], rtol=1e-10)


def test_kl_model_trains_saves_and_predicts(tmp_path):
    X = rng.normal(size=(40, 5)).astype(np.float32)
    T = _probs(40, 3, 1).astype(np.float32)
    m = fm.MLP([5, 8, 3], output="softmax", loss="kld", seed=0, device="cpu", reduction="sum",
               optimizer=fm.Adam(lr=0.01))
    assert m.loss == "kl_divergence" and m.reduction == "sum"
    h = m.fit(X, T, epochs=20, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0] and "accuracy" in h.history
    P = m.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1, rtol=1e-5)
    ev = m.evaluate(X, T)["loss"]
    kl = (T * (np.log(np.maximum(T, 1e-30)) - np.log(P))).sum(1).mean()
    assert ev == pytest.approx(kl, rel=1e-4, abs=1e-6)
    m.save(tmp_path / "kl.npz")
    loaded = fm.load(tmp_path / "kl.npz")
    assert loaded.loss == "kl_divergence" and loaded.reduction == "sum"
    np.testing.assert_array_equal(loaded.predict_proba(X), P)


def test_bad_input():
    X = rng.normal(size=(6, 5))
    m = fm.MLP([5, 3], loss="kl_divergence", device="cpu")
    with pytest.raises(ValueError, match="probability targets of shape"):
        m.fit(X, np.array([0, 1, 2, 0, 1, 2]), verbose=0)
    with pytest.raises(ValueError, match="summing to 1"):
        m.fit(X, np.ones((6, 3)), verbose=0)
    with pytest.raises(ValueError, match=">= 0"):
        m.fit(X, np.array([[1.5, -0.5, 0]] * 6), verbose=0)
    with pytest.raises(ValueError, match="reduction"):
        fm.MLP([5, 3], reduction="avg")
    with pytest.raises(TypeError, match="reduction"):
        fm.MLP([5, 3], reduction=None)
    with pytest.raises(ValueError, match="at least 2 outputs"):
        fm.MLP([5, 1], loss="kl_divergence")
    with pytest.raises(ValueError, match="reduction"):
        m.compile(reduction="total")


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
    assert set(result.keys()) == {"loss"} and result["loss"] == pytest.approx(history.history["loss"][-1], rel=0.1)
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
