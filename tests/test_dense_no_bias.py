"""Dense(..., use_bias=False): no b parameter on every backend, in get_weights, save/load,
ONNX and PyTorch export; training matches torch.nn.Linear(bias=False)."""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(30, 5))
y = rng.integers(0, 3, 30)


def _model(device, dtype="float64", optimizer=None):
    return fm.Sequential([fm.Dense(5, 7, "tanh", use_bias=False, name="h"), fm.Dense(7, 3, name="o")],
                         device=device, dtype=dtype, seed=0, optimizer=optimizer or fm.SGD(lr=0.1))


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_no_bias_parameter_and_forward(device):
    m = _model(device)
    assert [w.shape for w in m.get_weights()] == [(7, 5), (3, 7), (3,)]
    assert m.n_parameters == 35 + 21 + 3
    W1, W2, b2 = m.get_weights()
    np.testing.assert_allclose(m.predict(X, output="h"), np.tanh(X @ W1.T), rtol=1e-12)
    _, grads = m.compute_gradients(X, y)
    assert set(grads["h"]) == {"dW"}
    m.fit(X, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_allclose(m.predict(X, output="h"), np.tanh(X @ m.get_weights()[0].T), rtol=1e-12)


def test_same_steps_on_cpu_and_reference_and_graph():
    a, b = _model("cpu"), _model("reference")
    x = fm.Input(5)
    g = fm.Model(x, fm.Dense(3, name="o")(fm.Dense(7, "tanh", use_bias=False, name="h")(x)),
                 device="cpu", dtype="float64", optimizer=fm.SGD(lr=0.1))
    b.set_weights(a.get_weights())
    g.set_weights(a.get_weights())
    for _ in range(3):
        la, lb, lg = a.train_step(X, y), b.train_step(X, y), g.train_step(X, y)
        assert la == pytest.approx(lb, rel=1e-10) and la == pytest.approx(lg, rel=1e-10)


def test_torch_parity_of_training():
    torch = pytest.importorskip("torch")
    m = _model("cpu")
    net = m.to_torch()
    assert net[0].bias is None
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        loss = m.train_step(X, y)
        opt.zero_grad()
        t = torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
        t.backward()
        opt.step()
        assert loss == pytest.approx(t.item(), rel=1e-10)
    np.testing.assert_allclose(m.get_weights()[0], net[0].weight.detach().numpy(), rtol=1e-9)


def test_save_load_and_onnx(tmp_path):
    m = _model("cpu", "float32")
    m.fit(X.astype(np.float32), y, epochs=1, verbose=0)
    m.save(tmp_path / "m.npz")
    loaded = fm.load(tmp_path / "m.npz")
    assert not loaded.get_layer("h").use_bias
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m.to_onnx(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (probabilities,) = sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})
    np.testing.assert_allclose(probabilities, m.predict_proba(X.astype(np.float32)), rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(TypeError, match="use_bias"):
        fm.Dense(3, use_bias="no")
