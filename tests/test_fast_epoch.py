"""fit's compiled runs of steps on the CPU (fastmlp/_fast_fit.py, kernels/cpu_epoch.py)
against the step-by-step path: the same weights, optimizer state, history and divergence,
bit for bit, for every loss, metric and optimizer the fast path takes (plain SGD, whose update
the fast path fuses into the weight-gradient products, to rounding); and the fits it must
leave to the step-by-step path."""

import contextlib

import numpy as np
import pytest

import fastmlp as fm
from _shared_fits import F, N, OPTIMIZERS, assert_same_fits, fit_data
from fastmlp import _fast_fit
from fastmlp.callbacks import Callback



@pytest.fixture(autouse=True)
def one_core(monkeypatch):
    """One thread per step: these tests compare runs bit for bit; a batch split across two
    threads agrees to rounding (tests/test_fast_split.py)."""
    monkeypatch.setattr(_fast_fit, "_cores", lambda: 1)


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


def _fit(loss, outputs, optimizer, fast, monkeypatch=None, dtype="float32", hidden="relu",
         output="identity", **fit_kwargs):
    X, y = fit_data(loss, outputs)
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


def _assert_same(a, b, rtol=None):
    """Bit for bit; or, with rtol (plain SGD, whose update the fast path fuses into the
    weight-gradient products), to rounding; and every step made."""
    assert_same_fits(a, b, rtol)
    for name in a[0]._opt_state:  # the optimizer's state bit for bit even then
        if name != "step":
            np.testing.assert_array_equal(a[0]._opt_state[name], b[0]._opt_state[name])
    assert a[0]._opt_state["step"] == 3 * -(-a[1].params["samples"] // 32)




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
    _assert_same(fast, slow, rtol=1e-5 if optimizer == "sgd" else None)


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
    X, y = fit_data("mse", 1)
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
    X, y = fit_data("cross_entropy", 3)
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

    X, y = fit_data("cross_entropy" if estimator == "MLPClassifier" else "mse", 3)
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch, sizes, acts", [
    (1, (5, 3, 2), ("relu", "identity")),
    (17, (7, 13, 9, 4), ("gelu", "tanh", "identity")),
    (33, (3, 1, 6), ("leaky_relu", "identity")),
])
@pytest.mark.parametrize("transposed", [False, True])
def test_fused_sgd_backward_is_backward_then_sgd(dtype, batch, sizes, acts, transposed):
    """kernels/cpu_epoch._mlp_backward_sgd (plain SGD's fused update) against
    _mlp_backward then W -= lr dW, b -= lr db: the same deltas (made from the old W; bit for
    bit, or to rounding when the weights are held transposed), and weights to rounding."""
    from numba.typed import List

    from fastmlp.kernels import blas, codes, cpu, cpu_epoch

    if not blas.AVAILABLE:
        pytest.skip(f"no BLAS reachable from Numba here: {blas.WHY_NOT}")
    rng = np.random.default_rng(batch)
    codes_ = np.array([codes.ACTIVATIONS[a] for a in acts], np.int64)
    W = [rng.standard_normal((o, i)).astype(dtype) for i, o in zip(sizes, sizes[1:])]
    b = [rng.standard_normal(o).astype(dtype) for o in sizes[1:]]
    A = [rng.standard_normal((batch, s)).astype(dtype) for s in sizes]
    D = [a.copy() for a in A]
    lr = dtype(0.05)
    out = {}
    for fused in (False, True):
        Wk, bk = List(w.copy() for w in W), List(x.copy() for x in b)
        delta = List(np.zeros((batch, s), dtype) for s in sizes[1:])
        delta[-1][:] = rng.standard_normal((batch, sizes[-1]))
        if not fused:
            dW = List(np.zeros_like(w) for w in W)
            db = List(np.zeros_like(x) for x in b)
            last = delta[-1].copy()
            cpu._mlp_backward(delta, List(A), List(D), Wk, dW, db, codes_)
            for l in range(len(W)):
                Wk[l] -= lr * dW[l]
                bk[l] -= lr * db[l]
            out[False] = (Wk, bk, [*delta[:-1], last])
        else:
            delta[-1][:] = out[False][2][-1]
            if transposed:
                Wk = List(w.T.copy() for w in W)  # a copy: ascontiguousarray(w.T) is w for one row
            cpu_epoch._mlp_backward_sgd(delta, List(A), List(D), Wk, bk, codes_, lr, transposed)
            if transposed:
                Wk = [w.T for w in Wk]
            out[True] = (Wk, bk, list(delta))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for fused_delta, delta in zip(out[True][2], out[False][2]):
        # every delta made from the old W (the product's alpha scales the update, not delta)
        if transposed:
            np.testing.assert_allclose(fused_delta, delta, rtol=0, atol=rtol * np.abs(delta).max())
        else:
            np.testing.assert_array_equal(fused_delta, delta)
    for w_fused, w_plain, w0 in zip(out[True][0], out[False][0], W):
        scale = np.abs(w0).max() + np.abs(w_plain - w0).max()
        np.testing.assert_allclose(w_fused, w_plain, rtol=0, atol=rtol * scale)
        assert not np.array_equal(w_plain, w0)  # the step moved the weights
    for b_fused, b_plain, b0 in zip(out[True][1], out[False][1], b):
        np.testing.assert_allclose(b_fused, b_plain, rtol=0, atol=rtol * (np.abs(b0).max() + 1))


def test_plain_sgd_in_float64_is_the_step_by_step_path_to_rounding(planned):
    fast = _fit("cross_entropy", 3, fm.SGD(0.05), True, dtype="float64")
    slow = _fit("cross_entropy", 3, fm.SGD(0.05), False, dtype="float64")
    assert planned == [True]
    _assert_same(fast, slow, rtol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_plain_sgd_runs_train_w_transposed_and_give_it_back_after_each_run(monkeypatch,
                                                                             weight_decay):
    """Plain SGD's runs train each layer's W.T (_Plan._transposed): the same fit as on W to
    rounding, with the weights back in W after every run (read after each run of one step);
    with weight decay (no fused update) the runs train W itself."""
    monkeypatch.setattr(_fast_fit, "RUN_SECONDS", 1e-9)  # runs of one step
    X, y = fit_data("cross_entropy", 3)
    seen, ways = [], []
    transposed, steps = _fast_fit._Plan._transposed, _fast_fit._Plan.steps

    @contextlib.contextmanager
    def spy_transposed(self, *args):
        with transposed(self, *args) as W:
            ways.append(W is not self.model.W)
            yield W

    def spy_steps(self, *args, **kwargs):
        done = steps(self, *args, **kwargs)
        seen.append(self.model.get_weights()[0].copy())
        return done

    monkeypatch.setattr(_fast_fit._Plan, "_transposed", spy_transposed)
    monkeypatch.setattr(_fast_fit._Plan, "steps", spy_steps)

    def fit(limit):
        monkeypatch.setattr(_fast_fit, "TRANSPOSE_PARAMS", limit)
        model = fm.MLP([F, 13, 9, 3], optimizer=fm.SGD(0.05, weight_decay=weight_decay),
                       device="cpu", seed=3)
        seen.clear()
        history = model.fit(X, y, epochs=2, batch_size=32, verbose=0)
        return (model, history), list(seen)

    (on_wt, seen_wt), (on_w, seen_w) = fit(10**6), fit(0)
    runs = len(seen_wt)
    assert runs == len(seen_w) >= 6  # after the first run of each epoch, runs of one step
    assert ways == [weight_decay == 0] * runs + [False] * runs
    assert_same_fits(on_wt, on_w, rtol=1e-5 if weight_decay == 0 else None)
    for a, b in zip(seen_wt, seen_w):  # each run's weights, back in W
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
    assert not np.array_equal(seen_wt[0], seen_wt[1])


def test_plain_sgd_with_a_layer_without_bias_is_not_fused_and_keeps_its_zero_b(planned):
    """Dense(use_bias=False) keeps a fixed zero b that a fused update would move: such a
    model takes the unfused update, bit for bit the step-by-step path's."""
    X, y = fit_data("cross_entropy", 3)

    def fit(fast):
        model = fm.Sequential([fm.Dense(F, 8, "tanh", use_bias=False), fm.Dense(8, 3)],
                              device="cpu", dtype="float32", seed=0, optimizer=fm.SGD(0.1))
        with pytest.MonkeyPatch.context() as mp:
            if not fast:
                mp.setattr(_fast_fit, "plan", lambda *a, **k: None)
            model.fit(X, y, epochs=2, batch_size=32, verbose=0)
        return model

    fast, slow = fit(True), fit(False)
    assert planned == [True]
    for wa, wb in zip(fast.get_weights(), slow.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(fast.b[0], 0)


def test_each_epochs_order_is_shuffled_in_place_with_permutations_draws(monkeypatch):
    """fit draws each epoch's order as rng.permutation(n) draws it, into one array shuffled
    in place: no 8-bytes-a-sample array per epoch (it raised the memory benchmark's RSS)."""
    import copy

    X, y = fit_data("cross_entropy", 3)
    model = fm.MLP([F, 13, 9, 3], device="cpu", seed=3)
    expected_rng = copy.deepcopy(model._rng)
    orders, epoch = [], _fast_fit._Plan.epoch

    def spy(self, data, *args, **kwargs):
        orders.append((data[3], data[3].copy()))
        return epoch(self, data, *args, **kwargs)

    monkeypatch.setattr(_fast_fit._Plan, "epoch", spy)
    model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    assert len(orders) == 3
    assert all(array is orders[0][0] for array, _ in orders)  # the same array every epoch
    for (_, order) in orders:
        np.testing.assert_array_equal(order, expected_rng.permutation(N))
