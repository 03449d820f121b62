"""fit's compiled runs of steps on the CPU (fastmlp/_fast_fit.py, kernels/cpu_epoch.py)
against the step-by-step path: the same weights, optimizer state, history and divergence,
bit for bit, for every loss, metric and optimizer the fast path takes; and the fits it must
leave to the step-by-step path."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp import _fast_fit
from fastmlp.callbacks import Callback

N, F = 203, 7  # 203 = 6 full batches of 32 and a partial one of 11


@pytest.fixture
def planned(monkeypatch):
    """Records whether each fit took the fast path."""
    taken = []
    plan = _fast_fit.plan

    def spy(*args, **kwargs):
        p = plan(*args, **kwargs)
        taken.append(p is not None)
        return p

    monkeypatch.setattr(_fast_fit, "plan", spy)
    return taken


def _data(loss, outputs, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, F))
    if loss == "cross_entropy":
        y = rng.integers(0, outputs, N)
    elif loss == "binary_cross_entropy":
        y = (rng.random((N, outputs)) > 0.5).astype(np.float64)
        y = y[:, 0] if outputs == 1 else y
    elif loss == "poisson":
        y = rng.poisson(2.0, (N, outputs)).astype(np.float64)
    else:
        y = rng.standard_normal((N, outputs))
    return X, y


def _fit(loss, outputs, optimizer, fast, monkeypatch=None, dtype="float32", hidden="relu",
         output="identity", **fit_kwargs):
    X, y = _data(loss, outputs)
    model = fm.MLP([F, 13, 9, outputs], activation=hidden, output=output, loss=loss,
                   optimizer=optimizer, device="cpu", dtype=dtype, seed=3,
                   label_smoothing=fit_kwargs.pop("label_smoothing", 0.0))
    if not fast:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_fast_fit, "plan", lambda *a, **k: None)
            history = model.fit(X, y, epochs=3, batch_size=32, verbose=0, **fit_kwargs)
    else:
        history = model.fit(X, y, epochs=3, batch_size=32, verbose=0, **fit_kwargs)
    return model, history


def _assert_same(a, b):
    (ma, ha), (mb, hb) = a, b
    for wa, wb in zip(ma.get_weights(), mb.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    for name in ma._opt_state:
        if name != "step":
            np.testing.assert_array_equal(ma._opt_state[name], mb._opt_state[name])
    assert ma._opt_state["step"] == mb._opt_state["step"] == 3 * -(-ha.params["samples"] // 32)
    assert ha.history == hb.history


OPTIMIZERS = {
    "sgd": lambda: fm.SGD(0.05),
    "sgd-nesterov-decay": lambda: fm.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam-coupled": lambda: fm.Adam(3e-3, weight_decay=1e-2, decoupled=False),
    "adamw-amsgrad": lambda: fm.AdamW(3e-3, amsgrad=True),
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("loss, outputs, output", [
    ("cross_entropy", 4, "identity"), ("cross_entropy", 3, "softmax"),
    ("binary_cross_entropy", 1, "sigmoid"), ("binary_cross_entropy", 3, "identity"),
    ("mse", 2, "identity"), ("poisson", 2, "identity"),
])
def test_fast_path_is_the_step_by_step_path(planned, loss, outputs, output, optimizer):
    fast = _fit(loss, outputs, OPTIMIZERS[optimizer](), True, output=output)
    slow = _fit(loss, outputs, OPTIMIZERS[optimizer](), False, output=output)
    assert planned == [True]
    _assert_same(fast, slow)


@pytest.mark.parametrize("case", ["float64", "tanh", "gelu", "label_smoothing", "sample_weight",
                                  "class_weight", "validation_split"])
def test_fast_path_options(planned, case):
    rng = np.random.default_rng(1)
    kwargs = {"float64": dict(dtype="float64"), "tanh": dict(hidden="tanh"), "gelu": dict(hidden="gelu"),
              "label_smoothing": dict(label_smoothing=0.1),
              "sample_weight": dict(sample_weight=rng.random(N) + 0.5),
              "class_weight": dict(class_weight={0: 1.0, 1: 2.0, 2: 0.5}),
              "validation_split": dict(validation_split=0.2)}[case]
    fast = _fit("cross_entropy", 3, fm.Adam(3e-3), True, **kwargs)
    slow = _fit("cross_entropy", 3, fm.Adam(3e-3), False, **kwargs)
    assert planned == [True]
    _assert_same(fast, slow)


def test_divergence_is_caught_at_the_same_step(planned):
    X, y = _data("mse", 1)
    y = y * 1e30  # the loss overflows float32 at once

    def fit(fast):
        model = fm.MLP([F, 8, 1], loss="mse", optimizer=fm.SGD(1.0), device="cpu", seed=0)
        with pytest.MonkeyPatch.context() as mp:
            if not fast:
                mp.setattr(_fast_fit, "plan", lambda *a, **k: None)
            with pytest.warns(RuntimeWarning, match="diverged") as record:
                history = model.fit(X, y, epochs=2, batch_size=32, verbose=0, on_divergence="warn")
        return model, history, str(record[0].message)

    (ma, ha, msg_a), (mb, hb, msg_b) = fit(True), fit(False)
    assert planned == [True]
    assert ha.diverged == hb.diverged
    assert msg_a == msg_b
    for wa, wb in zip(ma.get_weights(), mb.get_weights()):
        np.testing.assert_array_equal(wa, wb)


class _EveryBatch(Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, batch, logs=None):
        self.seen.append(batch)


def test_batch_callbacks_and_other_models_run_step_by_step(planned):
    X, y = _data("cross_entropy", 3)
    every = _EveryBatch()
    fm.MLP([F, 8, 3], device="cpu", seed=0).fit(X, y, epochs=1, batch_size=32, verbose=0,
                                                 callbacks=[every])
    assert every.seen == list(range(7))  # every step reaches the callback
    fm.MLP([F, 8, 3], device="cpu", seed=0, optimizer=fm.SGD(0.1, clip_norm=1.0)).fit(
        X, y, epochs=1, verbose=0)
    fm.MLP([F, 8, 3], device="cpu", seed=0, optimizer="rmsprop").fit(X, y, epochs=1, verbose=0)
    fm.Sequential([fm.Dense(F, 8, "relu"), fm.Dropout(0.2), fm.Dense(3)],
                  device="cpu", seed=0).fit(X, y, epochs=1, verbose=0)
    frozen = fm.MLP([F, 8, 3], device="cpu", seed=0)
    frozen.layers[0].trainable = False
    frozen.fit(X, y, epochs=1, verbose=0)
    fm.MLP([F, 8, 3], device="cpu", seed=0, reduction="sum").fit(X, y, epochs=1, verbose=0)
    assert planned == [False] * 6
    fm.MLP([F, 8, 3], device="cpu", seed=0).fit(X, y, epochs=1, verbose=1)  # the progress bar
    assert planned[-1] is True


def test_runs_are_sized_by_time(monkeypatch, planned):
    """Later runs of a fit take about RUN_SECONDS; a tiny budget gives runs of one step,
    which must still be the same fit."""
    monkeypatch.setattr(_fast_fit, "RUN_SECONDS", 1e-9)
    fast = _fit("cross_entropy", 3, fm.Adam(3e-3), True)
    slow = _fit("cross_entropy", 3, fm.Adam(3e-3), False)
    assert planned == [True]
    _assert_same(fast, slow)


@pytest.mark.parametrize("estimator, solver, weighted", [
    ("MLPClassifier", "adam", False), ("MLPClassifier", "sgd", True), ("MLPRegressor", "adam", True)])
def test_sklearn_estimators_take_the_fast_path(planned, estimator, solver, weighted):
    """The estimators' epochs (per-step weight decay, per-batch scaled sample weights) give
    the step-by-step fit's coefficients and loss curve bit for bit."""
    pytest.importorskip("sklearn")
    import fastmlp.sklearn as fsk

    X, y = _data("cross_entropy" if estimator == "MLPClassifier" else "mse", 3)
    y = y if estimator == "MLPClassifier" else y[:, 0]
    w = np.random.default_rng(2).random(N) + 0.5 if weighted else None

    def fit(fast):
        est = getattr(fsk, estimator)(hidden_layer_sizes=(11,), solver=solver, batch_size=32,
                                      max_iter=3, alpha=1e-3, random_state=0, device="cpu",
                                      n_iter_no_change=np.inf)
        with pytest.MonkeyPatch.context() as mp, pytest.warns(Warning):
            if not fast:
                mp.setattr(_fast_fit, "plan", lambda *a, **k: None)
            return est.fit(X, y, sample_weight=w)

    a, b = fit(True), fit(False)
    assert planned == [True]
    assert a.loss_curve_ == b.loss_curve_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(ca, cb)
