"""fastmlp.MLPClassifier / MLPRegressor as drop-ins for scikit-learn's: lbfgs, poisson,
sample_weight (with early stopping and metadata routing), sparse input, exactly when
ConvergenceWarning is issued, n_iter_no_change=np.inf, stratified early stopping, the
divergence error -- each compared with scikit-learn 1.9 itself where it has the feature."""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
sp = pytest.importorskip("scipy.sparse")

from sklearn import config_context, neural_network  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402

_Xc, _yc = make_classification(240, 6, n_informative=4, n_classes=3, random_state=0)
_Xb, _yb = make_classification(240, 6, random_state=1)
_Xr, _yr = make_regression(240, 6, n_targets=2, noise=1.0, random_state=0)
_yr = _yr / 100
_rng = np.random.default_rng(0)
_yp = _rng.poisson(np.exp(0.4 * _Xr[:, 0] - 0.2 * _Xr[:, 1]))  # Poisson counts
_PROBLEMS = {
    "multiclass": ("c", _Xc, _yc),
    "binary": ("c", _Xb, _yb),
    "multilabel": ("c", _Xb, np.stack([_yb, 1 - _yb, (_Xb[:, 0] > 0).astype(int)], 1)),
    "regression": ("r", _Xr, _yr[:, 0]),
    "multi-output": ("r", _Xr, _yr),
    "poisson": ("p", _Xr, _yp),
}


def _pair(kind, **params):
    if kind == "c":
        return MLPClassifier(device="cpu", **params), neural_network.MLPClassifier(**params)
    if kind == "p":
        params["loss"] = "poisson"
    return MLPRegressor(device="cpu", **params), neural_network.MLPRegressor(**params)


def _fit_quietly(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def _assert_same_weights(ours, ref, tol):
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------
# the same fit as scikit-learn's, from the same random_state (same initial weights, same
# shuffles): lbfgs, sgd, adam, with and without sample weights


@pytest.mark.parametrize("problem", list(_PROBLEMS))
def test_lbfgs_is_sklearns_lbfgs(problem):
    kind, X, y = _PROBLEMS[problem]
    ours, ref = _pair(kind, solver="lbfgs", hidden_layer_sizes=(8,), max_iter=40, alpha=1e-3,
                      random_state=0)
    _fit_quietly(ours, X, y)
    _fit_quietly(ref, X, y)
    assert ours.out_activation_ == ref.out_activation_
    if problem == "multi-output":
        # scikit-learn's line search sees the squared error averaged over the outputs and
        # a gradient summed over them; ours sees the summed loss and its own gradient (see
        # the module docstring): different paths, fits of the same quality
        assert ours.score(X, y) == pytest.approx(ref.score(X, y), abs=0.05)
        return
    assert ours.n_iter_ == ref.n_iter_
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-6)
    _assert_same_weights(ours, ref, 1e-5)
    assert len(ours.loss_curve_) == ours.n_iter_ and ours.loss_curve_[-1] == pytest.approx(ours.loss_)
    assert ours.t_ == ref.t_ == 0  # lbfgs counts no samples, as in scikit-learn


@pytest.mark.parametrize("problem", list(_PROBLEMS))
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_stochastic_fit_is_sklearns(problem, solver):
    """alpha=0: the one numerical difference left (the L2 decay of the biases) is off."""
    kind, X, y = _PROBLEMS[problem]
    ours, ref = _pair(kind, solver=solver, hidden_layer_sizes=(8,), max_iter=6, alpha=0.0,
                      batch_size=50, learning_rate_init=0.01, random_state=0)
    _fit_quietly(ours, X, y)
    _fit_quietly(ref, X, y)
    tol = 1e-9 if solver == "sgd" else 2e-3  # Adam: epsilon sits elsewhere (see docstring)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=tol)
    _assert_same_weights(ours, ref, tol)
    assert ours.t_ == ref.t_


@pytest.mark.parametrize("problem", ["multiclass", "binary", "regression", "poisson"])
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_sample_weight_is_sklearns(problem, solver):
    kind, X, y = _PROBLEMS[problem]
    w = np.random.default_rng(1).uniform(0, 3, len(X))
    params = dict(solver=solver, hidden_layer_sizes=(8,), max_iter=5, alpha=0.0, batch_size=50,
                  learning_rate_init=0.01, random_state=0)
    ours, ref = _pair(kind, **params)
    _fit_quietly(ours, X, y, sample_weight=w)
    _fit_quietly(ref, X, y, sample_weight=w)
    _assert_same_weights(ours, ref, 1e-8)
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
        # partial_fit takes them too
        ours_inc, ref_inc = _pair(kind, **params)
        for est in (ours_inc, ref_inc):
            kwargs = {"classes": np.unique(y)} if kind == "c" else {}
            est.partial_fit(X, y, sample_weight=w, **kwargs)
        _assert_same_weights(ours_inc, ref_inc, 1e-8)
    # weights of 1 are no weights; weights change the fit
    unweighted = _fit_quietly(_pair(kind, **params)[0], X, y)
    ones = _fit_quietly(_pair(kind, **params)[0], X, y, sample_weight=np.ones(len(X)))
    _assert_same_weights(ones, unweighted, 1e-12)
    assert not np.allclose(ours.coefs_[0], unweighted.coefs_[0])


def test_sample_weight_goes_into_the_early_stopping_split():
    w = np.random.default_rng(2).uniform(0, 3, len(_Xb))
    params = dict(solver="sgd", hidden_layer_sizes=(8,), max_iter=8, alpha=0.0,
                  early_stopping=True, validation_fraction=0.25, learning_rate_init=0.05,
                  n_iter_no_change=100, random_state=0)
    ours, ref = _pair("c", **params)
    _fit_quietly(ours, _Xb, _yb, sample_weight=w)
    _fit_quietly(ref, _Xb, _yb, sample_weight=w)
    # binary: the same stratified split as scikit-learn, scored with the split's weights
    np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, rtol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    unweighted = _fit_quietly(_pair("c", **params)[0], _Xb, _yb)
    assert ours.validation_scores_ != unweighted.validation_scores_


def test_metadata_routing_passes_sample_weight():
    w = np.random.default_rng(3).uniform(0, 2, len(_Xb))
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    assert hasattr(est, "set_partial_fit_request")
    seen = []
    original = MLPClassifier.fit

    def spy(self, X, y, sample_weight=None):
        seen.append(sample_weight)
        return original(self, X, y, sample_weight=sample_weight)

    MLPClassifier.fit = spy
    try:
        with config_context(enable_metadata_routing=True), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            assert est.set_fit_request(sample_weight=True) is est  # from fit's signature
            est.set_score_request(sample_weight=False)
            GridSearchCV(est, {"alpha": [1e-4]}, cv=2).fit(_Xb, _yb, sample_weight=w)
    finally:
        MLPClassifier.fit = original
    assert len(seen) == 3 and all(s is not None for s in seen)
    assert sorted(len(s) for s in seen) == [120, 120, 240]


# ---------------------------------------------------------------------------------------
# warnings, stopping rules, errors: when scikit-learn issues them, so do we


def _warns(est, method, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(est, method)(*args, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("params", [
    dict(solver="adam", max_iter=5),                           # max_iter first: warns
    dict(solver="sgd", max_iter=5),
    dict(solver="adam", max_iter=30, tol=10.0, n_iter_no_change=2),   # stops first: silent
    dict(solver="adam", max_iter=3, tol=10.0, n_iter_no_change=2),    # stops at max_iter: silent
    dict(solver="adam", max_iter=5, n_iter_no_change=np.inf, tol=10.0),  # never stops: warns
    dict(solver="sgd", max_iter=60, learning_rate="adaptive", tol=10.0, n_iter_no_change=1),
    dict(solver="lbfgs", max_iter=3),                          # lbfgs hits max_iter: warns
    dict(solver="lbfgs", max_iter=500, tol=1e-2),              # converges: silent
    dict(solver="adam", max_iter=4, early_stopping=True),
], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_convergence_warning_exactly_when_sklearn_warns(params):
    X, y = _Xc, _yc
    ours, ref = _pair("c", hidden_layer_sizes=(8,), random_state=0, **params)
    ours_w, ref_w = _warns(ours, "fit", X, y), _warns(ref, "fit", X, y)
    assert ours_w == ref_w
    assert ours.n_iter_ == ref.n_iter_
    if params["solver"] != "lbfgs" and not params.get("early_stopping"):
        # a second fit with warm_start, then partial_fit (never warns)
        for est in (ours, ref):
            est.set_params(warm_start=True)
        assert _warns(ours, "fit", X, y) == _warns(ref, "fit", X, y)
        assert _warns(ours, "partial_fit", X, y) == _warns(ref, "partial_fit", X, y) == []


def test_n_iter_no_change_inf_runs_all_iterations():
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=7, tol=1e9, n_iter_no_change=np.inf,
                        random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(7\)"):
        clf.fit(_Xc, _yc)
    assert clf.n_iter_ == 7


def test_lbfgs_has_no_partial_fit():
    for est in (MLPClassifier(solver="lbfgs"), MLPRegressor(solver="lbfgs")):
        assert not hasattr(est, "partial_fit")
        with pytest.raises(AttributeError, match="partial_fit"):
            est.partial_fit(_Xc, _yc)
    assert hasattr(MLPClassifier(solver="sgd"), "partial_fit")


def test_early_stopping_split_is_stratified_and_names_the_users_labels():
    y = np.array(["cat", "dog", "emu"])[_yc]
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, early_stopping=True,
                        validation_fraction=0.2, random_state=0)
    seen = {}
    original = type(clf)._validation_score

    def spy(self, X_val, T_val, w_val=None, dist=None):
        seen["T_val"] = T_val
        return original(self, X_val, T_val, w_val, dist)

    type(clf)._validation_score = spy
    try:
        _fit_quietly(clf, _Xc, y)
    finally:
        type(clf)._validation_score = original
    counts = np.bincount(seen["T_val"], minlength=3)
    expected = np.bincount(_yc) * 0.2
    assert np.all(np.abs(counts - expected) <= 1)  # each class in proportion
    y_one = y.copy()
    y_one[0] = "yak"  # a class with one member cannot be split in proportion
    with pytest.raises(ValueError, match=r"stratified.*\['yak'\]"):
        MLPClassifier(early_stopping=True).fit(_Xc, y_one)


def test_early_stopping_names_the_label_of_a_binary_class_with_one_member():
    # scikit-learn's test_early_stopping_stratified: its message names the binarized label
    # ('True'); ours the user's, for binary problems as for multiclass ones
    X = [[1, 2], [2, 3], [3, 4], [4, 5]]
    for y, label in (([0, 0, 0, 1], r"\[1\]"), (["a", "a", "a", "b"], r"\['b'\]")):
        with pytest.raises(ValueError, match=r"least populated classes in y have only 1 member"
                                             r".*Classes with too few members are: " + label):
            MLPClassifier(early_stopping=True).fit(X, y)
    X8, y8 = np.arange(16.0).reshape(8, 2), [0, 0, 0, 1, 1, 2, 2, 2]  # 1 sample for 3 classes
    with pytest.raises(ValueError, match=r"validation set is too small.*3 classes"):
        MLPClassifier(early_stopping=True).fit(X8, y8)


def test_one_class_trains_as_sklearns():
    # scikit-learn fits y of one class: a logistic output whose targets are all 0
    X = np.random.RandomState(0).randn(10, 2)
    y = np.full(10, 7)
    fits = [
        (dict(max_iter=50), lambda est: est.fit(X, y)),
        (dict(max_iter=50, early_stopping=True, validation_fraction=0.2),
         lambda est: est.fit(X, y)),
        (dict(solver="lbfgs", max_iter=20), lambda est: est.fit(X, y.astype(str))),
        (dict(max_iter=50), lambda est: est.partial_fit(X, y, classes=[7])),
    ]
    for params, fit in fits:
        ours, ref = _pair("c", hidden_layer_sizes=(4,), random_state=0, alpha=0.0, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit(ours), fit(ref)
        assert ours.n_outputs_ == ref.n_outputs_ == 1 and ours.out_activation_ == "logistic"
        np.testing.assert_array_equal(ours.classes_, ref.classes_)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
        assert ours.predict_proba(X).shape == ref.predict_proba(X).shape == (10, 2)
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-6,
                                   atol=1e-7)
        assert ours.score(X, ref.predict(X)) == 1.0
        if params.get("early_stopping"):
            assert ours.validation_scores_ == ref.validation_scores_
    with pytest.raises(ValueError, match="classes not in"):
        MLPClassifier(max_iter=1).partial_fit(X, y, classes=[7]).partial_fit(X, y + (X[:, 0] > 0))


def test_diverging_fit_with_early_stopping_ends_on_its_best_weights_as_sklearns():
    # scikit-learn's test_mlp_diverging_loss: the fit goes on with NaN weights, each validation
    # score that of NaN outputs (NaN for a regressor, the first class's share for a
    # classifier), and ends on the best weights seen -- no error
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    params = dict(hidden_layer_sizes=100, activation="identity", solver="sgd",
                  learning_rate_init=1, max_iter=20, early_stopping=True, random_state=0)
    cases = [("r", X, y, params),
             ("c", X * 1e50, (y > 0).astype(int), dict(params, hidden_layer_sizes=10,
                                                       learning_rate_init=1e3, max_iter=30))]
    for kind, X_fit, y_fit, p in cases:
        ours, ref = _pair(kind, **p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's overflows
            _fit_quietly(ours, X_fit, y_fit), _fit_quietly(ref, X_fit, y_fit)
        assert ours.n_iter_ == ref.n_iter_ and ours.t_ == ref.t_
        assert len(ours.validation_scores_) == len(ref.validation_scores_) == ours.n_iter_
        ours_nan, ref_nan = np.isnan(ours.validation_scores_), np.isnan(ref.validation_scores_)
        np.testing.assert_array_equal(ours_nan, ref_nan)
        assert ours_nan.any() == (kind == "r")
        assert isinstance(ours.validation_scores_[-1], float)
        np.testing.assert_allclose(np.asarray(ours.validation_scores_)[~ours_nan],
                                   np.asarray(ref.validation_scores_)[~ref_nan], rtol=1e-6)
        assert np.isclose(ours.best_validation_score_, ref.best_validation_score_, rtol=1e-6)
        assert np.isnan(ours.loss_curve_[-1]) and np.isnan(ours.loss_)
        assert all(np.isfinite(a).all() for a in ours.coefs_ + ours.intercepts_)
        np.testing.assert_allclose(ours.predict(X_fit[:20]), ref.predict(X_fit[:20]), rtol=1e-5)
    ours = MLPRegressor(**dict(params, early_stopping=False))
    with pytest.raises(fastmlp.DivergenceError, match="non-finite parameter weights"):
        _fit_quietly(ours, X, y)  # without early stopping: the error, as scikit-learn's


def test_editing_coefs_in_place_changes_the_model_as_in_sklearn():
    X, y = _Xr, _yr[:, 0]
    ours, ref = _pair("r", hidden_layer_sizes=(5,), max_iter=20, random_state=0)
    _fit_quietly(ours, X, y), _fit_quietly(ref, X, y)
    for est in (ours, ref):
        est.coefs_[0][:, :2] = 0.5           # in place
        est.intercepts_[-1][:] = 7.0
        est.coefs_[1] = np.ones((5, 1))       # an item of the list
        est.intercepts_[0] = np.full(5, 0.1)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-5)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # as scikit-learn's: the same list each time, C-ordered arrays, a view from ravel edits
    assert ours.coefs_ is ours.coefs_ and all(W.flags.c_contiguous for W in ours.coefs_)
    for est in (ours, ref):
        est.coefs_[0].ravel()[:5] = -0.25
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-5)
    # a list saved, another assigned, the saved one restored (its arrays untouched)
    for est in (ours, ref):
        saved = est.coefs_
        est.coefs_ = [np.zeros_like(W) for W in saved]
        assert np.ptp(est.predict(X)) == 0
        est.coefs_ = saved
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-5)
    # arrays held from before see later training, as scikit-learn's trained in place
    held = [ours.coefs_[0], ours.intercepts_[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.set_params(warm_start=True, max_iter=2).fit(X, y)
    assert held[0] is ours.coefs_[0] and held[1] is ours.intercepts_[0]
    np.testing.assert_array_equal(held[0], ours.model_.get_weights()[0].T)
    # what cannot go into the network is named when it is used (or set)
    ours.coefs_.append(np.ones((5, 1)))
    with pytest.raises(ValueError, match="coefs_ must be a list of 2 arrays"):
        ours.predict(X)
    ours.coefs_.pop()
    ours.coefs_[1] = np.ones((1, 5))
    with pytest.raises(ValueError, match=r"coefs_\[1\] must have shape \(5, 1\)"):
        ours.predict(X)
    ours.coefs_[1] = np.full((5, 1), np.nan)
    with pytest.raises(ValueError, match=r"coefs_\[1\] holds NaN"):
        ours.predict(X)
    ours.coefs_[1] = np.ones((5, 1))
    kept = ours.intercepts_
    with pytest.raises(ValueError, match="intercepts_ must be a list of 2 arrays"):
        ours.intercepts_ = [np.zeros(5)]
    assert ours.intercepts_ is kept  # a refused list leaves the one before
    with pytest.raises(AttributeError, match="fitted MLPRegressor only"):
        MLPRegressor().coefs_ = ref.coefs_
    np.testing.assert_allclose(pickle.loads(pickle.dumps(ours)).predict(X), ours.predict(X))
    assert type(pickle.loads(pickle.dumps(ours)).coefs_) is list


def test_bad_parameters_raise_sklearns_invalid_parameter_error():
    # scikit-learn's estimators raise InvalidParameterError, a ValueError and a TypeError,
    # with its messages for its parameters; fastmlp's own (device, ...) raise it too
    X, y = _Xb[:40], _yb[:40]
    for params, words in ((dict(alpha=-1), "'alpha' parameter of MLPClassifier"),
                          (dict(hidden_layer_sizes=None), "'hidden_layer_sizes' parameter"),
                          (dict(random_state=-1), "'random_state' parameter"),
                          (dict(hidden_layer_sizes=(3, 0)), "hidden_layer_sizes must be > 0"),
                          (dict(activation="swish"), "activation must be one of"),
                          (dict(device="tpu"), "device must be one of"),
                          (dict(early_stopping=True, validation_fraction=0.0),
                           "validation_fraction must be > 0 with early_stopping")):
        with pytest.raises(ValueError, match=words) as info:
            MLPClassifier(**params).fit(X, y)
        assert isinstance(info.value, TypeError)
    # what scikit-learn accepts: momentum 1, validation_fraction 0 without early stopping
    for params in (dict(solver="sgd", momentum=1.0), dict(validation_fraction=0.0)):
        ours, ref = _pair("c", max_iter=2, random_state=0, **params)
        _fit_quietly(ours, X, y), _fit_quietly(ref, X, y)
        assert ours.n_iter_ == ref.n_iter_ == 2


def test_targets_dtypes_and_attributes_as_sklearns():
    X, yb = _Xb[:60], _yb[:60]
    Y = np.stack([yb, 1 - yb, (X[:, 0] > 0).astype(int)], 1)
    # multilabel predictions are int64 whatever y's dtype; a sparse y gives CSR predictions
    for y_fit in (Y.astype(bool), Y.astype(np.uint8), sp.csr_matrix(Y)):
        ours, ref = _pair("c", max_iter=3, random_state=0)
        _fit_quietly(ours, X, y_fit), _fit_quietly(ref, X, y_fit)
        out, expected = ours.predict(X), ref.predict(X)
        assert type(out) is type(expected) and out.dtype == expected.dtype == np.int64
    # columns of class labels: scikit-learn's error
    with pytest.raises(ValueError, match="Multioutput target data is not supported"):
        MLPClassifier().fit(X, np.stack([yb, 2 * yb + 1], 1))
    # float32 X: sgd/adam in float32, lbfgs (SciPy's float64 weights) in float64; outputs in
    # the dtype of the input's with the weights'
    X32 = X.astype(np.float32)
    for solver in ("adam", "lbfgs"):
        ours, ref = _pair("c", solver=solver, max_iter=3, random_state=0)
        _fit_quietly(ours, X32, yb), _fit_quietly(ref, X32, yb)
        assert ours.coefs_[0].dtype == ref.coefs_[0].dtype
        for X_in in (X32, X):
            assert ours.predict_proba(X_in).dtype == ref.predict_proba(X_in).dtype
    reg, reg_ref = _pair("r", max_iter=3, random_state=0)
    _fit_quietly(reg, X32, X[:, 0]), _fit_quietly(reg_ref, X32, X[:, 0])
    assert reg.predict(X).dtype == reg_ref.predict(X).dtype == np.float64
    # lbfgs has no stochastic records, as scikit-learn's (loss_curve_ is fastmlp's addition)
    ours, ref = _pair("c", solver="lbfgs", max_iter=3, random_state=0)
    _fit_quietly(ours, X, yb), _fit_quietly(ref, X, yb)
    for name in ("best_loss_", "validation_scores_", "best_validation_score_"):
        assert hasattr(ours, name) == hasattr(ref, name) == False  # noqa: E712
    assert ours.loss == ref.loss == "log_loss"  # an attribute of scikit-learn's classifier
    assert type(ours.loss_) is type(ref.loss_) is np.float64
    # a warm start of adam after lbfgs makes them
    _fit_quietly(ours.set_params(solver="adam", warm_start=True), X, yb)
    assert ours.best_loss_ is not None and len(ours.loss_curve_) == 3
    assert all(type(v) is np.float64 for v in ours.loss_curve_ + [ours.loss_, ours.best_loss_])


def test_validation_weights_all_zero_raise_as_in_sklearn():
    # a regressor's validation score with weights of sum 0: r2_score's error, as scikit-learn
    # (it was scored NaN, and the fit ended silently on its initial weights)
    X, y = _Xr[:80], _yr[:80, 0]
    raised = []
    for k in range(0, 80, 8):  # weight 1 on 8 rows, 0 elsewhere: some splits validate on 0s
        w = np.zeros(80)
        w[k:k + 8] = 1
        outcome = []
        for est in _pair("r", max_iter=2, random_state=0, early_stopping=True):
            try:
                _fit_quietly(est, X, y, sample_weight=w)
                outcome.append(None)
            except ValueError as exc:
                assert "Sample weights must contain at least one non-zero" in str(exc)
                outcome.append("raised")
        assert outcome[0] == outcome[1]  # the same split, the same outcome
        raised.append(outcome[0] == "raised")
    assert any(raised) and not all(raised)


def test_divergence_raises_an_error_that_is_both_value_and_floating_point_error():
    X = _Xr * 1e150
    for est in (MLPRegressor(solver="sgd", learning_rate_init=1.0, max_iter=5, random_state=0),
                MLPRegressor(solver="lbfgs", max_iter=5, random_state=0)):
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights") as info:
            _fit_quietly(est, X, _yr[:, 0] * 1e10)
        assert isinstance(info.value, FloatingPointError)
        assert isinstance(info.value, fastmlp.DivergenceError)
    assert issubclass(fastmlp.DivergenceError, ValueError)
    assert issubclass(fastmlp.DivergenceError, FloatingPointError)


# ---------------------------------------------------------------------------------------
# poisson


def test_poisson_regressor_predicts_means():
    reg = _fit_quietly(MLPRegressor(loss="poisson", solver="lbfgs", hidden_layer_sizes=(8,),
                                    max_iter=200, random_state=0), _Xr, _yp)
    assert reg.out_activation_ == "exp" and reg.model_.loss == "poisson"
    # its tags say y >= 0, so scikit-learn's estimator checks give it counts
    assert reg.__sklearn_tags__().target_tags.positive_only
    assert not MLPRegressor().__sklearn_tags__().target_tags.positive_only
    pred = reg.predict(_Xr)
    assert pred.shape == (len(_Xr),) and (pred > 0).all()
    np.testing.assert_allclose(pred, np.exp(reg.model_._outputs(_Xr, 1024)[:, 0]), rtol=1e-12)
    assert reg.score(_Xr, _yp) > 0.5


# ---------------------------------------------------------------------------------------
# sparse input


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "coo_matrix", "csr_array"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_fits_as_the_dense_input(fmt, solver):
    X = np.where(np.abs(_Xc) > 1.0, _Xc, 0.0)  # about two thirds zeros
    Xs = getattr(sp, fmt)(X)
    params = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0, solver=solver)
    dense = _fit_quietly(MLPClassifier(**params), X, _yc)
    sparse = _fit_quietly(MLPClassifier(**params), Xs, _yc)
    _assert_same_weights(sparse, dense, 1e-12)
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=1e-12)
    assert sparse.score(Xs, _yc) == dense.score(X, _yc)
    ref = _fit_quietly(neural_network.MLPClassifier(**params), Xs, _yc)
    _assert_same_weights(sparse, ref, 1e-5)


def test_sparse_training_never_densifies_the_matrix():
    """20000 x 100000 CSR (dense: 16 GB in float64), 10 entries a row: peak memory of a fit
    and a predict stays within 150 MB (the data: 2.4 MB; the weights and Adam's moments:
    4 x 3.2 MB)."""
    n, d = 20_000, 100_000
    rng = np.random.default_rng(0)
    cols = rng.integers(0, d, (n, 10))
    X = sp.csr_matrix((rng.uniform(0, 1, n * 10), cols.ravel(), np.arange(0, n * 10 + 1, 10)),
                      shape=(n, d))
    y = (cols[:, 0] % 2).astype(int)
    tracemalloc.start()
    try:
        clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                                         device="cpu"), X, y)
        clf.predict(X[:5000])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clf.n_iter_ == 2
    assert peak < 150e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("n", [1, 2, 17, 20000])
def test_the_epochs_order_is_scikit_learns_shuffle(n):
    """Each iteration's order: scikit-learn's shuffle(order, random_state) draw for draw,
    from the same RandomState, over successive iterations."""
    from sklearn.utils import check_random_state, shuffle

    from fastmlp._sklearn_solvers import _shuffled

    ours, theirs = check_random_state(7), check_random_state(7)
    a = b = np.arange(n)
    for _ in range(3):
        a, b = _shuffled(a, ours), shuffle(b, random_state=theirs)
        np.testing.assert_array_equal(a, b)
    assert ours.randint(1 << 30) == theirs.randint(1 << 30)  # the generators are in step
