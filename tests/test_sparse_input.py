"""Sparse input (scipy.sparse CSR/CSC/COO) in the core API: fit, train_step, predict*,
evaluate (the sparse kernels themselves: tests/conformance/test_backend_sparse.py)."""

import numpy as np
import pytest

import fastmlp as fm


def _sparse(n=150, d=40, seed=0):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", random_state=seed)
    y = (X @ rng.normal(size=d) > 0).astype(np.int64)
    return X, y


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_sparse_fit_equals_dense_fit(activation, device):
    X, y = _sparse()
    models = [fm.MLP([40, 8, 5, 2], activation=activation, optimizer="adam", dtype="float64",
                     device=device, seed=0) for _ in range(2)]
    h_sparse = models[0].fit(X, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    h_dense = models[1].fit(X.toarray(), y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    for key in h_dense.history:
        np.testing.assert_allclose(h_sparse.history[key], h_dense.history[key], rtol=1e-10)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # predict, predict_proba, evaluate and train_step, in every SciPy format
    sp = pytest.importorskip("scipy.sparse")
    for Xs in (X, X.tocsc(), X.tocoo(), sp.csr_array(X)):
        np.testing.assert_allclose(models[0].predict_proba(Xs, batch_size=7),
                                   models[1].predict_proba(X.toarray()), rtol=1e-10)
        assert models[0].evaluate(Xs, y) == pytest.approx(models[1].evaluate(X.toarray(), y))
    assert models[0].train_step(X[:9], y[:9]) == pytest.approx(models[1].train_step(X[:9].toarray(), y[:9]))


def test_sparse_input_through_dropout_and_batchnorm_is_densified_per_batch():
    X, y = _sparse()
    layers = lambda: [fm.Dense(40, 8, "relu"), fm.BatchNorm(8), fm.Dropout(0.2), fm.Dense(8, 2)]  # noqa: E731
    a = fm.Sequential(layers(), dtype="float64", device="cpu", seed=0)
    b = fm.Sequential(layers(), dtype="float64", device="cpu", seed=0)
    ha = a.fit(X, y, epochs=2, batch_size=16, verbose=0)
    hb = b.fit(X.toarray(), y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()), rtol=1e-10)


def test_sparse_bad_input():
    X, y = _sparse()
    model = fm.MLP([40, 4, 2], device="cpu")
    with pytest.raises(ValueError, match="40 features"):
        model.fit(X[:, :30], y, verbose=0)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.predict(bad)
    with pytest.raises(ValueError, match="empty"):
        model.predict(X[:0])


def test_every_scipy_format_and_clear_errors_for_sparse_targets():
    sp = pytest.importorskip("scipy.sparse")
    X, y = _sparse(40, 12)
    dense = X.toarray()
    model = fm.MLP([12, 5, 2], device="cpu", dtype="float64", seed=0)
    expected = model.predict_proba(dense)
    # DOK is a dict subclass: it was taken for {input name: array}
    for fmt in (sp.dok_matrix, sp.dok_array, sp.lil_matrix, sp.bsr_matrix, sp.dia_matrix):
        np.testing.assert_allclose(model.predict_proba(fmt(dense)), expected, rtol=1e-12)
    model.fit(sp.dok_matrix(dense), y, epochs=1, verbose=0)
    ones = sp.csr_matrix(np.ones((40, 1)))
    for what, kwargs in (("y", dict(y=sp.csr_matrix(y.reshape(-1, 1)))),
                         ("sample_weight", dict(y=y, sample_weight=ones))):
        with pytest.raises(TypeError, match=f"{what} must be a dense array: SciPy sparse input"):
            model.fit(X, verbose=0, **kwargs)


def test_hidden_outputs_gradcheck_and_bad_values_with_sparse_input():
    sp = pytest.importorskip("scipy.sparse")
    X, y = _sparse(50, 12)
    dense = X.toarray()
    # a Sequential's hidden layer from sparse rows (each batch densified), as from dense rows
    model = fm.MLP([12, 6, 4, 2], activation="tanh", dtype="float64", device="cpu", seed=0)
    hidden = model.layers[0].name
    np.testing.assert_allclose(model.predict(X.tocoo(), output=hidden, batch_size=7),
                               model.predict(dense, output=hidden), rtol=1e-12)
    # gradcheck through the first layer's sparse kernels (it raised NumPy's error)
    assert fm.gradcheck(model, X, y) < 1e-6
    assert fm.gradcheck(model, X, y) == pytest.approx(fm.gradcheck(model, dense, y), rel=1e-3)
    # a bad value is placed in X by row and column, not by its position in X.data
    dense[7, 4] = np.nan
    with pytest.raises(ValueError, match="nan at row 7, column 4"):
        model.predict(sp.csc_matrix(dense))
