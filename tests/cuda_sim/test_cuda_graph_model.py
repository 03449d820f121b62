"""Graph models on the CUDA backend (under the simulator) against the CPU backend: a residual
MLP and a two-input model with a Concatenate, step by step and through fit."""

import numpy as np
import pytest

import fastmlp as fm


def _residual(device):
    x = fm.Input(5)
    h = fm.Dense(7, activation="tanh")(x)
    h = fm.Add()([h, fm.Dense(7, activation="relu")(h)])
    return fm.Model(x, fm.Dense(3)(h), device=device, seed=0, optimizer=fm.SGD(lr=0.1, momentum=0.9))


def _two_input(device):
    xa, xb = fm.Input(5, name="a"), fm.Input(4, name="b")
    ha = fm.Dense(6, activation="tanh")(xa)
    z = fm.Concatenate()([ha, fm.Dense(3, activation="relu")(xb), xb])
    z = fm.Add()([fm.Dense(6, activation="elu")(z), ha])
    return fm.Model([xa, xb], fm.Dense(3)(z), device=device, seed=0, optimizer=fm.Adam(lr=0.01))


@pytest.mark.parametrize("make", [_residual, _two_input], ids=["residual", "two-input"])
def test_graph_model_matches_the_cpu(make):
    rng = np.random.default_rng(0)
    Xa, Xb = rng.normal(size=(24, 5)).astype(np.float32), rng.normal(size=(24, 4)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    gpu, cpu = make("cuda"), make("cpu")
    gpu.set_weights(cpu.get_weights())
    X = Xa if len(cpu.inputs) == 1 else [Xa, Xb]
    for step in range(4):
        sl = slice(step % 3 * 8, step % 3 * 8 + 8)
        Xs = X[sl] if len(cpu.inputs) == 1 else [Xa[sl], Xb[sl]]
        assert gpu.train_step(Xs, y[sl]) == pytest.approx(cpu.train_step(Xs, y[sl]), rel=1e-4)
    hg = gpu.fit(X, y, epochs=2, batch_size=8, verbose=0)
    hc = cpu.fit(X, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_allclose(hg.history["loss"], hc.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-4, atol=1e-6)
