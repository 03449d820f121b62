"""Models over layers that already have weights share them (Keras' semantics, issue 32):
``fm.Model(model.inputs, model.output)`` is the same network with the same weights, a
sub-model or a new head works on the base's weights, a Sequential of a model's layers too;
training any of them moves what the others see. Layers used for the first time are
initialised from the seed; a model on another device or dtype starts from copies."""

import threading

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 6)).astype(np.float32)
y = rng.integers(0, 3, 40)


def relu(a):
    return np.maximum(a, 0)


def graph_model(**kwargs):
    x = fm.Input(6)
    h = fm.Dense(8, activation="relu", name="h")(x)
    return fm.Model(x, fm.Dense(3, name="o")(h), device="cpu", seed=0, **kwargs)


def assert_same_weights(a, b):
    assert_same_arrays(a.get_weights(), b.get_weights())


def assert_same_arrays(wa, wb):
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)


def test_model_over_the_same_nodes_is_the_same_network():
    """The issue's case: before, the second model re-initialised the layers and took them
    over, so the first model's predict(output=...) and its later sub-models computed with
    random weights."""
    m = graph_model(optimizer="adam")
    m.fit(X, y, epochs=3, verbose=0)
    trained, hidden, labels = m.get_weights(), m.predict(X, output="h"), m.predict(X)
    again = fm.Model(m.inputs, m.output)
    assert_same_weights(m, again)
    for w, v in zip(trained, m.get_weights()):
        np.testing.assert_array_equal(w, v)  # nothing re-initialised
    np.testing.assert_array_equal(again.predict(X), labels)
    np.testing.assert_array_equal(m.predict(X, output="h"), hidden)  # the cached sub-model
    sub = fm.Model(m.inputs, m.get_layer("h").output)  # a sub-model made afterwards
    np.testing.assert_array_equal(sub.predict(X), hidden)
    W, b = m.get_layer("h").get_weights()
    np.testing.assert_allclose(hidden, relu(X @ W.T + b), rtol=1e-5, atol=1e-6)


def test_training_either_model_moves_the_other():
    m = graph_model(optimizer="adam")
    again = fm.Model(m.inputs, m.output, optimizer="adam")
    m.fit(X, y, epochs=2, verbose=0)  # the parent, then the child
    assert_same_weights(m, again)
    np.testing.assert_array_equal(m.predict_proba(X), again.predict_proba(X))
    before = m.get_weights()
    again.fit(X, y, epochs=2, verbose=0)
    assert np.abs(m.get_weights()[0] - before[0]).max() > 0
    assert_same_weights(m, again)
    np.testing.assert_array_equal(m.predict(X, output="h"), again.predict(X, output="h"))
    np.testing.assert_array_equal(m.get_layer("h").get_weights()[0], again.get_weights()[0])


@pytest.mark.parametrize("kind", ["mlp", "graph"])
def test_predict_output_before_and_after_another_model_over_the_nodes(kind):
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=1) if kind == "mlp" else graph_model()
    name = "hidden2" if kind == "mlp" else "h"
    m.fit(X, y, epochs=2, verbose=0)
    before = m.predict(X, output=name)
    other = fm.Model(m.inputs, m.output)
    np.testing.assert_array_equal(m.predict(X, output=name), before)
    np.testing.assert_array_equal(other.predict(X, output=name), before)
    other.fit(X, y, epochs=1, verbose=0)  # both sub-models follow the one set of weights
    after = m.predict(X, output=name)
    assert np.abs(after - before).max() > 0
    np.testing.assert_array_equal(other.predict(X, output=name), after)


def test_sub_model_training_moves_only_its_layers_of_the_parent():
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=0, optimizer=fm.Adam(lr=0.01))
    sub = fm.Model(m.inputs, m.get_layer("hidden2").output,
                   optimizer=fm.AdamW(lr=0.01, weight_decay=0.1))
    out_before = m.get_layer("output").get_weights()
    sub.fit(X, np.zeros((40, 5), np.float32), epochs=2, verbose=0)
    assert_same_arrays(m.get_weights()[:4], sub.get_weights())
    for a, b in zip(out_before, m.get_layer("output").get_weights()):
        np.testing.assert_array_equal(a, b)  # weight decay touches no layer outside it


def test_new_head_shares_the_base_and_trains_it():
    base = fm.MLP([6, 8, 5, 3], device="cpu", seed=0, optimizer="adam")
    base.fit(X, y, epochs=2, verbose=0)
    head = fm.Dense(2, name="head")(base.get_layer("hidden2").output)
    new = fm.Model(base.inputs, head, optimizer=fm.AdamW(weight_decay=0.1), seed=4)
    assert new.n_parameters == 6 * 8 + 8 + 8 * 5 + 5 + 5 * 2 + 2
    assert_same_arrays(new.get_weights()[:4], base.get_weights()[:4])
    out_before = base.get_layer("output").get_weights()
    new.fit(X, y % 2, epochs=2, verbose=0)  # not frozen: the base learns with it
    assert_same_arrays(new.get_weights()[:4], base.get_weights()[:4])
    np.testing.assert_array_equal(base.predict(X, output="hidden2"),
                                  new.predict(X, output="hidden2"))
    for a, b in zip(out_before, base.get_layer("output").get_weights()):
        np.testing.assert_array_equal(a, b)
    base.fit(X, y, epochs=1, verbose=0)  # and the other way round
    assert_same_arrays(new.get_weights()[:4], base.get_weights()[:4])
    np.testing.assert_array_equal(new.get_layer("hidden1").get_weights()[0], base.get_weights()[0])


def test_sequential_over_a_models_layers_shares_them():
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=0)
    m.fit(X, y, epochs=2, verbose=0)
    again = fm.Sequential(list(m.layers), seed=9)  # not re-initialised from seed 9
    assert_same_weights(m, again)
    again.fit(X, y, epochs=2, verbose=0)  # the fused Dense-stack path, on the shared arrays
    assert_same_weights(m, again)
    np.testing.assert_array_equal(m.predict(X, output="hidden1"),
                                  again.predict(X, output="hidden1"))
    partial = fm.Sequential([m.get_layer("hidden1"), fm.Dense(8, 2, name="head")], seed=3)
    partial.fit(X, y % 2, epochs=2, verbose=0)
    assert_same_arrays(partial.get_weights()[:2], m.get_weights()[:2])
    np.testing.assert_array_equal(m.predict(X, output="hidden1"),
                                  partial.predict(X, output="hidden1"))


def test_layers_of_two_models_in_one_graph_share_both():
    a = fm.MLP([6, 4, 3], device="cpu", seed=0)
    b = fm.MLP([4, 2], device="cpu", seed=1)
    a.fit(X, y, epochs=1, verbose=0)
    joined = fm.Model(a.inputs, b.get_layer("output")(a.get_layer("hidden1").output), seed=2)
    assert_same_arrays(joined.get_weights()[:2], a.get_weights()[:2])
    assert_same_arrays(joined.get_weights()[2:], b.get_weights())
    joined.fit(X, y % 2, epochs=2, verbose=0)
    assert_same_arrays(joined.get_weights()[:2], a.get_weights()[:2])
    assert_same_arrays(joined.get_weights()[2:], b.get_weights())
    W1, b1 = a.get_weights()[:2]  # a and b compute with the weights they report
    np.testing.assert_allclose(a.predict(X, output="hidden1"), relu(X @ W1.T + b1),
                               rtol=1e-5, atol=1e-6)
    a.fit(X, y, epochs=1, verbose=0)
    assert_same_arrays(joined.get_weights()[:2], a.get_weights()[:2])


def test_batchnorm_state_is_shared_too():
    x = fm.Input(6)
    h = fm.BatchNorm(activation="relu", name="bn")(fm.Dense(8, name="d")(x))
    m = fm.Model(x, fm.Dense(3, name="o")(h), device="cpu", seed=0)
    again = fm.Model(m.inputs, m.output)
    again.fit(X, y, epochs=1, batch_size=8, verbose=0)  # moves the running statistics
    assert_same_weights(m, again)
    assert m.get_layer("bn").get_weights()[2].any()
    np.testing.assert_array_equal(m.predict_proba(X), again.predict_proba(X))


def test_another_device_or_dtype_starts_from_copies_and_keeps_them():
    m = graph_model()
    m.fit(X, y, epochs=1, verbose=0)
    ref = fm.Model(m.inputs, m.output, device="reference", dtype="float64")
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a.astype(np.float64), b)  # the trained weights, copied
    hidden = m.predict(X, output="h")
    ref.fit(X, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(m.predict(X, output="h"), hidden)  # m keeps its own
    W, b = ref.get_weights()[:2]  # ref's sub-models run on ref's weights
    np.testing.assert_allclose(ref.predict(X, output="h"), relu(X @ W.T + b), rtol=1e-12)
    with pytest.raises(ValueError, match=r"'h' has a set of weights on each of cpu .*reference"):
        m.get_layer("h").get_weights()
    same_place = fm.Model(m.inputs, m.output, device="reference", dtype="float64")
    assert_same_weights(ref, same_place)  # a third model there shares ref's


def test_save_and_load_either_model(tmp_path):
    m = fm.MLP([6, 8, 5, 3], device="cpu", seed=0, optimizer="sgd")
    sub = fm.Model(m.inputs, m.get_layer("hidden2").output)
    m.fit(X, y, epochs=1, verbose=0)
    for name, model in (("m", m), ("sub", sub)):
        model.save(tmp_path / f"{name}.npz")
        loaded = fm.load(tmp_path / f"{name}.npz")
        assert_same_weights(model, loaded)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    loaded = fm.load(tmp_path / "m.npz")  # a loaded model has weights of its own
    loaded.fit(X, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(sub.get_weights()[0], m.get_weights()[0])
    assert np.abs(loaded.get_weights()[0] - m.get_weights()[0]).max() > 0


def test_own_optimizer_state_has_the_loaded_layout():
    """A new head's theta spans the base's output layer too; the state a file should hold
    (_own_optimizer_state) is that of its own parameters, as a model loaded from it has."""
    base = fm.MLP([6, 8, 5, 3], device="cpu", seed=0)
    new = fm.Model(base.inputs, fm.Dense(2, name="head")(base.get_layer("hidden2").output),
                   optimizer="adam", seed=1)
    new.fit(X, y % 2, epochs=1, verbose=0)
    own = new._own_optimizer_state()
    assert own["exp_avg"].shape == (new.n_parameters,)
    copy = fm.Model(*_head_graph(), optimizer="adam", seed=1)  # the same layout, own weights
    assert copy._opt_state["exp_avg"].shape == own["exp_avg"].shape
    head_grads = new.compute_gradients(X, y % 2)[1]["head"]
    grads = np.concatenate([g.ravel() for g in head_grads.values()])
    assert grads.size == 12 and np.abs(own["exp_avg"][-12:]).max() > 0


def _head_graph():
    x = fm.Input(6)
    h = fm.Dense(5, activation="relu")(fm.Dense(8, activation="relu")(x))
    return x, fm.Dense(2)(h)


def test_child_predicts_while_the_parent_trains_in_another_thread():
    """The child shares the parent's training guard: while the parent trains in another
    thread, the child's predict reads a copy of one whole step's weights and its training
    is refused, as for one model."""
    m = fm.MLP([6, 32, 16, 3], device="cpu", seed=0, optimizer="adam")
    child = fm.Model(m.inputs, m.get_layer("hidden2").output)
    errors, started = [], threading.Event()
    begin = fm.callbacks.LambdaCallback(on_train_begin=lambda logs=None: started.set())

    def train():
        try:
            m.fit(X, y, epochs=300, batch_size=8, verbose=0, callbacks=[begin])
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=train)
    thread.start()
    started.wait()
    refused = 0
    while thread.is_alive():
        out = child.predict(X)
        assert out.shape == (40, 16) and np.isfinite(out).all()
        try:
            child.train_step(X, np.zeros((40, 16), np.float32))
        except RuntimeError as exc:
            assert "being trained in another thread" in str(exc)
            refused += 1
        else:
            break  # the parent's fit has ended
    thread.join()
    assert not errors, errors
    assert refused > 0
    np.testing.assert_array_equal(child.predict(X), m.predict(X, output="hidden2"))


def test_a_new_head_is_refused_while_its_base_trains():
    base = fm.MLP([6, 8, 3], device="cpu", seed=0)
    made = []

    class NewHead(fm.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with pytest.raises(RuntimeError, match="build it before or after fit"):
                fm.Model(base.inputs, fm.Dense(2)(base.get_layer("hidden1").output))
            made.append(fm.Model(base.inputs, base.get_layer("hidden1").output))  # shares: fine

    base.fit(X, y, epochs=1, verbose=0, callbacks=[NewHead()])
    np.testing.assert_array_equal(made[0].predict(X), base.predict(X, output="hidden1"))


def test_a_new_head_saves_its_own_optimizer_state_and_resumes_from_it(tmp_path):
    """A new head's theta spans the base's output layer too: its file holds the Adam moments
    of its own parameters (the layout the loaded model has), and training resumes the same."""
    base = fm.MLP([6, 8, 5, 3], device="cpu", seed=0)
    new = fm.Model(base.inputs, fm.Dense(2, name="head")(base.get_layer("hidden2").output),
                   optimizer="adam", seed=1)
    new.fit(X, y % 2, epochs=1, verbose=0)
    new.save(tmp_path / "head.npz")
    loaded = fm.load(tmp_path / "head.npz")
    assert_same_weights(new, loaded)
    np.testing.assert_array_equal(loaded.predict(X), new.predict(X))
    for name, state in new._own_optimizer_state().items():
        np.testing.assert_array_equal(loaded._own_optimizer_state()[name], state)
    new.fit(X, y % 2, epochs=1, shuffle=False, verbose=0)
    loaded.fit(X, y % 2, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(new.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
