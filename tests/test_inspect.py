"""Looking inside a network: layer names, get_layer, sub-models sharing the weights,
predict(output=...)."""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 6)).astype(np.float32)
y = rng.integers(0, 3, 40)


def relu(a):
    return np.maximum(a, 0)


def test_mlp_layers_have_lecture_names_and_dense_defaults_are_unique():
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=0)
    assert [l.name for l in m.layers] == ["hidden1", "hidden2", "output"]
    a, b = fm.Dense(4), fm.Dense(4)
    assert a.name != b.name and a.name.startswith("dense") and b.name.startswith("dense")
    assert fm.Dense(4, name="features").name == "features"
    with pytest.raises(TypeError, match="name"):
        fm.Dense(4, name="")


def test_get_layer_by_name_and_index_and_clear_errors():
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=0)
    assert m.get_layer("hidden2") is m.layers[1]
    assert m.get_layer(index=-1) is m.layers[-1]
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*'hidden1', 'hidden2', 'output'"):
        m.get_layer("nope")
    with pytest.raises(TypeError, match="name or an index"):
        m.get_layer()
    with pytest.raises(ValueError, match="index"):
        m.get_layer(index=3)
    with pytest.raises(TypeError, match="name"):
        m.get_layer(3)


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_predict_output_is_the_hidden_activation(device):
    m = fm.MLP([6, 8, 5, 3], device=device, seed=1, dtype="float64")
    W1, b1, W2, b2, _, _ = m.get_weights()
    H2 = relu(relu(X @ W1.T + b1) @ W2.T + b2)
    np.testing.assert_allclose(m.predict(X, output="hidden2"), H2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.predict(X, output="hidden1"), relu(X @ W1.T + b1), rtol=1e-10)
    logits = m.predict(X, output="output")
    assert logits.shape == (40, 3)
    np.testing.assert_array_equal(logits.argmax(1), m.predict(X))


def test_submodel_shares_weights_both_ways():
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=0, optimizer="adam")
    sub = fm.Model(m.inputs, m.get_layer("hidden2").output)
    assert sub.n_parameters == 6 * 8 + 8 + 8 * 5 + 5
    assert sub.loss == "mse"  # predict gives the features
    before = sub.predict(X)
    m.fit(X, y, epochs=2, verbose=0)  # training the model moves the sub-model
    after = sub.predict(X)
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_array_equal(after, m.predict(X, output="hidden2"))
    # training the sub-model (on a regression of its features) moves the model's weights
    W_out = m.get_layer("output").get_weights()
    w1 = m.get_weights()[0].copy()
    sub.fit(X, np.zeros((40, 5), np.float32), epochs=1, verbose=0)
    assert np.abs(m.get_weights()[0] - w1).max() > 0
    # ... but not the layers outside the sub-model
    for a, b in zip(W_out, m.get_layer("output").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_graph_submodel_and_batchnorm_state_shared():
    x = fm.Input(6)
    h = fm.Dense(8, name="d1")(x)
    h = fm.BatchNorm(activation="relu", name="bn")(h)
    out = fm.Dense(3, name="head")(h)
    m = fm.Model(x, out, device="cpu", seed=0)
    sub = fm.Model(m.inputs, m.get_layer("bn").output)
    m.fit(X, y, epochs=1, batch_size=8, verbose=0)  # moves the running statistics
    np.testing.assert_array_equal(sub.predict(X), m.predict(X, output="bn"))
    assert sub.get_layer("bn").get_weights()[2].any()  # running_mean shared, not zeros


def test_layer_output_errors():
    with pytest.raises(ValueError, match="no output node"):
        fm.Dense(3).output
    x = fm.Input(4)
    shared = fm.Dense(4)
    shared(shared(x))
    with pytest.raises(ValueError, match="several"):
        shared.output


def test_same_layers_rebuilt_is_a_fresh_model_and_new_head_copies_the_base():
    x = fm.Input(6)
    out = fm.Dense(3, name="o")(fm.Dense(8, activation="relu", name="h")(x))
    a = fm.Model(x, out, device="cpu", seed=0)
    a.fit(X, y, epochs=2, verbose=0)
    trained = a.get_layer("h").get_weights()
    new = fm.Model(x, fm.Dense(2, name="head2")(a.get_layer("h").output), device="cpu", seed=5)
    for w, v in zip(trained, new.get_layer("h").get_weights()):
        np.testing.assert_array_equal(w, v)  # starts from the trained base
