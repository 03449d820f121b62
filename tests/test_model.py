"""The public API behaves as README.md and docs/ARCHITECTURE.md describe it: building, weights, seeds, fit/History,
train_step against the NumPy reference, predict/evaluate, verbosity, callbacks,
optimizers, devices, dtypes, the demo and the bundled data set. (Saving and loading:
test_save_load.py; divergence: test_divergence.py; gradients: test_gradcheck.py.)
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import reference as ref_kernels
from helpers import assert_same_weights, blobs, mlp

D, K = 4, 3


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _numpy_forward(weights, activations, X):
    A = np.asarray(X, np.float64)
    for l, act in enumerate(activations):
        W, b = weights[2 * l].astype(np.float64), weights[2 * l + 1].astype(np.float64)
        A = ref_kernels._f(A @ W.T + b, fastmlp.kernels.ACTIVATIONS[act])  # the NumPy twins
    return A


# ---------------------------------------------------------------------------------------
# building


def test_public_names():
    for name in ["MLP", "Sequential", "Dense", "SGD", "Adam", "AdamW", "Optimizer", "Callback",
                 "History", "gradcheck", "load", "datasets", "kernels", "ACTIVATIONS", "LOSSES"]:
        assert hasattr(fastmlp, name), name
    assert set(fastmlp.ACTIVATIONS) >= {"identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh"}
    assert set(fastmlp.LOSSES) == {"cross_entropy", "kl_divergence", "binary_cross_entropy", "mse", "poisson"}
    assert isinstance(fastmlp.__version__, str)


def test_mlp_and_sequential_build_the_same_network():
    X, y = blobs()
    mlp = fastmlp.MLP([D, 8, 6, K], activation=["tanh", "relu"], loss="cross_entropy",
                      optimizer=fastmlp.SGD(lr=0.05), device="cpu", seed=3)
    seq = fastmlp.Sequential(
        [fastmlp.Dense(D, 8, "tanh"), fastmlp.Dense(8, 6, "relu"), fastmlp.Dense(6, K)],
        loss="cross_entropy", optimizer=fastmlp.SGD(lr=0.05), device="cpu", seed=3,
    )
    assert mlp.sizes == seq.sizes == [D, 8, 6, K]
    assert [l.activation for l in mlp.layers] == [l.activation for l in seq.layers] == ["tanh", "relu", "identity"]
    assert mlp.n_parameters == seq.n_parameters == 8 * D + 8 + 6 * 8 + 6 + K * 6 + K
    assert mlp.get_config() == seq.get_config()
    assert_same_weights(mlp.get_weights(), seq.get_weights())
    np.testing.assert_array_equal(mlp.predict_proba(X), seq.predict_proba(X))
    h1 = mlp.fit(X, y, epochs=2, batch_size=16, verbose=0)
    h2 = seq.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history
    assert_same_weights(mlp.get_weights(), seq.get_weights())


def test_mlp_default_activation_and_output():
    model = fastmlp.MLP([D, 5, 5, K], device="cpu", seed=0)
    assert [l.activation for l in model.layers] == ["relu", "relu", "identity"]
    assert isinstance(model.optimizer, fastmlp.SGD) and model.optimizer.lr == 0.01
    assert model.loss == "cross_entropy"
    assert model.dtype == np.float32
    assert model.n_features == D and model.n_outputs == K
    assert "MLP" in repr(model) and "total parameters" in model.summary()


def test_mlp_without_hidden_layers():
    model = fastmlp.MLP([D, K], optimizer=fastmlp.SGD(lr=0.1), device="cpu", seed=0)
    X, y = blobs()
    assert [W.shape for W in model.get_weights()] == [(K, D), (K,)]
    model.fit(X, y, epochs=5, batch_size=8, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.8


def test_initialisation_scales():
    """He normal for relu-family layers, Glorot uniform for the rest, zero biases."""
    model = fastmlp.MLP([200, 300, 100, 10], activation=["relu", "tanh"], device="cpu",
                        dtype="float64", seed=0)
    W1, b1, W2, b2, W3, b3 = model.get_weights()
    assert np.std(W1) == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    limit2 = math.sqrt(6 / (300 + 100))
    assert np.abs(W2).max() <= limit2 and np.abs(W2).max() > 0.95 * limit2
    limit3 = math.sqrt(6 / (100 + 10))
    assert np.abs(W3).max() <= limit3
    for b in (b1, b2, b3):
        assert not b.any()


# ---------------------------------------------------------------------------------------
# weights


def test_get_weights_layout_and_round_trip():
    model = mlp(sizes=(D, 8, 5, K))
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(8, D), (8,), (5, 8), (5,), (K, 5), (K,)]
    assert all(w.dtype == np.float32 for w in weights)
    rng = np.random.default_rng(1)
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in weights]
    model.set_weights(new)
    assert_same_weights(model.get_weights(), new)
    # get_weights returns copies: editing them leaves the model alone
    got = model.get_weights()
    got[0][...] = 0
    assert_same_weights(model.get_weights(), new)
    # set_weights copies too: editing the list passed in leaves the model alone
    new[0][...] = 0
    assert model.get_weights()[0].any()


def test_weights_are_out_by_in_as_in_the_forward_pass():
    """predict computes f(X @ W.T + b) with the W from get_weights."""
    X, _ = blobs(n=10)
    model = mlp(sizes=(D, 7, 5, K), activation=["tanh", "sigmoid"], dtype="float64")
    rng = np.random.default_rng(2)
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    Z = _numpy_forward(model.get_weights(), ["tanh", "sigmoid", "identity"], X)
    np.testing.assert_allclose(model.predict_proba(X), _softmax(Z), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.predict(X), Z.argmax(axis=1))


def test_set_weights_casts_to_model_dtype():
    model = mlp()
    new = [np.full(w.shape, 0.1, np.float64) for w in model.get_weights()]
    model.set_weights(new)
    for w in model.get_weights():
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w, np.float32(0.1))


# ---------------------------------------------------------------------------------------
# seeds and determinism


def _trained(seed, **fit_kw):
    X, y = blobs()
    model = mlp(seed=seed)
    history = model.fit(X, y, epochs=3, batch_size=8, verbose=0, **fit_kw)
    return model, history


def test_same_seed_gives_bit_identical_training():
    a, ha = _trained(seed=7)
    b, hb = _trained(seed=7)
    assert_same_weights(a.get_weights(), b.get_weights())
    assert ha.history == hb.history


def test_different_seeds_differ():
    m0 = mlp(seed=0)
    m1 = mlp(seed=1)
    assert not np.array_equal(m0.get_weights()[0], m1.get_weights()[0])
    a, _ = _trained(seed=0)
    b, _ = _trained(seed=1)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert not np.array_equal(wa, wb)


def test_seed_changes_shuffling_even_from_the_same_start():
    """Same initial weights, different seeds: only the batch order differs, and it matters."""
    X, y = blobs()
    a, b = mlp(seed=0), mlp(seed=1)
    b.set_weights(a.get_weights())
    a.fit(X, y, epochs=2, batch_size=8, verbose=0)
    b.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])


def test_shuffle_false_is_deterministic_and_ignores_the_seed():
    X, y = blobs()
    a, b = mlp(seed=0), mlp(seed=1)
    b.set_weights(a.get_weights())
    ha = a.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    hb = b.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(a.get_weights(), b.get_weights())
    assert ha.history == hb.history


def test_shuffle_false_is_train_step_over_consecutive_batches():
    X, y = blobs(n=44)  # 44 = 5 batches of 8 and one of 4
    a, b = mlp(), mlp()
    a.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for _ in range(2):
        for start in range(0, len(X), 8):
            b.train_step(X[start : start + 8], y[start : start + 8])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_shuffle_true_changes_the_batch_order():
    X, y = blobs()
    a, b = mlp(seed=0), mlp(seed=0)
    a.fit(X, y, epochs=1, batch_size=8, shuffle=True, verbose=0)
    b.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])


# ---------------------------------------------------------------------------------------
# fit and History


def test_fit_returns_history_with_all_keys():
    X, y = blobs()
    model = mlp()
    history = model.fit(X, y, epochs=4, batch_size=8, validation_split=0.25, verbose=0)
    assert isinstance(history, fastmlp.History)
    for key in ["loss", "accuracy", "val_loss", "val_accuracy"]:
        assert key in history.history, key
        assert len(history.history[key]) == 4
        assert all(isinstance(v, float) and math.isfinite(v) for v in history.history[key])
    assert history.epoch == [0, 1, 2, 3]
    assert history.params["epochs"] == 4
    assert history.params["samples"] == 45
    assert history.params["steps"] == 6
    assert all(0 <= a <= 1 for a in history.history["accuracy"] + history.history["val_accuracy"])


def test_fit_without_validation_has_no_val_keys():
    X, y = blobs()
    history = mlp().fit(X, y, epochs=2, verbose=0)
    assert set(history.history) >= {"loss", "accuracy"}
    assert not any(k.startswith("val_") for k in history.history)


def test_fit_learns():
    X, y = blobs(n=120)
    model = mlp()
    history = model.fit(X, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9
    assert model.evaluate(X, y)["accuracy"] > 0.9


def test_validation_split_takes_the_last_samples():
    X, y = blobs()
    a, b = mlp(), mlp()
    ha = a.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, shuffle=False, verbose=0)
    hb = b.fit(X[:45], y[:45], epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(a.get_weights(), b.get_weights())
    assert ha.history["loss"] == hb.history["loss"]
    final = a.evaluate(X[45:], y[45:])
    assert ha.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert ha.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])


def test_validation_data():
    X, y = blobs()
    Xv, yv = blobs(n=21, seed=0)
    model = mlp()
    history = model.fit(X, y, epochs=3, batch_size=8, validation_data=(Xv, yv), verbose=0)
    assert len(history.history["val_loss"]) == 3
    final = model.evaluate(Xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert history.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])
    assert history.params["samples"] == len(X)


def test_validation_data_as_list_and_one_hot():
    X, y = blobs()
    model = mlp()
    history = model.fit(X, y, epochs=2, validation_data=[X[:10], np.eye(K)[y[:10]]], verbose=0)
    assert len(history.history["val_accuracy"]) == 2


def test_fit_twice_continues_training():
    X, y = blobs()
    a, b = mlp(), mlp()
    a.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    a.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    b.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(a.get_weights(), b.get_weights())


# ---------------------------------------------------------------------------------------
# train_step against the NumPy reference


_STEP_CASES = [
    ("cross_entropy", K, "relu", lambda: fastmlp.SGD(lr=0.1)),
    ("cross_entropy", K, "tanh", lambda: fastmlp.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("cross_entropy", K, "elu", lambda: fastmlp.Adam(lr=0.01)),
    ("cross_entropy", K, "leaky_relu", lambda: fastmlp.AdamW(lr=0.01)),
    ("binary_cross_entropy", 1, "sigmoid", lambda: fastmlp.SGD(lr=0.1, momentum=0.5)),
    ("mse", 2, "relu", lambda: fastmlp.Adam(lr=0.01, weight_decay=0.01, decoupled=False)),
    ("mse", 1, "identity", lambda: fastmlp.SGD(lr=0.01)),
]


def _targets(loss, k, n, rng):
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, n)
    return rng.standard_normal((n, k)) if k > 1 else rng.standard_normal(n)


@pytest.mark.parametrize("dtype,rtol,atol", [("float32", 1e-5, 1e-6), ("float64", 1e-12, 1e-14)],
                         ids=["float32", "float64"])
@pytest.mark.parametrize("loss,k,activation,make_opt", _STEP_CASES,
                         ids=[f"{c[0]}-{c[1]}out-{c[2]}-{type(c[3]()).__name__}{i}" for i, c in enumerate(_STEP_CASES)])
def test_train_step_matches_reference(loss, k, activation, make_opt, dtype, rtol, atol):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 5))
    y = _targets(loss, k, 16, rng)
    cpu = fastmlp.MLP([5, 7, 6, k], activation=activation, loss=loss, optimizer=make_opt(),
                      device="cpu", dtype=dtype, seed=0)
    ref = fastmlp.MLP([5, 7, 6, k], activation=activation, loss=loss, optimizer=make_opt(),
                      device="reference", dtype=dtype, seed=123)
    assert ref.device == "reference"
    ref.set_weights(cpu.get_weights())
    for step in range(3):
        xb, yb = X[step * 5 : step * 5 + 6], y[step * 5 : step * 5 + 6]
        loss_cpu = cpu.train_step(xb, yb)
        loss_ref = ref.train_step(xb, yb)
        assert isinstance(loss_cpu, float)
        assert loss_cpu == pytest.approx(loss_ref, rel=rtol), step
        for wc, wr in zip(cpu.get_weights(), ref.get_weights()):
            assert wc.dtype == np.dtype(dtype)
            np.testing.assert_allclose(wc, wr, rtol=rtol, atol=atol)


def test_train_step_returns_the_loss_before_the_update():
    X, y = blobs(n=16)
    model = mlp(dtype="float64")
    before = model.evaluate(X, y)["loss"]
    loss = model.train_step(X, y)
    assert loss == pytest.approx(before, rel=1e-12)
    assert model.evaluate(X, y)["loss"] < before


def test_train_step_cross_entropy_loss_by_hand():
    X, y = blobs(n=12)
    model = mlp(dtype="float64", optimizer=fastmlp.SGD(lr=1e-3))
    P = _softmax(_numpy_forward(model.get_weights(), ["relu", "identity"], X))
    expected = -np.mean(np.log(P[np.arange(12), y]))
    assert model.train_step(X, y) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------
# predict, predict_proba, evaluate


def test_predict_and_predict_proba_cross_entropy():
    X, y = blobs()
    model = mlp()
    model.fit(X, y, epochs=5, batch_size=8, verbose=0)
    pred = model.predict(X)
    assert pred.shape == (len(X),)
    assert pred.dtype == np.int64
    assert set(np.unique(pred)) <= set(range(K))
    P = model.predict_proba(X)
    assert P.shape == (len(X), K) and P.dtype == np.float32
    assert (P >= 0).all() and (P <= 1).all()
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(pred, P.argmax(axis=1))
    # small inference batches give the same answers
    np.testing.assert_array_equal(model.predict(X, batch_size=7), pred)
    np.testing.assert_allclose(model.predict_proba(X, batch_size=7), P, rtol=1e-6, atol=1e-7)


def test_predict_reads_rows_in_place_or_copies_and_both_agree_with_numpy():
    """After predict's checks (which make a C-contiguous copy of a Fortran-ordered X), an X
    of the model's dtype, C-contiguous and writeable, is multiplied where it lies (no copy
    into the batch buffer); a read-only X, one the kernels cast (float64, uint8 for a
    float32 model) and a view whose rows are contiguous but not adjacent (every other row,
    a column slice: never copied whole) are copied batch by batch. All give the NumPy
    forward pass's outputs, and X is left as it was."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 4, (53, D)).astype(np.float32)  # small integers: uint8 holds them
    model = mlp()
    model.fit(X, rng.integers(0, K, 53), epochs=2, batch_size=8, verbose=0)
    expected = _numpy_forward(model.get_weights(), ["relu", "identity"], X)
    readonly = X.copy()
    readonly.flags.writeable = False
    ways = {"C-contiguous": (X, True), "Fortran order": (np.asfortranarray(X), True),
            "strided view": (np.repeat(X, 2, axis=0)[::2], False),
            "column slice": (np.column_stack([X[:, :1], X])[:, 1:], False),
            "read-only": (readonly, False),
            "float64": (X.astype(np.float64), False), "uint8": (X.astype(np.uint8), False)}
    for name, (Xw, in_place) in ways.items():
        before = Xw.copy()
        assert model._reads_rows_in_place(model._check_X(Xw)) is in_place, name
        for batch in (1024, 7, 1):
            out = model.predict(Xw, batch_size=batch, output=model.layers[-1].name)
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(Xw, before)


def test_predict_proba_is_stable_for_huge_logits():
    model = mlp(dtype="float64")
    w = model.get_weights()
    model.set_weights([x * 1e3 for x in w])
    X, _ = blobs(n=10)
    P = model.predict_proba(X * 100)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-12)


def test_binary_cross_entropy_model():
    X, y = blobs()
    yb = (y == 0).astype(np.int64)
    model = mlp(sizes=(D, 8, 1), loss="binary_cross_entropy")
    history = model.fit(X, yb, epochs=10, batch_size=8, verbose=0)
    assert "accuracy" in history.history
    pred = model.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.int64
    assert set(np.unique(pred)) <= {0, 1}
    P = model.predict_proba(X)
    assert P.shape == (len(X), 1)
    assert (P >= 0).all() and (P <= 1).all()
    np.testing.assert_array_equal(pred, (P[:, 0] > 0.5).astype(np.int64))
    result = model.evaluate(X, yb)
    assert set(result.keys()) == {"loss", "accuracy"}
    assert result["accuracy"] == pytest.approx(np.mean(pred == yb))
    assert result["accuracy"] > 0.9


def test_mse_regression_one_output():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, D)).astype(np.float32)
    t = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    model = mlp(sizes=(D, 16, 1), loss="mse", optimizer=fastmlp.Adam(lr=0.01))
    history = model.fit(X, t, epochs=20, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", "mae", "r2", "lr"}
    pred = model.predict(X)
    assert pred.shape == (80,) and pred.dtype == np.float32
    result = model.evaluate(X, t)
    assert set(result.keys()) == {"loss", "mae", "r2"}
    assert result["loss"] == pytest.approx(np.mean((pred - t) ** 2), rel=1e-4)
    assert result["mae"] == pytest.approx(np.mean(np.abs(pred - t)), rel=1e-4)
    assert result["r2"] == pytest.approx(1 - np.sum((pred - t) ** 2) / np.sum((t - t.mean()) ** 2), rel=1e-4)
    assert result["loss"] < 0.5 * np.var(t)
    with pytest.raises(ValueError, match="predict_proba"):
        model.predict_proba(X)


def test_mse_regression_k_outputs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, D)).astype(np.float32)
    T = np.stack([X[:, 0], X[:, 1] - X[:, 2], X.sum(axis=1)], axis=1)
    model = mlp(sizes=(D, 8, 3), loss="mse")
    model.fit(X, T, epochs=2, batch_size=8, verbose=0)
    pred = model.predict(X)
    assert pred.shape == (40, 3)
    result = model.evaluate(X, T)
    assert set(result.keys()) == {"loss", "mae", "r2"}
    assert result["loss"] == pytest.approx(np.mean((pred - T) ** 2), rel=1e-4)
    r2 = np.mean(1 - ((pred - T) ** 2).sum(axis=0) / ((T - T.mean(axis=0)) ** 2).sum(axis=0))
    assert result["r2"] == pytest.approx(r2, rel=1e-4)  # sklearn's uniform average


def test_mse_with_non_identity_output_matches_reference():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, D))
    t = rng.random(10)
    cpu = fastmlp.MLP([D, 6, 1], output="sigmoid", loss="mse", optimizer=fastmlp.SGD(lr=0.1),
                      device="cpu", dtype="float64", seed=0)
    ref = fastmlp.MLP([D, 6, 1], output="sigmoid", loss="mse", optimizer=fastmlp.SGD(lr=0.1),
                      device="reference", dtype="float64", seed=0)
    assert cpu.train_step(X, t) == pytest.approx(ref.train_step(X, t), rel=1e-12)
    for a, b in zip(cpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert ((cpu.predict(X) > 0) & (cpu.predict(X) < 1)).all()


def test_evaluate_cross_entropy():
    X, y = blobs()
    model = mlp(dtype="float64")
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    result = model.evaluate(X, y)
    assert set(result.keys()) == {"loss", "accuracy"}
    assert isinstance(result["loss"], float) and isinstance(result["accuracy"], float)
    assert result["accuracy"] == pytest.approx(np.mean(model.predict(X) == y))
    P = model.predict_proba(X)
    assert result["loss"] == pytest.approx(-np.mean(np.log(P[np.arange(len(y)), y])), rel=1e-10)
    small = model.evaluate(X, y, batch_size=7)
    assert small["loss"] == pytest.approx(result["loss"], rel=1e-12)
    assert small["accuracy"] == result["accuracy"]


def test_evaluate_does_not_train():
    X, y = blobs()
    model = mlp()
    before = model.get_weights()
    model.evaluate(X, y)
    model.predict(X)
    model.predict_proba(X)
    assert_same_weights(before, model.get_weights())


# ---------------------------------------------------------------------------------------
# verbosity


def test_verbose_0_prints_nothing(capsys):
    X, y = blobs()
    mlp().fit(X, y, epochs=3, batch_size=8, validation_split=0.2, verbose=0)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_2_prints_one_line_per_epoch(capsys):
    X, y = blobs()
    mlp().fit(X, y, epochs=3, batch_size=8, validation_split=0.2, verbose=2)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        assert line.startswith(f"Epoch {i}/3")
        assert "loss:" in line and "val_loss:" in line and "accuracy:" in line
    assert "\r" not in out
    assert err == ""


def test_verbose_1_prints_a_bar(capsys):
    X, y = blobs()
    mlp().fit(X, y, epochs=2, batch_size=8, verbose=1)
    out, err = capsys.readouterr()
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    bars = [line for line in out.splitlines() if "[" in line]
    assert len(bars) == 2
    for line in bars:
        assert line.startswith("8/8 [")  # 60 samples in batches of 8: 8 steps
        assert "=" * 10 in line and "loss:" in line
    assert err == ""


# ---------------------------------------------------------------------------------------
# callbacks


class _Recorder(fastmlp.Callback):
    def __init__(self, stop_at_epoch=None):
        self.calls = []
        self.stop_at_epoch = stop_at_epoch

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", None))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch))
        self.last_batch_logs = dict(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch))
        self.last_epoch_logs = dict(logs)
        if self.stop_at_epoch is not None and epoch == self.stop_at_epoch:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", None))

    def count(self, name):
        return sum(1 for c in self.calls if c[0] == name)


def test_callback_hooks_are_called_in_order():
    X, y = blobs(n=40)
    rec = _Recorder()
    model = mlp()
    model.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, callbacks=[rec], verbose=0)
    assert rec.model is model
    steps = 2  # 32 training samples in batches of 16
    assert rec.count("train_begin") == 1
    assert rec.count("epoch_begin") == 3
    assert rec.count("batch_end") == 3 * steps
    assert rec.count("epoch_end") == 3
    assert rec.count("train_end") == 1
    assert rec.calls[0] == ("train_begin", None) and rec.calls[-1] == ("train_end", None)
    hooks = [c for c in rec.calls if c[0] != "batch_begin"]
    expected = [("train_begin", None)]
    for e in range(3):
        expected += [("epoch_begin", e)] + [("batch_end", s) for s in range(steps)] + [("epoch_end", e)]
    expected += [("train_end", None)]
    assert hooks == expected
    assert {"loss", "accuracy"} <= set(rec.last_batch_logs)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rec.last_epoch_logs)


def test_callback_on_batch_begin_is_called():
    """Callback defines on_batch_begin, so fit must call it once per step (as Keras does)."""
    X, y = blobs(n=40)
    rec = _Recorder()
    mlp().fit(X, y, epochs=2, batch_size=16, callbacks=[rec], verbose=0)
    assert rec.count("batch_begin") == 2 * 3
    begins = [c for c in rec.calls if c[0] in ("batch_begin", "batch_end")]
    assert begins[:2] == [("batch_begin", 0), ("batch_end", 0)]


def test_callback_can_stop_training():
    X, y = blobs(n=40)
    rec = _Recorder(stop_at_epoch=1)
    model = mlp()
    history = model.fit(X, y, epochs=10, batch_size=16, callbacks=[rec], verbose=0)
    assert len(history.history["loss"]) == 2
    assert history.epoch == [0, 1]
    assert rec.count("epoch_begin") == 2 and rec.count("epoch_end") == 2
    assert rec.count("train_end") == 1
    # a new fit starts afresh
    history = model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 3


def test_callback_base_class_hooks_are_no_ops():
    X, y = blobs(n=40)
    history = mlp().fit(X, y, epochs=2, callbacks=[fastmlp.Callback()], verbose=0)
    assert len(history.history["loss"]) == 2


# ---------------------------------------------------------------------------------------
# optimizers


def test_optimizer_configs():
    sgd = fastmlp.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert sgd.get_config() == {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    assert fastmlp.SGD().get_config() == {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    adam = fastmlp.Adam()
    assert adam.get_config() == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                 "weight_decay": 0.0, "decoupled": True, "amsgrad": False}
    adamw = fastmlp.AdamW()
    assert adamw.get_config() == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                  "weight_decay": 0.01, "amsgrad": False}
    assert isinstance(adamw, fastmlp.Adam) and adamw.decoupled
    for opt in (sgd, adam, adamw):
        assert isinstance(opt, fastmlp.Optimizer)
        assert repr(opt).startswith(type(opt).__name__ + "(")


@pytest.mark.parametrize("name,cls", [("sgd", fastmlp.SGD), ("adam", fastmlp.Adam),
                                      ("AdamW", fastmlp.AdamW), (None, fastmlp.SGD)])
def test_optimizer_by_name(name, cls):
    model = fastmlp.MLP([D, 8, K], optimizer=name, device="cpu", seed=0)
    assert type(model.optimizer) is cls
    assert model.get_config()["optimizer"]["name"] == cls.__name__


def test_adamw_is_adam_with_decoupled_decay():
    X, y = blobs()
    a = mlp(optimizer=fastmlp.AdamW(lr=0.01, weight_decay=0.05))
    b = mlp(optimizer=fastmlp.Adam(lr=0.01, weight_decay=0.05))
    a.fit(X, y, epochs=2, batch_size=8, verbose=0)
    b.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert_same_weights(a.get_weights(), b.get_weights())


def test_weight_decay_shrinks_weights():
    X, y = blobs()
    plain = mlp(optimizer=fastmlp.SGD(lr=0.05))
    decay = mlp(optimizer=fastmlp.SGD(lr=0.05, weight_decay=0.5))
    plain.fit(X, y, epochs=3, batch_size=8, verbose=0)
    decay.fit(X, y, epochs=3, batch_size=8, verbose=0)
    norm = lambda m: sum(float(np.sum(w.astype(np.float64) ** 2)) for w in m.get_weights()[0::2])
    assert norm(decay) < norm(plain)


def test_sgd_step_by_hand():
    """SGD without momentum: W_new = W - lr * dW, with dW from the reference backend."""
    X, y = blobs(n=8)
    model = mlp(dtype="float64", optimizer=fastmlp.SGD(lr=0.5))
    w0 = model.get_weights()
    probe = mlp(dtype="float64", optimizer=fastmlp.SGD(lr=1.0), device="reference")
    probe.set_weights(w0)
    probe.train_step(X, y)  # W - 1.0 * grad
    grads = [a - b for a, b in zip(w0, probe.get_weights())]
    model.train_step(X, y)
    for w, g, new in zip(w0, grads, model.get_weights()):
        np.testing.assert_allclose(new, w - 0.5 * g, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------
# devices and dtypes


@pytest.mark.parametrize("device", ["auto", "cpu", "CPU", " auto "])
def test_device_names(device):
    model = fastmlp.MLP([D, 8, K], device=device, seed=0)
    assert model.device == "cpu"


def test_default_device_is_auto_cpu():
    assert fastmlp.MLP([D, 8, K], seed=0).device == "cpu"


def test_reference_device_trains_like_cpu():
    X, y = blobs(n=24)
    cpu = mlp(dtype="float64", device="cpu")
    ref = mlp(dtype="float64", device="reference")
    assert_same_weights(cpu.get_weights(), ref.get_weights())  # same seed, same init
    h1 = cpu.fit(X, y, epochs=2, batch_size=8, verbose=0)
    h2 = ref.fit(X, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-10)
    for a, b in zip(cpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64")])
def test_float64_model_keeps_float64(dtype):
    X, y = blobs()
    model = mlp(dtype=dtype)
    assert model.dtype == np.float64
    assert all(w.dtype == np.float64 for w in model.get_weights())
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    model.train_step(X[:8], y[:8])
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert model.predict_proba(X).dtype == np.float64
    reg = mlp(sizes=(D, 4, 2), loss="mse", dtype=dtype)
    assert reg.predict(X).dtype == np.float64


def test_float32_model_keeps_float32_with_float64_data():
    X, y = blobs(dtype=np.float64)
    model = mlp(dtype="float32")
    model.fit(X, y, epochs=1, verbose=0)
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert model.predict_proba(X).dtype == np.float32


# ---------------------------------------------------------------------------------------
# demo and data set


def test_demo_runs():
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "--epochs", "5", "--verbose", "0"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    accuracy = float(result.stdout.split("test accuracy")[1].split("%")[0])
    assert accuracy > 80


def test_demo_bad_argument_exits_nonzero():
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "--epochs", "0", "--verbose", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "epochs" in result.stderr


def test_load_digits():
    X, y = fastmlp.datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert X.flags.c_contiguous
    assert X.min() >= 0 and X.max() <= 1 and X.max() == 1
    assert y.shape == (1797,) and np.issubdtype(y.dtype, np.integer)
    assert set(np.unique(y)) == set(range(10))
    raw, y_raw = fastmlp.datasets.load_digits(scale=False)
    assert raw.max() == 16
    np.testing.assert_array_equal(raw / np.float32(16), X)
    np.testing.assert_array_equal(y_raw, y)
