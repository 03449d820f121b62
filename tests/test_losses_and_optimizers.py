"""Loss options and optimizers in training: sample and class weights, label smoothing,
gradient clipping, the optimizers against the reference, bad optimizer arguments."""

import numpy as np
import pytest

import fastmlp
from helpers import digits_split as _digits

rng0 = np.random.default_rng(0)
X_SMALL = rng0.normal(size=(12, 5))
Y_SMALL = rng0.integers(0, 3, 12)


# ------------------------------------------------------------------------------ losses

def test_sample_weight_and_class_weight():
    X, y, _, _ = _digits()
    Xb, yb = X[:50], y[:50]
    w = np.where(yb == 3, 2.0, 1.0)
    a = fastmlp.MLP([64, 16, 10], seed=0, dtype="float64")
    b = fastmlp.MLP([64, 16, 10], seed=0, dtype="float64")
    loss_w = a.train_step(Xb, yb, sample_weight=w)
    hist = b.fit(Xb, yb, epochs=1, batch_size=50, class_weight={3: 2.0}, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(loss_w, rel=1e-12)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-12)
    # by hand: weighted per-sample cross-entropies over the batch size
    c = fastmlp.MLP([64, 16, 10], seed=0, dtype="float64")
    P = c.predict_proba(Xb)
    assert loss_w == pytest.approx(np.sum(-w * np.log(P[np.arange(50), yb])) / 50, rel=1e-10)


def test_class_weight_shifts_the_decision():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(np.int64)
    preds = []
    for cw in (None, {1: 10.0}):
        model = fastmlp.MLP([2, 8, 2], optimizer=fastmlp.Adam(lr=0.01), seed=0)
        model.fit(X, y, epochs=30, batch_size=32, class_weight=cw, verbose=0)
        preds.append(model.predict(X).mean())
    assert preds[1] > preds[0] + 0.1


@pytest.mark.parametrize("bad, match", [
    (dict(sample_weight=np.ones(3)), "sample_weight must have shape"),
    (dict(sample_weight=-np.ones(12)), "sample_weight must be >= 0"),
    (dict(sample_weight=np.full(12, np.nan)), "sample_weight must be finite"),
    (dict(class_weight={7: 1.0}), "class_weight keys"),
    (dict(class_weight={0: -1.0}), r"class_weight\[0\]"),
    (dict(class_weight=[1, 2]), "class_weight must be a dict"),
])
def test_bad_weights(bad, match):
    model = fastmlp.MLP([5, 4, 3], seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X_SMALL, Y_SMALL, verbose=0, **bad)


def test_label_smoothing_keeps_logits_smaller():
    X, y, _, _ = _digits()
    norms = []
    for eps in (0.0, 0.3):
        model = fastmlp.MLP([64, 32, 10], optimizer=fastmlp.Adam(lr=0.01), seed=0, label_smoothing=eps)
        model.fit(X, y, epochs=10, verbose=0)
        norms.append(np.abs(model._outputs(X, 1024)).max())
    assert norms[1] < norms[0] / 2
    with pytest.raises(ValueError, match="label_smoothing"):
        fastmlp.MLP([4, 1], loss="binary_cross_entropy", label_smoothing=0.1)


# ------------------------------------------------------------------------------ optimizers

def test_clip_norm_bounds_the_step():
    model = fastmlp.MLP([5, 4, 3], optimizer=fastmlp.SGD(lr=1.0, clip_norm=0.01), dtype="float64", seed=0)
    before = model._theta.copy()
    model.train_step(X_SMALL * 100, Y_SMALL)
    assert np.linalg.norm(model._theta - before) <= 0.01 * (1 + 1e-6)
    assert np.linalg.norm(model._grad) == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("opt", [
    lambda: fastmlp.RMSprop(lr=0.005), lambda: fastmlp.RMSprop(lr=0.005, momentum=0.5, centered=True),
    lambda: fastmlp.Adam(lr=0.01, amsgrad=True), lambda: fastmlp.AdamW(lr=0.01, amsgrad=True),
], ids=["rmsprop", "rmsprop-centered-momentum", "amsgrad", "adamw-amsgrad"])
def test_new_optimizers_train_and_match_reference(opt):
    X, y, Xt, yt = _digits()
    model = fastmlp.MLP([64, 32, 10], optimizer=opt(), seed=0)
    model.fit(X, y, epochs=5, verbose=0)
    assert model.evaluate(Xt, yt)["accuracy"] > 0.85
    cpu = fastmlp.MLP([64, 8, 10], optimizer=opt(), dtype="float64", seed=1)
    ref = fastmlp.MLP([64, 8, 10], optimizer=opt(), dtype="float64", seed=1, device="reference")
    for start in range(0, 60, 20):
        assert cpu.train_step(X[start : start + 20], y[start : start + 20]) == pytest.approx(
            ref.train_step(X[start : start + 20], y[start : start + 20]), rel=1e-12)
    for a, b in zip(cpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("bad, match", [
    (lambda: fastmlp.RMSprop(alpha=1.5), "alpha"), (lambda: fastmlp.RMSprop(momentum=1.0), "momentum"),
    (lambda: fastmlp.Adam(amsgrad="yes"), "amsgrad"), (lambda: fastmlp.SGD(clip_norm=0), "clip_norm"),
    (lambda: setattr(fastmlp.SGD(), "lr", -1.0), "lr"),
])
def test_bad_optimizer_arguments(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()
