"""The whole model on the CUDA backend (under the simulator): the same losses, step by step,
as the CPU backend from the same weights, for each loss; fit, predict, evaluate, device
selection and the data movement rules."""

import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import cuda as kcuda

ROWS, SIZES = 24, [5, 7, 6]


def _problem(loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(ROWS, SIZES[0])).astype(np.float32)
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, ROWS), 3
    if loss == "binary_cross_entropy":
        return X, rng.integers(0, 2, ROWS), 1
    return X, rng.normal(size=(ROWS, 2)).astype(np.float32), 2


def _pair(loss, n_out, **kw):
    models = [fastmlp.MLP(SIZES + [n_out], activation=["tanh", "relu"], loss=loss, device=d, seed=0, **kw)
              for d in ("cuda", "cpu")]
    models[0].set_weights(models[1].get_weights())
    return models


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
@pytest.mark.parametrize("opt", [lambda: fastmlp.SGD(lr=0.1, momentum=0.9), lambda: fastmlp.Adam(lr=0.01)],
                         ids=["sgd-momentum", "adam"])
def test_same_losses_step_by_step_as_the_cpu(loss, opt):
    X, y, n_out = _problem(loss)
    gpu, cpu = _pair(loss, n_out, optimizer=None)
    gpu.optimizer, cpu.optimizer = opt(), opt()
    gpu._opt_state = gpu.optimizer.init_state(gpu.n_parameters, gpu.dtype, gpu._kernels.zeros)
    cpu._opt_state = cpu.optimizer.init_state(cpu.n_parameters, cpu.dtype, cpu._kernels.zeros)
    for step in range(6):
        sl = slice(step % 3 * 8, step % 3 * 8 + 8)
        a, b = gpu.train_step(X[sl], y[sl]), cpu.train_step(X[sl], y[sl])
        assert a == pytest.approx(b, rel=1e-4)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_fit_on_the_device_matches_the_cpu(loss):
    X, y, n_out = _problem(loss, seed=1)
    gpu, cpu = _pair(loss, n_out, optimizer=fastmlp.SGD(lr=0.05))
    hg = gpu.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    hc = cpu.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert hg.history.keys() == hc.history.keys()
    for key in hc.history:
        np.testing.assert_allclose(hg.history[key], hc.history[key], rtol=1e-4, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(gpu.predict_proba(X) if loss != "mse" else gpu.predict(X),
                               cpu.predict_proba(X) if loss != "mse" else cpu.predict(X), rtol=1e-4, atol=1e-6)
    for key, value in cpu.evaluate(X, y).items():
        assert gpu.evaluate(X, y)[key] == pytest.approx(value, rel=1e-4, abs=1e-6)


def test_training_data_is_uploaded_once_per_fit(monkeypatch):
    X, y, n_out = _problem("cross_entropy")
    model = _pair("cross_entropy", n_out)[0]
    uploads = []
    real = kcuda.memory.to_device  # asarray uploads through it

    def to_device(host):
        uploads.append(np.shape(host))
        return real(host)

    monkeypatch.setattr(kcuda.memory, "to_device", to_device)
    monkeypatch.setattr(kcuda, "to_device", to_device)
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert uploads.count(X.shape) == 1  # the samples: once; per epoch only the (n,) order


def test_get_weights_are_host_arrays_and_set_weights_uploads():
    model = _pair("cross_entropy", 3)[0]
    weights = model.get_weights()
    assert all(isinstance(w, np.ndarray) for w in weights)
    model.set_weights([w * 0 for w in weights])
    assert all((w == 0).all() for w in model.get_weights())
    assert model.device == "cuda"


def test_batchnorm_and_dropout_train_on_the_device():
    X, y, _ = _problem("cross_entropy")
    model = fastmlp.MLP([5, 8, 3], batch_norm=True, dropout=0.2, device="cuda", seed=0,
                        optimizer=fastmlp.Adam(lr=0.01))
    history = model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.predict_proba(X)).all()


def test_device_selection_under_the_simulator():
    assert kcuda.is_available() and kcuda.SIM
    assert fastmlp.kernels.backend("cuda").name == "cuda"
    assert fastmlp.kernels.backend("auto").name == "cpu"  # auto never picks the slow simulator
