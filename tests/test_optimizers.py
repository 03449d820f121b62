"""Adagrad and LAMB: their kernels on every host backend against the reference, LAMB's
reference against the paper's formulas written per tensor, and both optimizers in models.
(PyTorch parity of Adagrad is in test_torch_parity.py; the CUDA kernels are tested under
the simulator in tests/cuda_sim.)"""

import numpy as np
import pytest

import fastmlp
from fastmlp import kernels

ref, cpu = kernels.backend("reference"), kernels.backend("cpu")
SIZES = [1, 7, 1031]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _arrays(n, dtype, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n).astype(dtype) for _ in range(2)] + [np.abs(rng.normal(size=n)).astype(dtype)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_adagrad_kernel_matches_the_reference(n, dtype):
    p, g, acc = _arrays(n, dtype, n)
    p2, acc2 = p.copy(), acc.copy()
    for step in range(1, 4):
        ref.adagrad_update(p, g, acc, 0.1 / (1 + (step - 1) * 0.01), 1e-3, 1e-10)
        cpu.adagrad_update(p2, g.copy(), acc2, 0.1 / (1 + (step - 1) * 0.01), 1e-3, 1e-10)
        np.testing.assert_allclose(p2, p, **TOL[dtype])
        np.testing.assert_allclose(acc2, acc, **TOL[dtype])


def _segments(n, seed):
    cuts = np.sort(np.random.default_rng(seed).integers(0, n + 1, 3))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)  # may hold empty tensors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_lamb_kernel_matches_the_reference(n, dtype):
    p, g, _ = _arrays(n, dtype, n + 1)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    segments = _segments(n, n)
    for step in range(1, 4):
        g1, g2 = g * step, g * step
        ref.lamb_update(p, g1, m, v, step, 0.01, 0.9, 0.999, 1e-6, 0.01, segments)
        cpu.lamb_update(p2, g2, m2, v2, step, 0.01, 0.9, 0.999, 1e-6, 0.01, segments)
        for got, want in ((p2, p), (m2, m), (v2, v), (g2, g1)):
            np.testing.assert_allclose(got, want, **TOL[dtype])


def _lamb_paper(params, grads, ms, vs, t, lr, b1, b2, eps, wd):
    """Algorithm 2 of You et al. (2019), one tensor at a time, phi = identity."""
    out = []
    for x, g, m, v in zip(params, grads, ms, vs):
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g**2
        r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        u = r + wd * x
        norm_x, norm_u = np.linalg.norm(x), np.linalg.norm(u)
        trust = norm_x / norm_u if norm_x > 0 and norm_u > 0 else 1.0
        out.append(x - lr * trust * u)
    return out


def test_lamb_reference_is_the_papers_algorithm():
    rng = np.random.default_rng(0)
    shapes = [(5, 3), (5,), (2, 5), (2,)]
    params = [rng.normal(size=s) for s in shapes]
    params[1][:] = 0  # a bias at zero: trust ratio 1
    ms, vs = [np.zeros(s) for s in shapes], [np.zeros(s) for s in shapes]
    flat = np.concatenate([x.ravel() for x in params])
    m, v = np.zeros_like(flat), np.zeros_like(flat)
    segments = np.cumsum([0] + [x.size for x in params])
    for t in range(1, 6):
        grads = [rng.normal(size=s) for s in shapes]
        params = _lamb_paper(params, grads, ms, vs, t, 0.02, 0.9, 0.999, 1e-6, 0.01)
        ref.lamb_update(flat, np.concatenate([g.ravel() for g in grads]), m, v, t, 0.02, 0.9, 0.999,
                        1e-6, 0.01, segments)
        np.testing.assert_allclose(flat, np.concatenate([x.ravel() for x in params]), rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: fastmlp.Adagrad(lr=0.05, initial_accumulator_value=0.1),
                                  lambda: fastmlp.LAMB(lr=0.01, weight_decay=0.01), "adagrad", "lamb"],
                         ids=["adagrad", "lamb", "adagrad-by-name", "lamb-by-name"])
def test_models_train_with_them_on_cpu_as_on_the_reference(make, tmp_path):
    X, y = fastmlp.datasets.load_digits()
    X, y = X[:256].astype(np.float64), y[:256]
    models = [fastmlp.MLP([64, 16, 10], optimizer=make() if callable(make) else make, dtype="float64",
                          seed=0, device=d) for d in ("cpu", "reference")]
    before = models[0].evaluate(X, y)["loss"]
    curves = [[m.train_step(X[i:i + 32], y[i:i + 32]) for i in list(range(0, 256, 32)) * 3] for m in models]
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-10)
    assert models[0].evaluate(X, y)["loss"] < before
    path = tmp_path / "m.npz"  # the optimizer state is saved and comes back
    models[0].save(path)
    loaded = fastmlp.load(path)
    assert type(loaded.optimizer) is type(models[0].optimizer)
    assert loaded.train_step(X[:32], y[:32]) == models[0].train_step(X[:32], y[:32])


def test_lamb_gives_each_tensor_its_own_trust_ratio():
    model = fastmlp.MLP([4, 3, 2], optimizer="lamb", dtype="float64", seed=0)
    assert model._opt_state["segments"].tolist() == [0, 12, 15, 21, 23]  # W1, b1, W2, b2


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="lr_decay"):
        fastmlp.Adagrad(lr_decay=-1)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        fastmlp.Adagrad(initial_accumulator_value=-0.1)
    with pytest.raises(ValueError, match="eps"):
        fastmlp.Adagrad(eps=0)
    with pytest.raises(ValueError, match="beta1"):
        fastmlp.LAMB(beta1=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        fastmlp.LAMB(weight_decay=-1)
    with pytest.raises(ValueError, match="segments must rise from 0 to the parameter count 10"):
        fastmlp.LAMB().init_state(10, np.float64, segments=[0, 5])
    with pytest.raises(ValueError, match="optimizer must be"):
        fastmlp.MLP([4, 2], optimizer="lambda")


def test_an_optimizer_prints_its_learning_rate_as_a_person_writes_it():
    """A schedule's 0.001 * 0.25 reads lr=0.00025 in the summary, not 0.0002500000000000001;
    the value itself is kept exactly."""
    opt = fastmlp.Adam(lr=0.001)
    opt.lr = 0.001 * 0.25
    assert "lr=0.00025," in repr(opt) and opt.lr == 0.001 * 0.25
    assert repr(fastmlp.SGD(lr=0.1, momentum=0.9)).startswith("SGD(lr=0.1, momentum=0.9,")
