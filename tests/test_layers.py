"""Dropout and BatchNorm layers (with the activations they carry): masks, running
statistics, and what MLP builds. (Their gradients are checked in test_gradcheck.py.)"""

import numpy as np
import pytest

import fastmlp
from helpers import digits_split as _digits

rng0 = np.random.default_rng(0)
X_SMALL = rng0.normal(size=(12, 5))
Y_SMALL = rng0.integers(0, 3, 12)


# ------------------------------------------------------------------------------ dropout

def test_dropout_masks_statistics_and_inference():
    model = fastmlp.Sequential([fastmlp.Dense(20, 400, "relu"), fastmlp.Dropout(0.3),
                                fastmlp.Dense(400, 2)], seed=0)
    X = np.abs(np.random.default_rng(1).normal(size=(64, 20))).astype(np.float32)
    v = model._buffers_for(64, np.zeros(64, np.int64)).views(64)
    v.A[0][...] = X
    model._forward(v, training=True)
    hidden, dropped = v.A[1], v.A[2]
    alive = hidden != 0
    frac = 1 - (dropped[alive] != 0).mean()
    assert abs(frac - 0.3) < 0.02
    kept = dropped[alive] != 0
    np.testing.assert_allclose(dropped[alive][kept], hidden[alive][kept] / 0.7, rtol=1e-6)
    # off in inference: predict twice gives the same answer, equal to the no-dropout network
    p1, p2 = model.predict_proba(X), model.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    plain = fastmlp.Sequential([fastmlp.Dense(20, 400, "relu"), fastmlp.Dense(400, 2)], seed=0)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(p1, plain.predict_proba(X), rtol=1e-6)


def test_dropout_is_seeded():
    X, y, _, _ = _digits()
    runs = []
    for _ in range(2):
        model = fastmlp.MLP([64, 32, 10], dropout=0.5, seed=5)
        model.fit(X[:300], y[:300], epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ batch norm

def test_batchnorm_running_statistics_follow_the_batches():
    model = fastmlp.Sequential([fastmlp.BatchNorm(4), fastmlp.Dense(4, 2)], dtype="float64",
                               optimizer=fastmlp.SGD(lr=1e-9), seed=0)
    X = np.random.default_rng(2).normal(loc=3, scale=2, size=(40, 4))
    y = np.zeros(40, np.int64)
    model.fit(X, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    mean, var = np.zeros(4), np.ones(4)
    for start in range(0, 40, 10):
        batch = X[start : start + 10]
        mean = 0.9 * mean + 0.1 * batch.mean(0)
        var = 0.9 * var + 0.1 * batch.var(0, ddof=1)
    gamma, beta, running_mean, running_var = model.get_weights()[:4]
    np.testing.assert_allclose(running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, var, rtol=1e-12)
    # inference uses them
    out = model._outputs(X[:3], 1024)
    W, b = model.get_weights()[4:]
    expected = (gamma * (X[:3] - mean) / np.sqrt(var + 1e-5) + beta) @ W.T + b
    np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_batchnorm_rejects_training_batches_of_one():
    model = fastmlp.MLP([5, 4, 3], batch_norm=True, seed=0)
    with pytest.raises(ValueError, match="BatchNorm needs at least 2 samples"):
        model.train_step(X_SMALL[:1], Y_SMALL[:1])
    assert model.predict(X_SMALL[:1]).shape == (1,)  # inference is fine


def test_batch_norm_helps_a_deep_sigmoid_network():
    X, y, Xt, yt = _digits()
    scores = {}
    for bn in (False, True):
        model = fastmlp.MLP([64] + [32] * 6 + [10], activation="sigmoid", batch_norm=bn,
                            optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0)
        model.fit(X, y, epochs=5, batch_size=32, verbose=0)
        scores[bn] = model.evaluate(Xt, yt)["accuracy"]
    assert scores[True] > 0.85 and scores[True] > scores[False] + 0.1, scores


def test_mlp_builds_dropout_and_batchnorm_layers():
    model = fastmlp.MLP([8, 6, 4, 2], activation=["relu", "tanh"], dropout=0.1, batch_norm=True)
    kinds = [(type(l).__name__, l.activation) for l in model.layers]
    assert kinds == [("Dense", "identity"), ("BatchNorm", "relu"), ("Dropout", "identity"),
                     ("Dense", "identity"), ("BatchNorm", "tanh"), ("Dropout", "identity"),
                     ("Dense", "identity")]
    assert [w.shape for w in model.get_weights()][:6] == [(6, 8), (6,), (6,), (6,), (6,), (6,)]


def test_activation_names_ignore_case_and_take_keras_aliases():
    """Optimizer names ignore case; activation names do too, and Keras' 'linear' and None
    mean identity. 'softmax' for a hidden layer is refused saying where it belongs."""
    import inspect

    model = fastmlp.MLP([4, 8, 3], activation="ReLU", output=" Softmax ")
    assert [layer.activation for layer in model.layers] == ["relu", "softmax"]
    assert fastmlp.Dense(3, activation=None).activation == "identity"
    assert fastmlp.Dense(3, "Linear").activation == "identity"
    assert fastmlp.Activation("TANH").activation == "tanh"
    with pytest.raises(ValueError, match="'softmax' is for an output layer only"):
        fastmlp.MLP([4, 8, 3], activation="softmax")
    with pytest.raises(ValueError, match="activation must be one of"):
        fastmlp.MLP([4, 8, 3], activation="relux")
    params = list(inspect.signature(fastmlp.MLP).parameters)
    assert params[:4] == ["sizes", "activation", "output", "loss"] and "kwargs" not in params
