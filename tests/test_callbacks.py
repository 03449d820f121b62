"""Callbacks and what History records: learning-rate schedules, ReduceLROnPlateau,
EarlyStopping, ModelCheckpoint, LambdaCallback, regression metrics, History.plot."""

import math

import numpy as np
import pytest

import fastmlp
from helpers import digits_split as _digits

rng0 = np.random.default_rng(0)
X_SMALL = rng0.normal(size=(12, 5))
Y_SMALL = rng0.integers(0, 3, 12)


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


# ------------------------------------------------------------------------------ checked at fit's start

from fastmlp import _training
from fastmlp._metrics import _Metrics
from fastmlp.callbacks import check_callbacks, fit_log_keys

CLASSIFIER_KEYS = ["loss", "accuracy", "lr"]  # fit_log_keys of a classifier, no validation


def test_fit_log_keys_are_the_keys_fit_logs():
    """The keys come from fit's own metrics; they are what a fit's history holds."""
    classifier = fastmlp.MLP([5, 4, 3], seed=0)
    assert fit_log_keys(_Metrics(classifier), False) == CLASSIFIER_KEYS
    keys = fit_log_keys(_Metrics(classifier), True)
    assert keys == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    history = classifier.fit(X_SMALL, Y_SMALL, epochs=1, validation_split=0.25, verbose=0)
    assert sorted(history.history) == sorted(keys)
    regressor = fastmlp.MLP([5, 4, 2], loss="mse", seed=0)
    keys = fit_log_keys(_Metrics(regressor, np.zeros((12, 2))), True)
    assert keys == ["loss", "mae", "r2", "val_loss", "val_mae", "val_r2", "lr"]
    history = regressor.fit(X_SMALL, np.zeros((12, 2)), epochs=1, validation_split=0.25, verbose=0)
    assert sorted(history.history) == sorted(keys)


@pytest.mark.parametrize("make, who", [
    (lambda: fastmlp.EarlyStopping(), "EarlyStopping"),
    (lambda: fastmlp.ReduceLROnPlateau(), "ReduceLROnPlateau"),
    (lambda: fastmlp.ModelCheckpoint("best.npz", save_best_only=True), "ModelCheckpoint"),
])
def test_a_monitor_without_validation_data_is_named(make, who):
    with pytest.raises(ValueError) as info:
        check_callbacks([make()], CLASSIFIER_KEYS)
    message = str(info.value)
    assert who in message and "monitor='val_loss'" in message
    assert "['accuracy', 'loss', 'lr']" in message and "validation_data" in message


def test_a_metric_the_model_does_not_compute_is_named():
    with pytest.raises(ValueError, match=r"monitor='val_r2'.*'val_accuracy'"):
        check_callbacks([fastmlp.EarlyStopping(monitor="val_r2")],
                        ["loss", "accuracy", "val_loss", "val_accuracy", "lr"])
    check_callbacks([fastmlp.EarlyStopping(monitor="accuracy"),
                     fastmlp.ReduceLROnPlateau(monitor="loss"),
                     fastmlp.ModelCheckpoint("every.npz")], CLASSIFIER_KEYS)  # all well


def test_keys_a_callback_of_yours_may_add_are_not_refused():
    """A callback of the user's earlier in the list may write the monitored key into the
    logs (as the tests above do): from there on the keys are not known, nothing is refused."""
    class Writer(fastmlp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = 1.0

    stop = fastmlp.EarlyStopping()
    check_callbacks([Writer(), stop], CLASSIFIER_KEYS)
    check_callbacks([fastmlp.LambdaCallback(on_epoch_end=print), stop], CLASSIFIER_KEYS)
    for before in (fastmlp.LambdaCallback(on_train_begin=print), fastmlp.GradientMonitor(),
                   fastmlp.StepDecay(2)):  # these write no logs: still checked
        with pytest.raises(ValueError, match="EarlyStopping"):
            check_callbacks([before, stop], CLASSIFIER_KEYS)
    with pytest.raises(ValueError, match="EarlyStopping"):  # after it, not before
        check_callbacks([stop, Writer()], CLASSIFIER_KEYS)


def test_a_checkpoint_suffix_model_save_cannot_write_is_refused_at_once():
    with pytest.raises(ValueError, match=r"filepath must end in one of \['.npz'\].*best.keras"):
        fastmlp.ModelCheckpoint("best.keras")


def test_a_checkpoint_folder_must_exist_and_be_writable(tmp_path, monkeypatch):
    missing = fastmlp.ModelCheckpoint(tmp_path / "nope" / "best.npz")
    with pytest.raises(ValueError, match="ModelCheckpoint.*nope.*does not exist"):
        check_callbacks([missing], CLASSIFIER_KEYS)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="does not exist"):
        check_callbacks([fastmlp.ModelCheckpoint(tmp_path / "a_file" / "best.npz")],
                        CLASSIFIER_KEYS)
    here = fastmlp.ModelCheckpoint(tmp_path / "best.npz")
    check_callbacks([here], CLASSIFIER_KEYS)
    monkeypatch.setattr("os.access", lambda path, mode: False)  # as a read-only folder reads
    with pytest.raises(PermissionError, match="ModelCheckpoint.*may not write into"):
        check_callbacks([here], CLASSIFIER_KEYS)


def test_checkpoint_filepath_fields_must_be_logged(tmp_path):
    keys = ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    good = fastmlp.ModelCheckpoint(str(tmp_path / "ep{epoch:02d}-{val_loss:.3f}.npz"))
    check_callbacks([good], keys)
    with pytest.raises(ValueError, match=r"\['val_los'\], which this fit does not log"):
        check_callbacks([fastmlp.ModelCheckpoint(str(tmp_path / "{val_los:.3f}.npz"))], keys)
    with pytest.raises(ValueError, match="cannot be formatted"):
        check_callbacks([fastmlp.ModelCheckpoint(str(tmp_path / "{epoch:.2q}.npz"))], keys)
    folder = fastmlp.ModelCheckpoint(str(tmp_path / "run-{epoch}" / "m.npz"))
    with pytest.raises(ValueError, match="run-1.*does not exist"):
        check_callbacks([folder], keys)
    check_callbacks([fastmlp.LambdaCallback(on_epoch_end=print), folder], keys)  # not known


@pytest.mark.skipif(not hasattr(_training, "check_callbacks"),
                    reason="fit does not call check_callbacks yet (fastmlp/_training.py)")
def test_fit_refuses_a_monitor_before_its_first_epoch():
    seen = []
    with pytest.raises(ValueError, match="EarlyStopping: monitor='val_loss'"):
        fastmlp.MLP([5, 4, 3]).fit(X_SMALL, Y_SMALL, epochs=2, verbose=0, callbacks=[
            fastmlp.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch)),
            fastmlp.EarlyStopping()])
    assert seen == []


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
