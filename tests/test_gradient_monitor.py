"""compute_gradients (gradients without an update), GradientMonitor, and vanishing
gradients in deep sigmoid networks."""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8)).astype(np.float32)
y = rng.integers(0, 2, 64)


def _norms(grads):
    return {k: np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in d.values()))
            for k, d in grads.items()}


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_compute_gradients_matches_train_step_and_leaves_everything(device):
    m = fm.MLP([8, 7, 5, 2], device=device, dtype="float64", seed=0,
               optimizer=fm.Adam(lr=0.01), batch_norm=True)
    m.train_step(X[:16], y[:16])  # some optimizer state
    weights, opt = m._snapshot()
    loss, grads = m.compute_gradients(X, y)
    w_after, opt_after = m._snapshot()
    for a, b in zip(weights, w_after):  # running statistics too
        np.testing.assert_array_equal(a, b)
    for name in opt:
        np.testing.assert_array_equal(opt[name], opt_after[name])
    assert list(grads) == ["hidden1", "batch_norm1", "hidden2", "batch_norm2", "output"]
    assert set(grads["hidden1"]) == {"dW", "db"} and set(grads["batch_norm1"]) == {"dgamma", "dbeta"}
    assert grads["hidden1"]["dW"].shape == (7, 8) and grads["output"]["db"].shape == (2,)
    # the same numbers an SGD step would apply: p_new = p - lr * grad
    sgd = fm.MLP([8, 7, 5, 2], device=device, dtype="float64", seed=0, optimizer=fm.SGD(lr=1.0),
                 batch_norm=True)
    sgd.set_weights(w_after)
    p0 = sgd.get_layer("hidden1").get_weights()[0]
    step_loss = sgd.train_step(X, y)
    assert step_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(p0 - sgd.get_layer("hidden1").get_weights()[0], grads["hidden1"]["dW"],
                               rtol=1e-9, atol=1e-12)


def test_compute_gradients_agrees_with_finite_differences():
    m = fm.MLP([8, 4, 2], device="reference", dtype="float64", seed=0, activation="tanh")
    loss, grads = m.compute_gradients(X, y)
    W1, b1, W2, b2 = m.get_weights()
    eps = 1e-6
    for (i, j) in [(0, 0), (3, 7), (1, 2)]:
        Wp = W1.copy(); Wp[i, j] += eps
        m.set_weights([Wp, b1, W2, b2]); lp = m.evaluate(X, y)["loss"]
        Wm = W1.copy(); Wm[i, j] -= eps
        m.set_weights([Wm, b1, W2, b2]); lm = m.evaluate(X, y)["loss"]
        assert grads["hidden1"]["dW"][i, j] == pytest.approx((lp - lm) / (2 * eps), rel=1e-5, abs=1e-9)


def test_compute_gradients_bad_input():
    m = fm.MLP([8, 4, 2], device="cpu", seed=0)
    with pytest.raises(ValueError, match="X"):
        m.compute_gradients(X[:, :3], y)
    with pytest.raises(ValueError):
        m.compute_gradients(X, y[:5])


def test_vanishing_gradients_sigmoid_vs_residual_vs_batchnorm():
    """First-layer / last-layer gradient norm in a 20-layer sigmoid network: vanishing in a
    plain stack (about 1e-12), not with skip connections or batch normalisation."""
    sizes = [8] + [16] * 20 + [2]
    ratio = {}
    for kind, kw in [("plain", {}), ("residual", {"residual": True}), ("batch_norm", {"batch_norm": True})]:
        m = fm.MLP(sizes, activation="sigmoid", seed=0, device="cpu", **kw)
        n = _norms(m.compute_gradients(X, y)[1])
        ratio[kind] = n["hidden1"] / n["output"]
    assert ratio["plain"] < 1e-8
    assert ratio["residual"] > 1e4 * ratio["plain"]
    assert ratio["batch_norm"] > 1e4 * ratio["plain"]


def test_gradient_monitor_records_per_epoch_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    m = fm.MLP([8, 6, 6, 2], activation="sigmoid", seed=0, device="cpu")
    h = m.fit(X, y, epochs=3, verbose=0, callbacks=[fm.GradientMonitor()])
    keys = [k for k in h.history if k.startswith("grad_norm/")]
    assert keys == ["grad_norm/hidden1", "grad_norm/hidden2", "grad_norm/output"]
    assert all(len(h.history[k]) == 3 and min(h.history[k]) > 0 for k in keys)
    # on a fixed batch: exactly compute_gradients on it
    fixed = fm.GradientMonitor(data=(X, y))
    h2 = m.fit(X, y, epochs=1, verbose=0, callbacks=[fixed])
    expected = _norms(m.compute_gradients(X, y)[1])
    assert h2.history["grad_norm/hidden1"][0] == pytest.approx(expected["hidden1"], rel=1e-6)
    fig = h.plot(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0
    assert any(ax.get_title() == "gradient norm per layer" for ax in fig.axes)
    fig = h.plot(keys=["grad_norm/output"])
    assert len(fig.axes) == 1
    with pytest.raises(TypeError, match="pair"):
        fm.GradientMonitor(data=X)
