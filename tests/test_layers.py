"""Training features: dropout, batch norm, new activations, weights, label smoothing,
clipping, optimizers, schedules, callbacks, metrics and plots."""

import math

import numpy as np
import pytest

import fastmlp

rng0 = np.random.default_rng(0)
X_SMALL = rng0.normal(size=(12, 5))
Y_SMALL = rng0.integers(0, 3, 12)


def _digits():
    X, y = fastmlp.datasets.load_digits()
    return X[:1200], y[:1200], X[1200:], y[1200:]


# ------------------------------------------------------------------------------ gradients

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


# ------------------------------------------------------------------------------ dropout

def test_dropout_masks_statistics_and_inference():
    model = fastmlp.Sequential([fastmlp.Dense(20, 400, "relu"), fastmlp.Dropout(0.3),
                                fastmlp.Dense(400, 2)], seed=0)
    X = np.abs(np.random.default_rng(1).normal(size=(64, 20))).astype(np.float32)
    v = model._buffers_for(64, np.zeros(64, np.int64)).views(64)
    v.A[0][...] = X
    model._forward(v, training=True)
    hidden, dropped = v.A[1], v.A[2]
    alive = hidden != 0
    frac = 1 - (dropped[alive] != 0).mean()
    assert abs(frac - 0.3) < 0.02
    kept = dropped[alive] != 0
    np.testing.assert_allclose(dropped[alive][kept], hidden[alive][kept] / 0.7, rtol=1e-6)
    # off in inference: predict twice gives the same answer, equal to the no-dropout network
    p1, p2 = model.predict_proba(X), model.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    plain = fastmlp.Sequential([fastmlp.Dense(20, 400, "relu"), fastmlp.Dense(400, 2)], seed=0)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(p1, plain.predict_proba(X), rtol=1e-6)


def test_dropout_is_seeded():
    X, y, _, _ = _digits()
    runs = []
    for _ in range(2):
        model = fastmlp.MLP([64, 32, 10], dropout=0.5, seed=5)
        model.fit(X[:300], y[:300], epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ batch norm

def test_batchnorm_running_statistics_follow_the_batches():
    model = fastmlp.Sequential([fastmlp.BatchNorm(4), fastmlp.Dense(4, 2)], dtype="float64",
                               optimizer=fastmlp.SGD(lr=1e-9), seed=0)
    X = np.random.default_rng(2).normal(loc=3, scale=2, size=(40, 4))
    y = np.zeros(40, np.int64)
    model.fit(X, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    mean, var = np.zeros(4), np.ones(4)
    for start in range(0, 40, 10):
        batch = X[start : start + 10]
        mean = 0.9 * mean + 0.1 * batch.mean(0)
        var = 0.9 * var + 0.1 * batch.var(0, ddof=1)
    gamma, beta, running_mean, running_var = model.get_weights()[:4]
    np.testing.assert_allclose(running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, var, rtol=1e-12)
    # inference uses them
    out = model._outputs(X[:3], 1024)
    W, b = model.get_weights()[4:]
    expected = (gamma * (X[:3] - mean) / np.sqrt(var + 1e-5) + beta) @ W.T + b
    np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_batchnorm_rejects_training_batches_of_one():
    model = fastmlp.MLP([5, 4, 3], batch_norm=True, seed=0)
    with pytest.raises(ValueError, match="BatchNorm needs at least 2 samples"):
        model.train_step(X_SMALL[:1], Y_SMALL[:1])
    assert model.predict(X_SMALL[:1]).shape == (1,)  # inference is fine


def test_batch_norm_helps_a_deep_sigmoid_network():
    X, y, Xt, yt = _digits()
    scores = {}
    for bn in (False, True):
        model = fastmlp.MLP([64] + [32] * 6 + [10], activation="sigmoid", batch_norm=bn,
                            optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0)
        model.fit(X, y, epochs=5, batch_size=32, verbose=0)
        scores[bn] = model.evaluate(Xt, yt)["accuracy"]
    assert scores[True] > 0.85 and scores[True] > scores[False] + 0.1, scores


def test_mlp_builds_dropout_and_batchnorm_layers():
    model = fastmlp.MLP([8, 6, 4, 2], activation=["relu", "tanh"], dropout=0.1, batch_norm=True)
    kinds = [(type(l).__name__, l.activation) for l in model.layers]
    assert kinds == [("Dense", "identity"), ("BatchNorm", "relu"), ("Dropout", "identity"),
                     ("Dense", "identity"), ("BatchNorm", "tanh"), ("Dropout", "identity"),
                     ("Dense", "identity")]
    assert [w.shape for w in model.get_weights()][:6] == [(6, 8), (6,), (6,), (6,), (6,), (6,)]


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


# ------------------------------------------------------------------------------ schedules

def _lrs(schedule, epochs=8, lr=0.1):
    model = fastmlp.MLP([5, 4, 3], optimizer=fastmlp.SGD(lr=lr), seed=0)
    history = model.fit(X_SMALL, Y_SMALL, epochs=epochs, verbose=0, callbacks=[schedule])
    return history.history["lr"]


def test_step_exponential_and_cosine_schedules():
    assert _lrs(fastmlp.StepDecay(3, gamma=0.5)) == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)
    assert _lrs(fastmlp.ExponentialDecay(0.9)) == pytest.approx([0.1 * 0.9**e for e in range(8)])
    cos = _lrs(fastmlp.CosineDecay(8, min_lr=0.01, warmup_epochs=2))
    expected = [0.05, 0.1] + [0.01 + 0.09 * (1 + math.cos(math.pi * t / 6)) / 2 for t in range(6)]
    assert cos == pytest.approx(expected)


def test_constant_lr_is_logged():
    assert _lrs(fastmlp.LambdaCallback(), epochs=3) == [0.1, 0.1, 0.1]


def test_reduce_lr_on_plateau():
    class FakeLoss(fastmlp.Callback):  # a monitored value that stops improving after epoch 2
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [3, 2, 1, 1, 1, 1, 1, 1, 1, 1][epoch]

    model = fastmlp.MLP([5, 4, 3], optimizer=fastmlp.SGD(lr=0.1), seed=0)
    history = model.fit(X_SMALL, Y_SMALL, epochs=10, verbose=0,
                        callbacks=[FakeLoss(), fastmlp.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.02)])
    # no improvement from epoch 3 on: after 2 epochs without improvement (epoch 4) the lr is
    # halved; the cooldown epoch resets the count, so it is halved again after epochs 6 and
    # 8, the last time floored at min_lr
    assert history.history["lr"] == pytest.approx([0.1] * 5 + [0.05] * 2 + [0.025] * 2 + [0.02])
    assert model.optimizer.lr == pytest.approx(0.02)


# ------------------------------------------------------------------------------ callbacks

def test_early_stopping_stops_and_restores_best_weights():
    class Recorder(fastmlp.Callback):
        def on_train_begin(self, logs=None):
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [5, 4, 3, 3.5, 3.2, 3.1, 2.0][epoch]
            self.weights.append(self.model.get_weights())

    rec = Recorder()
    stop = fastmlp.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    model = fastmlp.MLP([5, 4, 3], seed=0)
    history = model.fit(X_SMALL, Y_SMALL, epochs=7, verbose=0, callbacks=[rec, stop])
    assert len(history.epoch) == 6 and stop.stopped_epoch == 5 and stop.best_epoch == 2
    for a, b in zip(model.get_weights(), rec.weights[2]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_on_real_validation_loss():
    X, y, _, _ = _digits()
    stop = fastmlp.EarlyStopping(patience=2, min_delta=0.01)
    model = fastmlp.MLP([64, 128, 10], optimizer=fastmlp.Adam(lr=0.01), seed=0)
    history = model.fit(X, y, epochs=200, validation_split=0.2, verbose=0, callbacks=[stop])
    assert stop.stopped_epoch is not None and len(history.epoch) < 200
    val = history.history["val_loss"]
    assert min(val[-3:]) > min(val) - 0.01


def test_early_stopping_names_a_missing_monitor():
    with pytest.raises(ValueError, match="val_loss"):
        fastmlp.MLP([5, 4, 3]).fit(X_SMALL, Y_SMALL, epochs=2, verbose=0,
                                   callbacks=[fastmlp.EarlyStopping()])


def test_model_checkpoint(tmp_path):
    X, y, Xt, yt = _digits()
    path = tmp_path / "best.npz"
    ckpt = fastmlp.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    every = fastmlp.ModelCheckpoint(str(tmp_path / "ep{epoch:02d}.npz"), monitor="loss")
    model = fastmlp.MLP([64, 16, 10], optimizer=fastmlp.Adam(lr=0.01), seed=0)
    history = model.fit(X, y, epochs=4, validation_split=0.2, verbose=0, callbacks=[ckpt, every])
    assert sorted(p.name for p in tmp_path.glob("ep*.npz")) == [f"ep0{i}.npz" for i in range(1, 5)]
    best = fastmlp.load(path)
    X_val, y_val = X[960:], y[960:]
    assert best.evaluate(X_val, y_val)["accuracy"] == pytest.approx(max(history.history["val_accuracy"]))


def test_lambda_callback_and_stopping():
    seen = []

    def on_epoch_end(epoch, logs):
        seen.append(epoch)
        if epoch == 2:
            model.stop_training = True

    model = fastmlp.MLP([5, 4, 3], seed=0)
    model.fit(X_SMALL, Y_SMALL, epochs=10, verbose=0, callbacks=[fastmlp.LambdaCallback(on_epoch_end=on_epoch_end)])
    assert seen == [0, 1, 2]
    with pytest.raises(TypeError, match="on_epoch_ending"):
        fastmlp.LambdaCallback(on_epoch_ending=print)


# ------------------------------------------------------------------------------ metrics, plot

def test_regression_metrics_in_history_and_evaluate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = np.stack([X[:, 0] * 2, X[:, 1] - X[:, 2]], axis=1)
    model = fastmlp.MLP([3, 16, 2], loss="mse", optimizer=fastmlp.Adam(lr=0.01), seed=0)
    history = model.fit(X, Y, epochs=30, validation_split=0.25, verbose=0)
    for key in ("mae", "r2", "val_mae", "val_r2"):
        assert len(history.history[key]) == 30
    assert history.history["r2"][-1] > 0.9 and history.history["r2"][-1] > history.history["r2"][0]
    pred = model.predict(X[150:])
    result = model.evaluate(X[150:], Y[150:])
    assert result["r2"] == pytest.approx(history.history["val_r2"][-1], rel=1e-6)
    assert result["mae"] == pytest.approx(np.abs(pred - Y[150:]).mean(), rel=1e-5)


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    X, y, _, _ = _digits()
    history = fastmlp.MLP([64, 16, 10], seed=0).fit(X, y, epochs=3, validation_split=0.2, verbose=0)
    path = tmp_path / "curves.png"
    fig = history.plot(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert len(fig.axes[0].lines) == 2  # training and validation
    with pytest.raises(ValueError, match="keys"):
        history.plot(keys=["nope"])
    with pytest.raises(ValueError, match="empty"):
        fastmlp.History().plot()
