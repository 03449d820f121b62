"""Malformed coefs_ / intercepts_ of a fitted estimator: a ValueError naming the list, the
index, what was expected and what was found -- when set, and when an in-place edit of the
list is used (predict) -- never NumPy's IndexError or "at least one array is required", and
never silently ignored (coefs_ = None) or cast (complex values)."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module", params=[MLPClassifier, MLPRegressor])
def fitted(request):
    rng = np.random.default_rng(0)
    X = rng.random((40, 4))
    y = (X[:, 0] > 0.5).astype(int) if request.param is MLPClassifier else X[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = request.param(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
    return est, X


ITEMS = [  # (what coefs_[0] or intercepts_[0] becomes, what the message says was found)
    ("coefs_", lambda: np.zeros(4), r"must have shape \(4, 3\) \(layer 1's weights, \(n_in, "
                                    r"n_out\)\); got an array of shape \(4,\)"),
    ("coefs_", lambda: np.zeros((4, 3, 1)), r"must have shape \(4, 3\) .*got an array of "
                                            r"shape \(4, 3, 1\)"),
    ("coefs_", lambda: None, r"must be an array of real numbers of shape \(4, 3\) .*got None"),
    ("coefs_", lambda: 2.5, r"must have shape \(4, 3\) .*got the scalar 2.5"),
    ("coefs_", lambda: np.full((4, 3), "a"),
     r"must be an array of real numbers .*got an array of dtype <U1"),
    ("coefs_", lambda: "abc", r"must be an array of real numbers .*got 'abc'"),
    ("coefs_", lambda: np.zeros((4, 3), complex),
     r"must be an array of real numbers .*complex128"),
    ("coefs_", lambda: [[1.0, 2.0, 3.0], [1.0]],
     r"must be an array of real numbers .*got a list that is no array"),
    ("intercepts_", lambda: np.zeros((3, 1)), r"must have shape \(3,\) \(layer 1's biases\); "
                                              r"got an array of shape \(3, 1\)"),
    ("intercepts_", lambda: None, r"must be an array of real numbers of shape \(3,\) .*None"),
    ("intercepts_", lambda: 0.0, r"must have shape \(3,\) .*got the scalar 0.0"),
]


@pytest.mark.parametrize("name, value, found", ITEMS)
def test_a_malformed_item_is_refused_when_used(fitted, name, value, found):
    est, X = fitted
    arrays = getattr(est, name)
    saved = arrays[0]
    arrays[0] = value()
    try:
        with pytest.raises(ValueError, match=rf"^{name}\[0\] {found}"):
            est.predict(X)
    finally:
        arrays[0] = saved
    est.predict(X)  # put back: usable again


@pytest.mark.parametrize("name, value, found", ITEMS)
def test_a_malformed_item_is_refused_when_the_list_is_set(fitted, name, value, found):
    est, X = fitted
    before = getattr(est, name)
    bad = list(before)
    bad[0] = value()
    with pytest.raises(ValueError, match=rf"^{name}\[0\] {found}"):
        setattr(est, name, bad)
    assert getattr(est, name) is before  # a refused list leaves the one before in place


@pytest.mark.parametrize("name", ["coefs_", "intercepts_"])
@pytest.mark.parametrize("value, found", [([], "an empty list"), (None, "NoneType"),
                                          (np.zeros(2), "ndarray"), ("ab", "str"),
                                          (5, "int")])
def test_a_malformed_list_is_refused(fitted, name, value, found):
    est, X = fitted
    before = getattr(est, name)
    with pytest.raises(ValueError, match=rf"^{name} must be a list of 2 arrays, one per "
                                         rf"layer; got {found}$"):
        setattr(est, name, value)
    assert getattr(est, name) is before
    est.predict(X)


@pytest.mark.parametrize("name", ["coefs_", "intercepts_"])
def test_an_emptied_list_is_refused_when_used(fitted, name):
    est, X = fitted
    arrays = getattr(est, name)
    saved = list(arrays)
    arrays.clear()
    try:
        with pytest.raises(ValueError, match=rf"^{name} must be a list of 2 arrays, one per "
                                             "layer; got an empty list$"):
            est.predict(X)
    finally:
        arrays.extend(saved)
    est.predict(X)


def test_integer_and_bool_items_are_taken_as_numbers(fitted):
    est, X = fitted
    coefs = list(est.coefs_)
    est.coefs_ = [np.ones(coefs[0].shape, np.int64), np.zeros(coefs[1].shape, bool)]
    np.testing.assert_array_equal(est.model_.get_weights()[0], np.ones(coefs[0].shape).T)
    est.coefs_ = coefs
