"""fastmlp.fit_lbfgs: full-batch L-BFGS over the model's kernels, in row chunks."""

import numpy as np
import pytest

pytest.importorskip("scipy")

import fastmlp as fm  # noqa: E402


def _data(n=157, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=d) + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return X, y


def test_convex_problem_reaches_logistic_regressions_optimum():
    """No hidden layer + sigmoid cross-entropy + L2 is logistic regression: the optimum is
    scikit-learn's LogisticRegression(C) with l2 = 1 / (C n) (it penalises no intercept)."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y = _data()
    C = 0.5
    model = fm.MLP([5, 1], loss="binary_cross_entropy", dtype="float64", device="cpu", seed=0)
    result = fm.fit_lbfgs(model, X, y, l2=1 / (C * len(X)), tol=1e-10, max_iter=500)
    assert result.converged and result.n_iter <= 500 and result.n_fun >= result.n_iter
    ref = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    W, b = model.get_weights()
    np.testing.assert_allclose(W, ref.coef_, rtol=1e-4, atol=1e-4)  # SciPy stops on ftol
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-4, atol=1e-4)
    assert result.loss_curve[-1] == pytest.approx(result.loss)
    assert all(a >= b - 1e-12 for a, b in zip(result.loss_curve, result.loss_curve[1:]))


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_chunk_size_does_not_change_the_result(device):
    X, y = _data(61)
    results = []
    for chunk in (1, 7, 61, 4096):
        model = fm.MLP([5, 6, 2], activation="tanh", dtype="float64", device=device, seed=1)
        fm.fit_lbfgs(model, X, y, max_iter=15, chunk_size=chunk)
        results.append(model.get_weights())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_sparse_and_weighted_input():
    sp = pytest.importorskip("scipy.sparse")
    X, y = _data(80, 12)
    X[np.abs(X) < 1] = 0
    w = np.random.default_rng(3).uniform(0.5, 2, len(X))
    fits = []
    for data in (X, sp.csr_matrix(X)):
        model = fm.MLP([12, 4, 2], dtype="float64", device="cpu", seed=0)
        fits.append(fm.fit_lbfgs(model, data, y, sample_weight=w, max_iter=20))
        fits[-1].weights = model.get_weights()
    assert fits[0].loss == pytest.approx(fits[1].loss, rel=1e-12)
    for a, b in zip(fits[0].weights, fits[1].weights):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    unweighted = fm.fit_lbfgs(fm.MLP([12, 4, 2], dtype="float64", device="cpu", seed=0), X, y,
                              max_iter=20)
    assert unweighted.loss != pytest.approx(fits[0].loss)


def test_lbfgs_beats_adam_on_a_small_problem_and_reports_iterations():
    X, y = _data(200)
    model = fm.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0)
    start = model.evaluate(X, y)["loss"]
    result = fm.fit_lbfgs(model, X, y, max_iter=30)
    assert result.n_iter == len(result.loss_curve) <= 30
    assert model.evaluate(X, y)["loss"] == pytest.approx(result.loss, rel=1e-9)
    assert result.loss < 0.5 * start


def test_divergence_and_bad_input():
    X, y = _data(40)
    model = fm.MLP([5, 4, 1], loss="mse", dtype="float32", device="cpu", seed=0)
    before = model.get_weights()
    with pytest.raises(fm.DivergenceError, match="L-BFGS diverged") as info:
        fm.fit_lbfgs(model, X * 1e30, y * 1e30, max_iter=5)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    for a, b in zip(model.get_weights(), before):  # back at the last finite point
        assert np.isfinite(a).all()
    dropout = fm.MLP([5, 4, 2], dropout=0.5, device="cpu")
    with pytest.raises(ValueError, match="Dense layers only"):
        fm.fit_lbfgs(dropout, X, y)
    model = fm.MLP([5, 4, 2], device="cpu")
    for kwargs, words in [(dict(max_iter=0), "max_iter"), (dict(max_fun=0), "max_fun"),
                          (dict(tol=-1.0), "tol"), (dict(l2=-1.0), "l2"),
                          (dict(chunk_size=0), "chunk_size"),
                          (dict(sample_weight=np.ones(3)), "sample_weight")]:
        with pytest.raises(ValueError, match=words):
            fm.fit_lbfgs(model, X, y, **kwargs)
    with pytest.raises(ValueError, match="features"):
        fm.fit_lbfgs(model, X[:, :3], y)


def test_reduction_sum_is_the_summed_loss_whatever_the_chunk_size():
    # each chunk's summed loss counts once (it was weighted by its share of the rows: the
    # objective changed with chunk_size, and the last, short chunk counted less)
    X, y = _data(50)
    fits = []
    for chunk in (50, 7, 1):
        model = fm.MLP([5, 6, 2], dtype="float64", device="cpu", seed=3, reduction="sum")
        fits.append((fm.fit_lbfgs(model, X, y, chunk_size=chunk, max_iter=15), model))
    for result, model in fits:
        assert result.loss == pytest.approx(fits[0][0].loss, rel=1e-10)
        for a, b in zip(model.get_weights(), fits[0][1].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    result, model = fits[0]
    assert result.loss == pytest.approx(model.evaluate(X, y)["loss"] * len(X), rel=1e-9)


def test_frozen_layers_keep_their_parameters():
    X, y = _data(60)
    model = fm.Sequential([fm.Dense(5, 4, "relu", trainable=False), fm.Dense(4, 2)],
                          loss="cross_entropy", dtype="float64", device="cpu", seed=0)
    before = model.get_weights()
    result = fm.fit_lbfgs(model, X, y, max_iter=10, l2=0.1)  # l2 covers W of both layers
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert np.abs(after[2] - before[2]).max() > 1e-3 and result.n_iter > 1


def test_models_it_cannot_train_are_named():
    X, y = _data(20)
    for model, words in ((fm.MLP([5, 6, 6, 2], residual=True, device="cpu"), "graph Model"),
                         ("model", "got str")):
        with pytest.raises(TypeError, match=f"model must be a fastmlp Sequential.*{words}"):
            fm.fit_lbfgs(model, X, y)
    with pytest.raises(ValueError, match="Dense layers only.*Activation"):
        fm.fit_lbfgs(fm.Sequential([fm.Dense(5, 4), fm.Activation("relu"), fm.Dense(4, 2)],
                                   device="cpu"), X, y)


def test_a_gradient_that_overflows_where_the_loss_does_not_is_named():
    # poisson in float32: the loss (float64) is finite, exp(100) in the gradient is not
    model = fm.MLP([1, 1], loss="poisson", dtype="float32", device="cpu")
    model.set_weights([np.eye(1), np.zeros(1)])
    with pytest.raises(fm.DivergenceError, match="gradient became non-finite.*float32 overflow"):
        fm.fit_lbfgs(model, [[100.0], [1.0]], [1.0, 2.0])
    np.testing.assert_array_equal(model.get_weights()[0], np.eye(1))
