"""scikit-learn estimators (fastmlp/sklearn.py): check_estimator, the same updates as
sklearn's own MLP, Pipeline, GridSearchCV, clone, pickle, labels, dtypes, partial_fit,
warm_start, early stopping, convergence warnings; and ``import fastmlp`` without sklearn."""

import copy
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# checks that cannot run in this environment whatever the estimator (they skip themselves)
_ENVIRONMENT_SKIPS = {"check_array_api_input", "check_classifier_data_not_an_array",
                      "check_regressor_data_not_an_array",
                      "check_classifiers_multilabel_output_format_decision_function",
                      "check_sample_weights_pandas_series"}  # pandas is not installed


def _digits(n=600):
    X, y = fastmlp.datasets.load_digits()
    return X[:n], y[:n]


# ---------------------------------------------------------------------------------------
# scikit-learn's own conformance checks


@pytest.mark.parametrize("estimator", [
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01),
    MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01),
    MLPClassifier(solver="sgd", hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.1),
    MLPClassifier(solver="lbfgs", hidden_layer_sizes=(16,), max_iter=50),
    MLPRegressor(solver="lbfgs", hidden_layer_sizes=(16,), max_iter=50),
    MLPRegressor(solver="sgd"),
    MLPClassifier(),
    MLPRegressor(),
], ids=["classifier-adam", "regressor-adam", "classifier-sgd", "classifier-lbfgs",
        "regressor-lbfgs", "regressor-sgd", "classifier-defaults",
        "regressor-defaults"])
def test_check_estimator(estimator):
    results = check_estimator(estimator, on_skip=None)  # raises on the first failure
    statuses = {r["check_name"]: r["status"] for r in results}
    assert len(statuses) > 45
    assert all(s in ("passed", "skipped") for s in statuses.values())
    skipped = {name for name, s in statuses.items() if s == "skipped"}
    assert skipped <= _ENVIRONMENT_SKIPS, skipped
    for must_pass in ("check_estimators_pickle", "check_fit_idempotent", "check_classifiers_train",
                      "check_regressors_train", "check_supervised_y_2d", "check_n_features_in",
                      "check_estimators_unfitted", "check_dont_overwrite_parameters"):
        if must_pass in statuses:
            assert statuses[must_pass] == "passed", must_pass


# ---------------------------------------------------------------------------------------
# the same updates as scikit-learn's MLP


def _twins(kind, X, y, **params):
    """A fastmlp estimator and sklearn's, fitted once, then given the same weights."""
    ours_cls, ref_cls = {"c": (MLPClassifier, neural_network.MLPClassifier),
                         "r": (MLPRegressor, neural_network.MLPRegressor)}[kind]
    params = dict(dict(warm_start=True, shuffle=False, random_state=0, alpha=0.0,
                       hidden_layer_sizes=(8,), batch_size=32), **params)
    ours, ref = ours_cls(device="cpu", **params), ref_cls(**params)
    max_iter = params.get("max_iter", 200)
    for est in (ours, ref):
        est.set_params(max_iter=1).fit(X, y)
        est.set_params(max_iter=max_iter)
    # copies: as in scikit-learn, an estimator trains the arrays of the lists it is given
    ours.coefs_ = [W.copy() for W in ref.coefs_]
    ours.intercepts_ = [b.copy() for b in ref.intercepts_]
    ours.fit(X, y)
    ref.fit(X, y)
    return ours, ref


_Xc, _yc = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
_Xb, _yb = make_classification(200, 6, random_state=1)
_Xr, _yr = make_regression(200, 6, n_targets=3, random_state=0)
_PROBLEMS = {
    "multiclass": ("c", _Xc, _yc),
    "binary": ("c", _Xb, _yb),
    "multilabel": ("c", _Xb, np.stack([_yb, 1 - _yb, (_Xb[:, 0] > 0).astype(int)], 1)),
    "regression": ("r", _Xr, _yr[:, 0] / 100),
    "multi-output": ("r", _Xr, _yr / 100),
}


@pytest.mark.parametrize("problem", list(_PROBLEMS))
@pytest.mark.parametrize("solver,params,wtol", [
    ("sgd", dict(learning_rate_init=0.01, momentum=0.9), 1e-12),
    ("sgd", dict(learning_rate_init=0.05, momentum=0.0), 1e-12),
    ("adam", dict(learning_rate_init=0.01), 1e-4),
], ids=["sgd-nesterov", "sgd-plain", "adam"])
def test_same_updates_as_sklearn(problem, solver, params, wtol):
    """From the same weights, the same batches give scikit-learn's weights and loss curve:
    the learning rate and loss scaling map exactly (Adam differs only in where epsilon sits)."""
    kind, X, y = _PROBLEMS[problem]
    ours, ref = _twins(kind, X, y, solver=solver, max_iter=8, **params)
    assert ours.out_activation_ == ref.out_activation_
    assert ours.n_outputs_ == ref.n_outputs_ and ours.n_layers_ == ref.n_layers_
    assert ours.n_iter_ == ref.n_iter_
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=wtol, atol=wtol)
    # loss_curve_[0] is each one's first fit, from its own initial weights
    np.testing.assert_allclose(ours.loss_curve_[1:], ref.loss_curve_[1:], rtol=1e-5)
    if kind == "c":
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=10 * wtol)


def test_alpha_is_l2_on_the_weights_as_in_sklearn():
    """With alpha, the weights follow scikit-learn's: much closer to sklearn's with the same
    alpha than to sklearn's without (the rest is the one documented difference: fastmlp
    decays the biases too); the loss curve includes the penalty."""
    alpha = dict(solver="sgd", learning_rate_init=0.01, max_iter=8, alpha=0.5)
    ours, ref = _twins("c", _Xc, _yc, **alpha)
    _, ref_plain = _twins("c", _Xc, _yc, **dict(alpha, alpha=0.0))
    dist = lambda a, b: sum(float(np.abs(x - z).sum()) for x, z in zip(a.coefs_, b.coefs_))
    assert dist(ours, ref) < 0.4 * dist(ref, ref_plain)
    np.testing.assert_allclose(ours.loss_curve_[1:], ref.loss_curve_[1:], rtol=2e-2)
    norm = lambda est: sum(float((W ** 2).sum()) for W in est.coefs_)
    assert norm(ours) < norm(ref_plain)


# ---------------------------------------------------------------------------------------
# learning, attributes, labels, dtypes


def test_classifier_learns_digits_with_attributes():
    X, y = _digits()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=60, learning_rate_init=0.01,
                        random_state=0).fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) > 0.9
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_features_in_ == 64 and clf.n_outputs_ == 10 and clf.n_layers_ == 4
    assert clf.out_activation_ == "softmax"
    assert [W.shape for W in clf.coefs_] == [(64, 32), (32, 16), (16, 10)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (16,), (10,)]
    weights = clf.model_.get_weights()
    np.testing.assert_array_equal(clf.coefs_[0], weights[0].T)  # sklearn's layout: W.T
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.n_iter_ <= 60
    assert clf.loss_curve_[-1] < 0.2 * clf.loss_curve_[0]
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]
    assert clf.t_ == clf.n_iter_ * len(X_tr)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    P = clf.predict_proba(X_te)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X_te), clf.classes_[P.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X_te), np.log(P), rtol=1e-6)
    assert [type(l).__name__ for l in clf.model_.layers] == ["Dense"] * 3


def test_string_labels_and_binary_logistic_output():
    X, y = _digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"], dtype=object)
    clf = MLPClassifier(hidden_layer_sizes=(24,), max_iter=40, learning_rate_init=0.01,
                        random_state=0).fit(X, names[y])
    assert list(clf.classes_) == sorted(names)
    assert clf.score(X, names[y]) > 0.9
    assert set(clf.predict(X)) <= set(names)
    binary = np.where(y % 2 == 0, "even", "odd")
    clf = MLPClassifier(hidden_layer_sizes=(24,), max_iter=40, learning_rate_init=0.01,
                        random_state=0).fit(X, binary)
    assert list(clf.classes_) == ["even", "odd"]
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.model_.loss == "binary_cross_entropy" and clf.coefs_[-1].shape == (24, 1)
    P = clf.predict_proba(X)
    assert P.shape == (len(X), 2)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
    assert clf.score(X, binary) > 0.9
    # integer labels that are not 0..K-1
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y * 10 - 7)
    np.testing.assert_array_equal(clf.classes_, np.arange(10) * 10 - 7)
    assert set(clf.predict(X)) <= set(clf.classes_)


def test_multilabel_and_multi_output():
    X = _Xb
    Y = _PROBLEMS["multilabel"][2]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01,
                        random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    pred = clf.predict(X)
    assert pred.shape == Y.shape and pred.dtype == Y.dtype
    assert clf.predict_proba(X).shape == (200, 3)
    assert (pred == Y).mean() > 0.85
    Xr, yr = _Xr, _yr / 100
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01,
                       random_state=0).fit(Xr, yr)
    assert reg.predict(Xr).shape == (200, 3) and reg.n_outputs_ == 3
    assert reg.score(Xr, yr) > 0.9
    one = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01,
                       random_state=0).fit(Xr, yr[:, 0])
    assert one.predict(Xr).shape == (200,) and one.score(Xr, yr[:, 0]) > 0.9
    assert one.out_activation_ == "identity"


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_float32_stays_float32(Est):
    X, y = _digits(200)
    target = y if Est is MLPClassifier else y / 10.0
    est = Est(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X.astype(np.float32), target)
    assert est.model_.dtype == np.float32
    assert all(W.dtype == np.float32 for W in est.coefs_ + est.intercepts_)
    out = est.predict_proba(X) if Est is MLPClassifier else est.predict(X)
    assert out.dtype == np.float32
    est = Est(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X.astype(np.float64), target)
    assert est.model_.dtype == np.float64 and est.coefs_[0].dtype == np.float64
    est = Est(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype="float32")
    assert est.fit(X.astype(np.float64), target).model_.dtype == np.float32
    est = Est(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    assert est.fit(X.astype(np.int64), target).model_.dtype == np.float64


def test_activation_names_and_device():
    X, y = _digits(200)
    for name, expected in [("logistic", "sigmoid"), ("tanh", "tanh"), ("identity", "identity"),
                           ("relu", "relu"), ("elu", "elu"), ("leaky_relu", "leaky_relu")]:
        clf = MLPClassifier(hidden_layer_sizes=(8, 8), activation=name, max_iter=2,
                            random_state=0).fit(X, y)
        assert [l.activation for l in clf.model_.layers] == [expected, expected, "identity"]
    X = X.astype(np.float64)
    cpu = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0, device="cpu").fit(X, y)
    ref = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                        device="reference").fit(X, y)
    assert cpu.model_.device == "cpu" and ref.model_.device == "reference"
    np.testing.assert_allclose(cpu.predict_proba(X), ref.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_bad_parameters_raise_clear_errors():
    X, y = _digits(100)
    cases = [
        (dict(solver="newton"), "solver"),
        (dict(n_iter_no_change=0), "n_iter_no_change"),
        (dict(n_iter_no_change=2.5), "n_iter_no_change"),
        (dict(max_fun=0), "max_fun"),
        (dict(activation="swish"), "activation"),
        (dict(hidden_layer_sizes=(8, 0)), "hidden_layer_sizes"),
        (dict(hidden_layer_sizes="big"), "hidden_layer_sizes"),
        (dict(batch_size=0), "batch_size"),
        (dict(learning_rate_init=0), "learning_rate_init"),
        (dict(momentum=1.5), "momentum"),
        (dict(max_iter=0), "max_iter"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(learning_rate="cyclic"), "learning_rate"),
        (dict(device="tpu"), "device"),
        (dict(dtype="float16"), "dtype"),
    ]
    for params, words in cases:
        with pytest.raises((ValueError, TypeError), match=words):
            MLPClassifier(**params).fit(X, y)
    assert (MLPClassifier(max_iter=2).fit(X, np.zeros(len(X))).predict(X) == 0).all()  # 1 class
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="loss must be"):
        MLPRegressor(loss="huber").fit(X, y)
    with pytest.raises(ValueError, match="counts or rates >= 0"):
        MLPRegressor(loss="poisson").fit(X, y - 5.0)
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier().fit(X, y, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier().fit(X, y, sample_weight=np.ones(3))


# ---------------------------------------------------------------------------------------
# scikit-learn machinery: Pipeline, GridSearchCV, clone, pickle


def test_pipeline_and_grid_search():
    X, y = _digits(450)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=30,
                                                         learning_rate_init=0.01, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 0.95
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0],
                                 "mlpclassifier__hidden_layer_sizes": [(4,), (32,)]}, cv=3)
    search.fit(X, y)
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] == (32,)
    assert search.best_score_ > 0.85
    assert len(search.cv_results_["mean_test_score"]) == 4
    reg = GridSearchCV(MLPRegressor(max_iter=50, random_state=0),
                       {"learning_rate_init": [1e-3, 1e-2]}, cv=2).fit(_Xr, _yr[:, 0] / 100)
    assert reg.best_params_ == {"learning_rate_init": 1e-2}


def test_clone_and_get_params():
    clf = MLPClassifier(hidden_layer_sizes=(7, 3), alpha=0.5, device="reference", dtype="float32",
                        random_state=4)
    params = clf.get_params()
    for key in ("hidden_layer_sizes", "activation", "solver", "alpha", "batch_size",
                "learning_rate_init", "max_iter", "shuffle", "random_state", "tol",
                "early_stopping", "validation_fraction", "n_iter_no_change", "warm_start",
                "verbose", "momentum", "nesterovs_momentum", "beta_1", "beta_2", "epsilon",
                "device", "dtype"):
        assert key in params, key
    X, y = _digits(100)
    clf.set_params(max_iter=2, device="cpu").fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and not hasattr(twin, "classes_")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        twin.predict(X)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_pickle_and_deepcopy(Est, tmp_path):
    X, y = _digits(200)
    target = y if Est is MLPClassifier else y / 10.0
    est = Est(hidden_layer_sizes=(12,), max_iter=5, solver="sgd", random_state=0).fit(X, target)
    data = pickle.dumps(est)
    assert b"numba" not in data and b"fastmlp.kernels" not in data  # no compiled objects
    assert b"_model_file" in data
    for other in (pickle.loads(data), copy.deepcopy(est)):
        out = getattr(other, "predict_proba" if Est is MLPClassifier else "predict")(X)
        ref = getattr(est, "predict_proba" if Est is MLPClassifier else "predict")(X)
        np.testing.assert_array_equal(out, ref)
        assert other.loss_curve_ == est.loss_curve_
        for a, b in zip(other.coefs_, est.coefs_):
            np.testing.assert_array_equal(a, b)
    # the optimizer state travels too: training goes on identically
    copy_ = pickle.loads(data)
    est.partial_fit(X, target)
    copy_.partial_fit(X, target)
    for a, b in zip(copy_.coefs_, est.coefs_):
        np.testing.assert_array_equal(a, b)
    assert vars(est)["_model"] is not None  # pickling left the original alone
    # an unpickled estimator rebuilds its model on its own device setting
    est.set_params(device="reference")
    moved = pickle.loads(pickle.dumps(est))
    assert moved.model_.device == "reference"
    # float32 on two backends: relative to the outputs' scale (a value near zero differs
    # by rounding at the scale of the others, not of itself)
    expected = est.predict(X)
    np.testing.assert_allclose(getattr(moved, "predict")(X), expected, rtol=1e-5,
                               atol=1e-5 * float(np.max(np.abs(expected))))


# ---------------------------------------------------------------------------------------
# partial_fit, warm_start, early stopping, convergence


def test_partial_fit_classifier():
    X, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    first = y < 5
    clf.partial_fit(X[first], y[first], classes=np.arange(10))  # not all classes in the batch
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1 and clf.n_outputs_ == 10
    for _ in range(30):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 31
    assert clf.loss_curve_[-1] < clf.loss_curve_[1]
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :10], y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))


def test_partial_fit_equals_fit_epochs():
    """k calls of partial_fit are k iterations of fit, bit for bit, without shuffling (with
    it, each call restarts random_state, in scikit-learn as here)."""
    X, y = _digits(300)
    params = dict(hidden_layer_sizes=(16,), random_state=3, solver="sgd", n_iter_no_change=100,
                  learning_rate_init=0.05, shuffle=False)
    fitted = MLPClassifier(max_iter=6, **params).fit(X, y)
    inc = MLPClassifier(**params)
    for _ in range(6):
        inc.partial_fit(X, y, classes=np.arange(10))
    assert inc.loss_curve_ == fitted.loss_curve_
    for a, b in zip(inc.coefs_, fitted.coefs_):
        np.testing.assert_array_equal(a, b)
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        reg.partial_fit(X, y / 10)
    assert len(reg.loss_curve_) == 3 and reg.loss_curve_[-1] < reg.loss_curve_[0]


def test_warm_start_continues_from_the_fitted_weights():
    X, y = _digits(300)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, warm_start=True, random_state=0)
    clf.fit(X, y)
    first_curve = list(clf.loss_curve_)
    weights, held = [W.copy() for W in clf.coefs_], clf.coefs_
    clf.fit(X, y)
    assert clf.loss_curve_[:5] == first_curve and len(clf.loss_curve_) == 10
    assert clf.n_iter_ == 5
    assert clf.loss_curve_[5] < first_curve[0]  # started from the trained weights
    assert not np.array_equal(weights[0], clf.coefs_[0])
    # as scikit-learn's, which trains its coefs_ in place: arrays held from before see the fit
    assert np.array_equal(held[0], clf.coefs_[0]) and np.array_equal(held[1], clf.coefs_[1])
    cold = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(X, y)
    assert cold.fit(X, y).loss_curve_ == first_curve  # without warm_start: a fresh start
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 5], y[y < 5])
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        clf.set_params(hidden_layer_sizes=(8,)).fit(X, y)


def test_early_stopping_keeps_the_best_validation_score():
    X, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, validation_fraction=0.2,
                        n_iter_no_change=3, max_iter=200, random_state=0).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.n_iter_ < 200  # it stopped early
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.8
    assert all(0 <= s <= 1 for s in clf.validation_scores_)
    # the weights kept are those of the best epoch, not the last
    best = int(np.argmax(clf.validation_scores_))
    assert best < clf.n_iter_ - 1
    reg = MLPRegressor(hidden_layer_sizes=(16,), early_stopping=True, max_iter=100,
                       random_state=0).fit(_Xr, _yr[:, 0] / 100)
    assert reg.best_validation_score_ == max(reg.validation_scores_)
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True).fit(X[:10], y[:10])


def test_convergence_warning_and_stopping_rules():
    X, y = _digits(200)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\) reached"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, tol=1e6, n_iter_no_change=4,
                            random_state=0).fit(X, y)
    # first iteration improves on inf; then 5 iterations without improvement by tol: stop
    assert clf.n_iter_ == 4 + 2
    sgd = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive",
                        learning_rate_init=0.1, tol=1e6, n_iter_no_change=1, max_iter=40,
                        random_state=0).fit(X, y)
    # adaptive: the learning rate is divided by 5 each time, until it is below 1e-6
    assert sgd.model_.optimizer.lr == pytest.approx(0.1 / 5 ** 8)  # 1.28e-6 > 1e-6: once more
    assert sgd.n_iter_ < 40


def test_verbose_prints_iterations(capsys):
    X, y = _digits(100)
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=True, early_stopping=True,
                  random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("Iteration ") == 3 and "loss = " in out and "Validation score:" in out


# ---------------------------------------------------------------------------------------
# import without scikit-learn


def test_import_fastmlp_without_sklearn():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import fastmlp, numpy as np\n"
        "m = fastmlp.MLP([4, 3, 2], device='cpu', seed=0)\n"
        "m.fit(np.zeros((4, 4)), np.array([0, 1, 0, 1]), epochs=1, verbose=0)\n"
        "try:\n"
        "    fastmlp.MLPClassifier\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
        "print(hasattr(fastmlp, 'nothing_here'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ImportError:" in result.stdout and "scikit-learn" in result.stdout
    assert "False" in result.stdout
    assert "MLPClassifier" not in fastmlp.__all__ or hasattr(fastmlp, "MLPClassifier")
    assert fastmlp.MLPClassifier is MLPClassifier and fastmlp.MLPRegressor is MLPRegressor


def test_small_steps_run_on_one_blas_thread_larger_ones_keep_the_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import contextlib

    from fastmlp._sklearn_solvers import _blas_threads

    from fastmlp.kernels import blas as fastmlp_blas

    small = fastmlp.MLP([20, 64, 64, 3], device="cpu")   # 1.1 M multiply-adds at batch 200
    mnist = fastmlp.MLP([784, 256, 128, 10], device="cpu")  # 47 M
    assert isinstance(_blas_threads(mnist, 200), contextlib.nullcontext)
    limits = _blas_threads(small, 200)
    # fastmlp's own setter of NumPy's OpenBLAS where it works (fit's two-thread runs share
    # it), else threadpoolctl's
    ours = fastmlp_blas.one_thread().works
    assert isinstance(limits, fastmlp_blas.one_thread if ours else threadpoolctl.threadpool_limits)
    with limits:
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
                and (not ours or os.path.samefile(i["filepath"], fastmlp_blas.LIBRARY))]
        assert blas and all(i["num_threads"] == 1 for i in blas)  # the BLAS fastmlp calls
