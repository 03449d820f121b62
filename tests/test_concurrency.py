"""One model used from many threads at once, training beside inference, Ctrl-C in fit.

Every inference entry point must give, from any number of threads at once, exactly (bit for
bit) what it gives from one thread; inference while another thread trains sees the weights
of one whole step; two models trained in two threads end as if trained one after the other.
"""

import os
import signal
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp._metrics import Evaluation
from _shared_threads import run_threads

THREADS = 8
ROUNDS = 25
SIZES = (1, 7, 100, 1500, 3000)


@pytest.fixture(scope="module")
def digits():
    X, y = fastmlp.datasets.load_digits()
    return X, y


def _inputs(X):
    return [np.ascontiguousarray(np.resize(X, (n, X.shape[1])), np.float32) for n in SIZES]


def _check_many_threads(calls, inputs):
    """calls: {name: f(x)}; every call from every thread equals the single-threaded answer."""
    expected = {(name, i): f(x) for name, f in calls.items() for i, x in enumerate(inputs)}
    mismatches = []

    def work(t):
        rng = np.random.default_rng(t)
        for _ in range(ROUNDS):
            i = int(rng.integers(len(inputs)))
            for name, f in calls.items():
                got, want = f(inputs[i]), expected[name, i]
                if isinstance(want, (dict, Evaluation)):  # evaluate's scores
                    same = got == want
                else:
                    same = (got.shape == want.shape and got.dtype == want.dtype
                            and np.array_equal(got, want, equal_nan=want.dtype.kind == "f"))
                if not same:
                    mismatches.append((name, SIZES[i]))

    run_threads(work, THREADS)
    assert mismatches == []


def test_predict_predict_proba_evaluate_from_many_threads(digits):
    X, y = digits
    model = fastmlp.MLP([64, 128, 64, 10], seed=0)
    model.fit(X, y, epochs=2, verbose=0)
    inputs = _inputs(X)
    labels = {x.shape[0]: np.resize(y, x.shape[0]) for x in inputs}
    _check_many_threads({
        "predict_proba": model.predict_proba,
        "predict": lambda x: model.predict(x, batch_size=256),  # several batches per call
        "evaluate": lambda x: model.evaluate(x, labels[x.shape[0]], batch_size=512),
    }, inputs)


def test_layer_by_layer_model_from_many_threads(digits):
    """Dropout and BatchNorm take the per-layer path (not the fused stack)."""
    X, y = digits
    model = fastmlp.MLP([64, 32, 16, 10], dropout=0.2, batch_norm=True, seed=1)
    model.fit(X, y, epochs=1, verbose=0)
    _check_many_threads({"predict_proba": model.predict_proba}, _inputs(X))


def test_regression_model_from_many_threads(digits):
    X, y = digits
    T = np.column_stack([y, -y]).astype(np.float32)
    model = fastmlp.MLP([64, 16, 2], loss="mse", seed=2)
    model.fit(X, T, epochs=1, verbose=0)
    inputs = _inputs(X)
    targets = {x.shape[0]: np.resize(T, (x.shape[0], 2)) for x in inputs}
    _check_many_threads({
        "predict": model.predict,
        "evaluate": lambda x: model.evaluate(x, targets[x.shape[0]]),
    }, inputs)


@pytest.mark.filterwarnings("ignore::UserWarning")  # max_iter=3 (ConvergenceWarning); R^2 of 1 sample
def test_estimators_from_many_threads(digits):
    pytest.importorskip("sklearn")
    X, y = digits
    X = X.astype(np.float64)
    clf = fastmlp.MLPClassifier(hidden_layer_sizes=(32,), max_iter=3, random_state=0).fit(X, y)
    reg = fastmlp.MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(X, y * 0.1)
    inputs = [np.resize(X, (n, X.shape[1])) for n in SIZES]
    scores = {x.shape[0]: np.resize(y, x.shape[0]) for x in inputs}
    _check_many_threads({
        "clf.predict": clf.predict,
        "clf.predict_proba": clf.predict_proba,
        "clf.score": lambda x: np.float64(clf.score(x, scores[x.shape[0]])),
        "reg.predict": reg.predict,
        "reg.score": lambda x: np.float64(reg.score(x, scores[x.shape[0]] * 0.1)),
    }, inputs)


def test_estimator_predicts_from_threads_while_it_trains_with_its_coefs_read(digits):
    """Once coefs_ has been read, the estimator pushes the lists into its model wherever it
    is used; predictions from other threads while it trains must neither push stale lists
    into the training nor fail, and the lists end with the trained weights."""
    pytest.importorskip("sklearn")
    import warnings

    X, y = digits
    X = X.astype(np.float64)
    clf = fastmlp.MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                                warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
        held = clf.coefs_  # the lists now count: every use of the model checks them
        done = threading.Event()
        answers = []

        def work(i):
            if i == 0:
                try:
                    for _ in range(4):
                        clf.partial_fit(X, y)
                        clf.fit(X, y)
                finally:
                    done.set()
            else:
                while not done.is_set():
                    answers.append(clf.predict_proba(X[:20]))

        run_threads(work, 3)
    assert len(answers) > 5 and all(np.isfinite(a).all() for a in answers)
    assert clf.n_iter_ == 2 and clf.coefs_ is held
    trained = clf.model_.get_weights()
    for W, W_model in zip(held, trained[0::2]):
        np.testing.assert_array_equal(W, W_model.T)
    # the same training in one thread gives the same weights: no stale list got in
    alone = fastmlp.MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                                  warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone.fit(X, y)
        alone.coefs_
        for _ in range(4):
            alone.partial_fit(X, y)
            alone.fit(X, y)
    for a, b in zip(alone.coefs_ + alone.intercepts_, clf.coefs_ + clf.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_inference_while_training_sees_whole_steps(digits):
    """A thread predicting while another trains gets the outputs of the weights after one
    whole step: the trainer records the outputs after every step, the reader's answers
    must all be among them."""
    X, y = digits
    model = fastmlp.MLP([64, 64, 10], optimizer=fastmlp.Adam(lr=1e-3), seed=3)
    probe = np.ascontiguousarray(X[:50], np.float32)
    seen = {model.predict_proba(probe).tobytes()}
    done = threading.Event()

    class Record(fastmlp.Callback):
        def on_batch_end(self, step, logs=None):
            seen.add(model.predict_proba(probe).tobytes())  # the training thread: live weights

    answers = []

    def work(i):
        if i == 0:
            try:
                model.fit(X, y, epochs=3, batch_size=16, verbose=0, callbacks=[Record()])
            finally:
                done.set()
        else:
            while not done.is_set():
                answers.append(model.predict_proba(probe).tobytes())

    run_threads(work, 3)
    assert len(answers) > 10
    assert len(seen) > 100  # the weights did move
    assert all(a in seen for a in answers)


def test_a_second_trainer_gets_a_clear_error(digits):
    X, y = digits
    model = fastmlp.MLP([64, 16, 10], seed=4)
    inside, release = threading.Event(), threading.Event()

    class Hold(fastmlp.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=lambda: model.fit(X, y, epochs=1, verbose=0, callbacks=[Hold()]))
    t.start()
    try:
        assert inside.wait(30)
        for call in (lambda: model.fit(X, y, verbose=0), lambda: model.train_step(X[:8], y[:8]),
                     lambda: model.set_weights(model.get_weights()),
                     lambda: fastmlp.gradcheck(model, X[:2], y[:2])):
            with pytest.raises(RuntimeError, match="being trained in another thread"):
                call()
        assert model.predict(X[:5]).shape == (5,)  # inference is fine meanwhile
    finally:
        release.set()
        t.join()
    model.fit(X, y, epochs=1, verbose=0)  # and training again once it is over


def _train(model, X, y):
    model.fit(X, y, epochs=2, batch_size=32, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("make", [
    lambda seed: fastmlp.MLP([64, 32, 10], optimizer=fastmlp.SGD(lr=0.05, momentum=0.9), seed=seed),
    lambda seed: fastmlp.MLP([64, 32, 10], optimizer="adam", dropout=0.1, batch_norm=True, seed=seed),
], ids=["sgd-stack", "adam-dropout-batchnorm"])
def test_two_models_in_two_threads_equal_one_after_the_other(digits, make):
    X, y = digits
    one_after_other = [_train(make(seed), X, y) for seed in (10, 11)]
    models = [make(seed) for seed in (10, 11)]
    results = [None, None]

    def work(i):
        results[i] = _train(models[i], X, y)

    run_threads(work, 2)
    for got, want in zip(results, one_after_other):
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


class _StopAfter(fastmlp.Callback):
    def __init__(self, steps):
        self.steps, self.done = steps, 0

    def on_batch_end(self, step, logs=None):
        self.done += 1
        if self.done == self.steps:
            raise _Enough


class _Enough(Exception):
    pass


class _CountSteps(fastmlp.Callback):
    def __init__(self):
        self.started = 0

    def on_batch_begin(self, step, logs=None):
        self.started += 1


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_ctrl_c_in_fit_leaves_the_weights_of_a_whole_step(digits, tmp_path):
    X, y = digits

    def make():
        return fastmlp.MLP([64, 32, 10], optimizer=fastmlp.Adam(lr=1e-3), seed=5)

    model, counter = make(), _CountSteps()
    main = threading.main_thread().ident
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(main, signal.SIGINT))
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)  # compiled before the timer starts
    model = make()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=1000, batch_size=8, verbose=0, callbacks=[counter])
    timer.cancel()
    steps = counter.started  # the interrupted step finished before the interrupt was raised
    assert steps > 0
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights)

    same = make()  # the same seed, stopped by a callback after exactly that many steps
    with pytest.raises(_Enough):
        same.fit(X, y, epochs=1000, batch_size=8, verbose=0, callbacks=[_StopAfter(steps)])
    assert all(np.array_equal(a, b) for a, b in zip(weights, same.get_weights()))
    assert model._opt_state["step"] == same._opt_state["step"] == steps

    model.save(tmp_path / "m.npz")  # usable: it saves, loads and trains on
    assert np.array_equal(fastmlp.load(tmp_path / "m.npz").predict(X), model.predict(X))
    history = model.fit(X, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_ctrl_c_outside_a_step_still_interrupts_at_once():
    """Outside fit, Ctrl-C is Python's own KeyboardInterrupt (fit restores the handler)."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
