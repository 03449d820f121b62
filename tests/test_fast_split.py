"""fit's compiled runs with each batch split across two threads (kernels/cpu_split.py,
fastmlp/_fast_fit.py) against the same runs on one thread: the same fit to rounding for every
loss, metric and optimizer, the same in every run, the same divergence; a failing thread
stops the other; the BLAS's thread count comes back; the faster way is chosen by time; and
the fits that are never split."""

import contextlib
import threading

import numpy as np
import pytest

import fastmlp as fm
from _shared_fits import F, N, OPTIMIZERS, assert_same_fits, fit_data
from fastmlp import _fast_fit
from fastmlp.kernels import blas, cpu_split

pytestmark = pytest.mark.skipif(not (blas.AVAILABLE and blas.one_thread().works
                                     and cpu_split.AVAILABLE),
                                reason="needs a BLAS whose threads can be set")


@pytest.fixture
def split(monkeypatch):
    """Two cores, each run's halves on two threads (not chosen by time); records for each
    run whether its steps ran as halves."""
    ways = []
    monkeypatch.setattr(_fast_fit, "_cores", lambda: 2)
    monkeypatch.setattr(_fast_fit, "SPLIT_ROWS", 16)  # halves of these tests' batches of 32
    choose = _fast_fit._Plan._use_split

    def always(self, halves):
        ways.append(halves is not None)
        choose(self, halves)  # the policy still runs (and is tested below)
        return halves is not None, False

    monkeypatch.setattr(_fast_fit._Plan, "_use_split", always)
    return ways


@contextlib.contextmanager
def _way(way):
    """'alone': halves on one thread, in turn; 'whole': each step on the whole batch (one
    core); 'two' (the `split` fixture's): halves on two threads."""
    with pytest.MonkeyPatch.context() as mp:
        if way == "alone":
            mp.setattr(_fast_fit._Plan, "_use_split", lambda self, halves: (False, False))
        elif way == "whole":
            mp.setattr(_fast_fit, "_cores", lambda: 1)
        yield


def _fit(loss, outputs, optimizer, dtype="float32", batch_size=32, **kwargs):
    X, y = fit_data(loss, outputs)
    model = fm.MLP([F, 13, 9, outputs], loss=loss, optimizer=optimizer, device="cpu",
                   dtype=dtype, seed=3)
    history = model.fit(X, y, epochs=3, batch_size=batch_size, verbose=0, **kwargs)
    return model, history


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("loss, outputs", [("cross_entropy", 4), ("binary_cross_entropy", 3),
                                           ("mse", 2), ("poisson", 2)])
def test_halves_on_two_threads_are_halves_on_one_and_the_whole_batch_to_rounding(
        split, loss, outputs, optimizer):
    two = _fit(loss, outputs, OPTIMIZERS[optimizer]())
    assert split and all(split)  # every run split its batches
    with _way("alone"):
        alone = _fit(loss, outputs, OPTIMIZERS[optimizer]())
    with _way("whole"):
        whole = _fit(loss, outputs, OPTIMIZERS[optimizer]())
    assert two[0]._opt_state["step"] == 3 * (N // 32 + 1)
    assert_same_fits(two, alone)               # the way chosen never changes the fit
    assert_same_fits(two, whole, rtol=1e-5)    # the halves' sum: another rounding


@pytest.mark.parametrize("kwargs", [dict(dtype="float64"), dict(label_smoothing=0.1),
                                    dict(validation_split=0.2), dict(batch_size=64)])
def test_split_options(split, kwargs):
    kwargs = dict(kwargs)
    dtype = kwargs.pop("dtype", "float32")
    smoothing = kwargs.pop("label_smoothing", 0.0)

    def fit(way):
        X, y = fit_data("cross_entropy", 3)
        model = fm.MLP([F, 13, 9, 3], optimizer=fm.Adam(3e-3), device="cpu", dtype=dtype,
                       seed=3, label_smoothing=smoothing)
        with _way(way):
            history = model.fit(X, y, epochs=3, verbose=0, **{"batch_size": 32, **kwargs})
        return model, history

    two = fit("two")
    assert any(split)
    assert_same_fits(two, fit("alone"))
    assert_same_fits(two, fit("whole"), rtol=1e-12 if dtype == "float64" else 1e-5)


def test_split_fits_are_the_same_in_every_run(split):
    a = _fit("cross_entropy", 3, fm.Adam(3e-3))
    b = _fit("cross_entropy", 3, fm.Adam(3e-3))
    for wa, wb in zip(a[0].get_weights(), b[0].get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a[1].history == b[1].history


def test_divergence_is_caught_at_the_same_step(split):
    X, y = fit_data("mse", 1)
    y = y * 1e30  # the loss overflows float32 at once

    def fit(way):
        model = fm.MLP([F, 8, 1], loss="mse", optimizer=fm.SGD(1.0), device="cpu", seed=0)
        with _way(way):
            with pytest.warns(RuntimeWarning, match="diverged") as record:
                history = model.fit(X, y, epochs=2, batch_size=32, verbose=0, on_divergence="warn")
        return model, history, str(record[0].message)

    (ma, ha, msg_a), (mb, hb, msg_b) = fit("two"), fit("whole")
    assert split[0] is True
    assert ha.diverged == hb.diverged
    assert msg_a == msg_b
    for wa, wb in zip(ma.get_weights(), mb.get_weights()):
        np.testing.assert_array_equal(wa, wb)  # the weights before the first step: untouched


@pytest.mark.parametrize("part", [0, 1])
def test_a_failing_thread_stops_the_other(split, monkeypatch, part):
    """Either thread failing ends the run with its error (the other must not wait for it
    forever), and the BLAS's thread count is put back."""
    made = cpu_split.split_steps_for

    def failing(loss, metric):
        fn = made(loss, metric)

        def steps(p, *args):
            if p == part:
                raise RuntimeError(f"part {p} failed")
            return fn(p, *args)

        return steps

    monkeypatch.setattr(cpu_split, "split_steps_for", failing)
    before = blas.max_threads()
    errors = []

    def fit():
        try:
            _fit("cross_entropy", 3, fm.Adam(3e-3))
        except RuntimeError as e:
            errors.append(str(e))

    runner = threading.Thread(target=fit, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the other thread waited forever"
    assert errors == [f"part {part} failed"]
    assert blas.max_threads() == before


def test_fits_in_several_threads_at_once(split):
    """Three fits at once share one helper thread (the others run both halves on their own
    thread: the same numbers), end, give one fit's weights, and put the BLAS's thread
    count back."""
    before = blas.max_threads()
    alone = _fit("cross_entropy", 3, fm.Adam(3e-3))[0].get_weights()
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        _fit("cross_entropy", 3, fm.Adam(3e-3))[0].get_weights()), daemon=True)
        for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a fit waited forever"
    assert len(results) == 3
    for weights in results:
        for got, want in zip(weights, alone):
            np.testing.assert_array_equal(got, want)
    assert blas.max_threads() == before
    count = blas._THREAD_CALLS[0]  # OpenBLAS's own count, now
    with blas.one_thread():
        assert count() == 1
        assert blas.max_threads() == before  # what fits may use, read inside the context
        with blas.one_thread():
            assert count() == 1
        assert count() == 1
    assert count() == blas.max_threads() == before


@pytest.mark.parametrize("case", ["odd batch", "small halves", "sample_weight", "large network",
                                  "one core", "large step"])
def test_fits_that_are_not_split(monkeypatch, case):
    ways = []
    monkeypatch.setattr(_fast_fit, "_cores", lambda: 1 if case == "one core" else 2)
    monkeypatch.setattr(_fast_fit, "SPLIT_ROWS", 16)
    choose = _fast_fit._Plan._use_split
    monkeypatch.setattr(_fast_fit._Plan, "_use_split",
                        lambda self, halves: ways.append(halves is not None) or choose(self, halves))
    X, y = fit_data("cross_entropy", 3)
    sizes, kwargs = [F, 13, 9, 3], dict(batch_size=32)
    if case == "odd batch":
        kwargs["batch_size"] = 33
    elif case == "small halves":
        kwargs["batch_size"] = 2 * _fast_fit.SPLIT_ROWS - 2
    elif case == "sample_weight":
        kwargs["sample_weight"] = np.random.default_rng(0).random(N) + 0.5
    elif case == "large network":
        sizes = [F, 256, 256, 3]  # more than SPLIT_PARAMS parameters
    elif case == "large step":
        monkeypatch.setattr(_fast_fit, "SPLIT_MACS", 32 * (F * 13 + 13 * 9 + 9 * 3))
    fm.MLP(sizes, device="cpu", seed=0).fit(X, y, epochs=1, verbose=0, **kwargs)
    assert ways and not any(ways)


@pytest.mark.parametrize("large", [False, True])
def test_an_epochs_last_partial_batch_runs_on_the_runs_blas_threads(monkeypatch, large):
    """The step by step of an epoch's last, partial batch (N % 32 = 11 rows) runs on one BLAS
    thread when the runs do: on OpenBLAS's threads it left them spinning into the next
    epoch's two-thread runs. A large step keeps the BLAS's threads."""
    if blas.max_threads() < 2:
        pytest.skip("the BLAS runs one thread")
    get = blas._THREAD_CALLS[0]
    if large:
        monkeypatch.setattr(_fast_fit, "SPLIT_MACS", 1)
    X, y = fit_data("cross_entropy", 3)
    model = fm.MLP([F, 13, 9, 3], device="cpu", seed=0)
    counts, step = [], model._step
    monkeypatch.setattr(model, "_step", lambda *a: counts.append((a[0].n, get())) or step(*a))
    model.fit(X, y, epochs=2, batch_size=32, verbose=0)
    threads = blas.max_threads() if large else 1
    assert counts == [(N % 32, threads)] * 2
    assert get() == blas.max_threads()  # and back after the fit


def test_the_faster_way_runs_and_the_other_is_timed_again():
    plan = _fast_fit._Plan.__new__(_fast_fit._Plan)
    plan.per_step, plan.run, plan.since_probe, plan.probe_gap = {}, {}, 0.0, 1
    plan.warm = True
    halves = object()
    assert plan._use_split(None) == (False, False)       # no halves: the whole batch
    assert plan._use_split(halves) == (True, False)      # each way timed first
    plan._timed(True, False, 100, 100 * 3e-5)
    assert plan._use_split(halves) == (False, False)
    plan._timed(False, False, 100, 100 * 4e-5)           # two threads faster
    assert plan.run == {True: int(_fast_fit.RUN_SECONDS / 3e-5),
                        False: int(_fast_fit.RUN_SECONDS / 4e-5)}

    def runs(n, seconds, two_threads=3e-5, one_thread=4e-5):
        """n runs, each of `seconds` (a probe: PROBE_STEPS steps) at these seconds a step
        of each way; their ways."""
        ways = []
        for _ in range(n):
            split, probe = plan._use_split(halves)
            ways.append((split, probe))
            step = two_threads if split else one_thread
            done = _fast_fit.PROBE_STEPS if probe else seconds / step
            plan._timed(split, probe, done, done * step)
        return ways

    # runs cut short by an epoch's end (a quarter of RUN_SECONDS): a probe after 1, 2, 4,
    # then every 8 RUN_SECONDS of runs, i.e. after 4, 8, 16, 32, 32 short runs
    ways = runs(4 + 8 + 16 + 32 + 32 + 5, 1.001 * _fast_fit.RUN_SECONDS / 4)
    probes = [i for i, way in enumerate(ways) if way[1]]
    gaps = [b - a - 1 for a, b in zip([-1] + probes, probes)]
    assert gaps == [4, 8, 16, 32, 32]
    assert all(ways[i] == (False, True) for i in probes)  # one thread, timed again
    assert all(way == (True, False) for i, way in enumerate(ways) if i not in probes)
    # a busy machine from now on: two threads take 1e-3 s a step. After their next run,
    # one thread runs, and two are timed again every 8 RUN_SECONDS of its runs
    plan.since_probe = 0.0
    ways = runs(9 * 3, 1.001 * _fast_fit.RUN_SECONDS, two_threads=1e-3)
    assert ways == ([(True, False)] + [(False, False)] * 7 + [(True, True)]
                    + ([(False, False)] * 8 + [(True, True)]) * 2)


def test_sklearn_estimator_split_to_rounding(split):
    pytest.importorskip("sklearn")
    import fastmlp.sklearn as fsk

    X, y = fit_data("cross_entropy", 3)

    def fit(way):
        est = fsk.MLPClassifier(hidden_layer_sizes=(11,), batch_size=32, max_iter=3,
                                random_state=0, device="cpu")
        with _way(way), pytest.warns(Warning):
            return est.fit(X, y)

    two, alone, whole = fit("two"), fit("alone"), fit("whole")
    assert any(split)
    assert two.loss_curve_ == alone.loss_curve_
    np.testing.assert_allclose(two.loss_curve_, whole.loss_curve_, rtol=1e-12)
    for c2, c1, cw in zip(two.coefs_, alone.coefs_, whole.coefs_):
        np.testing.assert_array_equal(c2, c1)
        np.testing.assert_allclose(c2, cw, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_splits_batches_without_waiting_forever(split):
    """A fork after a two-thread fit: the child has no helper thread, only a copy of its
    executor; its own two-thread fit must start a new one (and not wait for the old)."""
    import multiprocessing as mp

    _fit("cross_entropy", 3, fm.Adam(3e-3))  # the parent's helper thread exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_child_fit)
        weights = result.get(timeout=120)
    for got, want in zip(weights, _fit("cross_entropy", 3, fm.Adam(3e-3))[0].get_weights()):
        np.testing.assert_array_equal(got, want)


def _child_fit():
    _fast_fit._cores = lambda: 2
    _fast_fit.SPLIT_ROWS = 16
    _fast_fit._Plan._use_split = lambda self, halves: (halves is not None, False)
    return _fit("cross_entropy", 3, fm.Adam(3e-3))[0].get_weights()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_range_copies_exactly_the_weights_in_the_range(dtype):
    """After a thread's update of theta[lo:hi], _transpose_range writes W.T's copy of those
    weights and of no others: random layer sizes (1 and sizes that are no multiple of any
    tile included), each W followed by its bias in theta, random ranges (empty, inside one
    row, across rows and layers, the whole of theta)."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        sizes = [int(s) for s in rng.integers(1, 40, int(rng.integers(2, 6)))]
        if trial < 4:
            sizes = [[1, 1], [1, 37], [37, 1], [64, 64, 3]][trial]
        n = sum(o * i + o for i, o in zip(sizes, sizes[1:]))
        theta = rng.standard_normal(n).astype(dtype)
        W, at, p = [], [], 0
        for i, o in zip(sizes, sizes[1:]):
            W.append(theta[p:p + o * i].reshape(o, i))
            at.append(p)
            p += o * i + o
        W = tuple(W)
        Wt = tuple(np.full(w.shape[::-1], np.nan, dtype) for w in W)
        lo = int(rng.integers(0, n + 1))
        hi = int(rng.integers(lo, n + 1)) if trial % 5 else n
        lo = 0 if trial % 5 == 0 else lo
        cpu_split._transpose_range(W, Wt, np.array(at, np.int64), lo, hi)
        for w, wt, start in zip(W, Wt, at):
            position = start + np.arange(w.size).reshape(w.shape)
            inside = (position >= lo) & (position < hi)
            np.testing.assert_array_equal(wt.T[inside], w[inside])
            assert np.isnan(wt.T[~inside]).all(), (sizes, lo, hi)
