"""Transfer learning: trainable=False layers (not updated, optimizer state still, gradients
flowing through), settable between fits, freeze/unfreeze, a new head on a trained base."""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(48, 6)).astype(np.float32)
y = rng.integers(0, 3, 48)


def _weights(model, name):
    return [w.copy() for w in model.get_layer(name).get_weights()]


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("optimizer", [fm.SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
                                       fm.AdamW(lr=0.01), fm.RMSprop(lr=0.01), fm.Adagrad(lr=0.1),
                                       fm.LAMB(lr=0.01, weight_decay=0.01)],
                         ids=["sgd", "adamw", "rmsprop", "adagrad", "lamb"])
def test_frozen_layer_and_its_optimizer_state_do_not_move(device, optimizer):
    m = fm.MLP([6, 8, 5, 3], device=device, seed=0, optimizer=optimizer)
    m.fit(X, y, epochs=1, batch_size=16, verbose=0)  # some optimizer state everywhere
    m.get_layer("hidden2").trainable = False
    frozen = _weights(m, "hidden2")
    first = _weights(m, "hidden1")
    lo = 6 * 8 + 8
    state_before = {n: m._kernels.to_host(m._opt_state[n])[lo:lo + 5 * 8 + 5].copy()
                    for n in m.optimizer.state_names}
    m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(frozen, _weights(m, "hidden2")):
        np.testing.assert_array_equal(a, b)
    for n, before in state_before.items():
        np.testing.assert_array_equal(before, m._kernels.to_host(m._opt_state[n])[lo:lo + 5 * 8 + 5])
    assert np.abs(first[0] - _weights(m, "hidden1")[0]).max() > 0  # gradients flowed through


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_gradients_flow_through_a_frozen_layer_exactly(device):
    """With plain SGD, the layer before a frozen one moves by exactly lr * its gradient."""
    m = fm.MLP([6, 8, 5, 3], device=device, dtype="float64", seed=0, optimizer=fm.SGD(lr=0.5),
               activation="tanh")
    m.freeze("hidden2", "output")
    _, grads = m.compute_gradients(X, y)
    W1 = _weights(m, "hidden1")[0]
    m.train_step(X, y)
    np.testing.assert_allclose(W1 - _weights(m, "hidden1")[0], 0.5 * grads["hidden1"]["dW"], rtol=1e-10, atol=1e-13)


def test_clip_norm_counts_only_trainable_gradients():
    m = fm.MLP([6, 8, 5, 3], device="cpu", dtype="float64", seed=0,
               optimizer=fm.SGD(lr=1.0, clip_norm=1e-3))
    m.freeze("hidden1")
    _, grads = m.compute_gradients(X, y)
    norm = np.sqrt(sum((g ** 2).sum() for name, d in grads.items() if name != "hidden1" for g in d.values()))
    W2 = _weights(m, "hidden2")[0]
    m.train_step(X, y)
    np.testing.assert_allclose(W2 - _weights(m, "hidden2")[0], grads["hidden2"]["dW"] * 1e-3 / (norm + 1e-6), rtol=1e-8)  # torch: + 1e-6


def test_trainable_settable_between_fits_and_saved(tmp_path):
    m = fm.MLP([6, 8, 3], device="cpu", seed=0, optimizer="adam")
    m.freeze()
    assert not any(l.trainable for l in m.layers)
    w = m.get_weights()
    m.fit(X, y, epochs=1, verbose=0)
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    m.unfreeze("output")
    m.fit(X, y, epochs=1, verbose=0)
    assert np.abs(w[2] - m.get_weights()[2]).max() > 0
    np.testing.assert_array_equal(w[0], m.get_weights()[0])
    m.save(tmp_path / "m.npz")
    loaded = fm.load(tmp_path / "m.npz")
    assert [l.trainable for l in loaded.layers] == [False, True]
    assert [l.name for l in loaded.layers] == ["hidden1", "output"]


def test_bad_input():
    m = fm.MLP([6, 8, 3], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*hidden1"):
        m.freeze("nope")
    with pytest.raises(TypeError, match="trainable"):
        m.layers[0].trainable = "no"
    with pytest.raises(TypeError, match="trainable"):
        fm.Dense(3, trainable=1)


def test_new_head_on_a_frozen_base():
    """The README's transfer recipe on small data: train on task A, take the base up to
    hidden2, put a new head on it, freeze the base, train on task B."""
    base = fm.MLP([6, 16, 8, 3], device="cpu", seed=0, optimizer=fm.Adam(lr=0.01))
    base.fit(X, y, epochs=5, verbose=0)
    XB = rng.normal(size=(64, 6)).astype(np.float32)
    yB = (XB[:, 0] + XB[:, 1] > 0).astype(np.int64)
    head = fm.Dense(2, name="new_head")(base.get_layer("hidden2").output)
    new = fm.Model(base.inputs, head, optimizer=fm.Adam(lr=0.05), seed=1)
    new.freeze("hidden1", "hidden2")
    trained = _weights(base, "hidden1") + _weights(base, "hidden2")
    for a, b in zip(trained, _weights(new, "hidden1") + _weights(new, "hidden2")):
        np.testing.assert_array_equal(a, b)  # starts from the trained base
    before = new.evaluate(XB, yB)["loss"]
    new.fit(XB, yB, epochs=30, batch_size=16, verbose=0)
    assert new.evaluate(XB, yB)["loss"] < before
    for a, b in zip(trained, _weights(new, "hidden1") + _weights(new, "hidden2")):
        np.testing.assert_array_equal(a, b)  # the base did not move


def test_sequential_new_head_starts_from_the_base_and_a_rebuild_shares_it():
    base = fm.MLP([6, 8, 3], device="cpu", seed=0, optimizer=fm.Adam(lr=0.01))
    base.fit(X, y, epochs=3, verbose=0)
    trained = _weights(base, "hidden1")
    new = fm.Sequential([base.get_layer("hidden1"), fm.Dense(2, name="head")], device="cpu", seed=3)
    for a, b in zip(trained, _weights(new, "hidden1")):
        np.testing.assert_array_equal(a, b)
    # all of new's layers again: the same network with the same weights, as in Keras
    again = fm.Sequential(list(new.layers), device="cpu", seed=9)
    np.testing.assert_array_equal(_weights(again, "hidden1")[0], trained[0])
    again.compile(optimizer=fm.SGD(lr=0.1))
    again.fit(X, y % 2, epochs=1, verbose=0)
    for a, b in zip(_weights(again, "hidden1") + _weights(again, "head"),
                    _weights(new, "hidden1") + _weights(new, "head")):
        np.testing.assert_array_equal(a, b)  # training one moved the other
    assert np.abs(_weights(new, "hidden1")[0] - trained[0]).max() > 0
