"""The kernels of the training features (dropout, batch norm, gelu/softplus, weighted and
smoothed losses, RMSprop, AMSGrad, clipping, regression sums): CPU against the reference on
odd shapes, float32 (rtol 1e-5) and float64 (rtol 1e-12)."""

import numpy as np
import pytest

from fastmlp.kernels import codes, cpu
from fastmlp.kernels import reference as ref

DTYPES = [(np.float32, 1e-5), (np.float64, 1e-12)]
SHAPES = [(1, 1), (1, 5), (7, 1), (7, 3), (33, 17), (130, 64)]


def _close(actual, expected, rtol, scale=None):
    """rtol relative to `scale`: the size of the terms that were summed (default: of the
    result), so that a result that cancels to nearly zero is judged against its terms."""
    expected = np.asarray(expected, np.float64)
    if scale is None:
        scale = max(float(np.abs(expected).max()), 1e-30) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dt(request):
    return request.param


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ["gelu", "softplus"])
def test_new_activations_forward_and_derivative(shape, act, dt):
    dtype, rtol = dt
    code = codes.ACTIVATIONS[act]
    rng = np.random.default_rng(0)
    Z = (rng.normal(size=shape) * 4).astype(dtype)
    A_cpu, A_ref = np.full_like(Z, np.nan), np.full_like(Z, np.nan)
    cpu.activate(Z, code, A_cpu)
    ref.activate(Z, code, A_ref)
    _close(A_cpu, A_ref, rtol)
    D = Z if code in codes.NEEDS_PREACTIVATION else A_ref
    G = rng.normal(size=shape).astype(dtype)
    G_cpu, G_ref = G.copy(), G.copy()
    cpu.activation_backward(D, code, G_cpu)
    ref.activation_backward(D, code, G_ref)
    _close(G_cpu, G_ref, rtol)
    # the derivative really is f': a central difference of the reference forward
    if dtype == np.float64:
        h = 1e-6
        Ap, Am = np.empty_like(Z), np.empty_like(Z)
        ref.activate(Z + h, code, Ap)
        ref.activate(Z - h, code, Am)
        ones = np.ones_like(Z)
        cpu.activation_backward(D, code, ones)
        np.testing.assert_allclose(ones, (Ap - Am) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_cross_entropy_weights_and_smoothing(shape, smoothing, weighted, targets, dt):
    dtype, rtol = dt
    n, K = shape[0], max(shape[1], 2)
    rng = np.random.default_rng(1)
    Z = (rng.normal(size=(n, K)) * 3).astype(dtype)
    T = rng.integers(0, K, n) if targets == "labels" else rng.dirichlet(np.ones(K), n).astype(dtype)
    w = rng.random(n).astype(dtype) * 2 if weighted else None
    d_cpu, d_ref = np.full_like(Z, np.nan), np.full_like(Z, np.nan)
    l_cpu = cpu.softmax_cross_entropy(Z, T, d_cpu, w, smoothing)
    l_ref = ref.softmax_cross_entropy(Z, T, d_ref, w, smoothing)
    _close(l_cpu, l_ref, rtol)
    _close(d_cpu, d_ref, rtol)


def test_weights_are_per_sample_loss_factors():
    rng = np.random.default_rng(2)
    Z, y = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    w = np.array([0, 1, 2, 0.5, 1, 3.0])
    dZ, dZ1 = np.empty_like(Z), np.empty_like(Z)
    weighted = cpu.softmax_cross_entropy(Z, y, dZ, w)
    per_sample = [cpu.softmax_cross_entropy(Z[i : i + 1], y[i : i + 1], dZ1[i : i + 1]) for i in range(6)]
    assert weighted == pytest.approx(np.dot(w, per_sample) / 6, rel=1e-12)
    assert np.all(dZ[0] == 0)  # weight 0: no gradient


def test_label_smoothing_matches_the_formula():
    rng = np.random.default_rng(3)
    Z, y = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    dZ = np.empty_like(Z)
    eps = 0.2
    Q = (1 - eps) * np.eye(4)[y] + eps / 4
    logP = Z - Z.max(1, keepdims=True)
    logP -= np.log(np.exp(logP).sum(1, keepdims=True))
    assert cpu.softmax_cross_entropy(Z, y, dZ, None, eps) == pytest.approx(-(Q * logP).sum() / 5, rel=1e-12)
    np.testing.assert_allclose(dZ, (np.exp(logP) - Q) / 5, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["sigmoid_binary_cross_entropy", "mse"])
def test_weighted_bce_and_mse(shape, loss, dt):
    dtype, rtol = dt
    rng = np.random.default_rng(4)
    Z = (rng.normal(size=shape) * 3).astype(dtype)
    T = rng.integers(0, 2, shape).astype(dtype)
    w = rng.random(shape[0]).astype(dtype)
    for weights in (None, w):
        d_cpu, d_ref = np.full_like(Z, np.nan), np.full_like(Z, np.nan)
        _close(getattr(cpu, loss)(Z, T, d_cpu, weights), getattr(ref, loss)(Z, T, d_ref, weights), rtol)
        _close(d_cpu, d_ref, rtol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_dropout_forward_backward(shape, p, dt):
    dtype, rtol = dt
    rng = np.random.default_rng(5)
    A = rng.normal(size=shape).astype(dtype)
    U = rng.random(shape).astype(dtype)
    out_cpu, out_ref = np.full_like(A, np.nan), np.full_like(A, np.nan)
    cpu.dropout_forward(A, U, p, out_cpu)
    ref.dropout_forward(A, U, p, out_ref)
    _close(out_cpu, out_ref, rtol)
    np.testing.assert_array_equal(out_cpu == 0, (U < p) | (A == 0))
    for act in ["relu", "tanh", "gelu"]:
        code = codes.ACTIVATIONS[act]
        D = A if code in codes.NEEDS_PREACTIVATION else np.abs(A) * 0.5
        delta = rng.normal(size=shape).astype(dtype)
        d_cpu, d_ref = np.full_like(A, np.nan), np.full_like(A, np.nan)
        cpu.dropout_backward(delta, U, p, D, code, d_cpu)
        ref.dropout_backward(delta, U, p, D, code, d_ref)
        _close(d_cpu, d_ref, rtol)


def test_fill_uniform_is_seeded_and_uniform(dt):
    dtype, _ = dt
    U1, U2 = np.empty((200, 50), dtype), np.empty((200, 50), dtype)
    cpu.fill_uniform(U1, np.random.default_rng(7))
    cpu.fill_uniform(U2, np.random.default_rng(7))
    np.testing.assert_array_equal(U1, U2)
    assert 0 <= U1.min() and U1.max() < 1
    assert abs(U1.mean() - 0.5) < 0.01 and abs(U1.var() - 1 / 12) < 0.005


@pytest.mark.parametrize("shape", [(2, 1), (2, 5), (7, 3), (33, 17), (130, 64)])
@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "gelu"])
def test_batchnorm_kernels(shape, act, dt):
    dtype, rtol = dt
    code = codes.ACTIVATIONS[act]
    n, F = shape
    rng = np.random.default_rng(6)
    X = (rng.normal(size=shape) * 2 + 1).astype(dtype)
    gamma = (rng.random(F) + 0.5).astype(dtype)
    beta = rng.normal(size=F).astype(dtype)
    delta = rng.normal(size=shape).astype(dtype)
    D_prev = np.abs(X) if act != "gelu" else X
    results = []
    for k in (cpu, ref):
        rm, rv = np.zeros(F, dtype), np.ones(F, dtype)
        Xhat, inv_std, A = np.full_like(X, np.nan), np.full(F, np.nan, dtype), np.full_like(X, np.nan)
        k.batchnorm_forward(X, gamma, beta, rm, rv, 0.1, 1e-5, code, Xhat, inv_std, A)
        A_inf = np.full_like(X, np.nan)
        k.batchnorm_inference(X, gamma, beta, rm, rv, 1e-5, code, A_inf)
        dgamma, dbeta, d_prev = np.full(F, np.nan, dtype), np.full(F, np.nan, dtype), np.full_like(X, np.nan)
        k.batchnorm_backward(delta, Xhat, inv_std, gamma, dgamma, dbeta, D_prev, code, d_prev)
        results.append([rm, rv, Xhat, inv_std, A, A_inf, dgamma, dbeta, d_prev])
    for a, b in zip(results[0][:-1], results[1][:-1]):
        _close(a, b, rtol)
    # dX = gamma * inv_std / n * (n delta - sum delta - Xhat sum(delta Xhat)) cancels: judge
    # it against the size of its terms
    Xh, inv = results[1][2], results[1][3]
    terms = np.abs(gamma * inv / n) * (n * np.abs(delta) + np.abs(delta).sum(0)
                                      + np.abs(Xh) * np.abs(delta * Xh).sum(0))
    _close(results[0][-1], results[1][-1], rtol, scale=float(terms.max()))
    rm, rv, Xhat = results[0][:3]
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(rm, 0.1 * X64.mean(0), rtol=rtol * 10)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * X64.var(0, ddof=1), rtol=rtol * 10)
    np.testing.assert_allclose(Xhat.mean(0), 0, atol=rtol * 100)


@pytest.mark.parametrize("size", [1, 7, 130, 1031])
@pytest.mark.parametrize("settings", [
    dict(momentum=0.0, centered=False, weight_decay=0.0),
    dict(momentum=0.9, centered=False, weight_decay=0.01),
    dict(momentum=0.0, centered=True, weight_decay=0.0),
    dict(momentum=0.5, centered=True, weight_decay=0.1),
], ids=["plain", "momentum-wd", "centered", "all"])
def test_rmsprop(size, settings, dt):
    dtype, rtol = dt
    rng = np.random.default_rng(8)
    start = rng.normal(size=size).astype(dtype)
    states = []
    for k in (cpu, ref):
        p = start.copy()
        sq, ga, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
        for step in range(4):
            g = np.cos(start * (step + 1)).astype(dtype)
            k.rmsprop_update(p, g, sq, ga, buf, 0.01, 0.9, 1e-8, settings["weight_decay"],
                             settings["momentum"], settings["centered"])
        states.append([p, sq, ga, buf])
    for a, b in zip(*states):
        _close(a, b, rtol * 10)


@pytest.mark.parametrize("size", [1, 7, 1031])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_amsgrad(size, decoupled, dt):
    dtype, rtol = dt
    rng = np.random.default_rng(9)
    start = rng.normal(size=size).astype(dtype)
    states = []
    for k in (cpu, ref):
        p = start.copy()
        m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
        for step in range(1, 5):
            g = (np.cos(start * step) * (5 - step)).astype(dtype)  # shrinking: v falls, v_max holds
            k.adam_update(p, g, m, v, step, 0.01, 0.9, 0.99, 1e-8, 0.01, decoupled, vmax)
        states.append([p, m, v, vmax])
    for a, b in zip(*states):
        _close(a, b, rtol * 10)
    assert np.all(states[0][3] >= states[0][2])


@pytest.mark.parametrize("size", [1, 7, 1031])
@pytest.mark.parametrize("c", [0.0, 0.375, -3.0])
def test_scale(size, c, dt):
    dtype, rtol = dt
    x = np.random.default_rng(11).normal(size=size).astype(dtype)
    x_cpu, x_ref = x.copy(), x.copy()
    cpu.scale(x_cpu, c)
    ref.scale(x_ref, c)
    _close(x_cpu, x_ref, rtol)
    np.testing.assert_array_equal(x_ref, (x * dtype(c)).astype(dtype))
    with pytest.raises(ValueError, match="flat contiguous"):
        cpu.scale(np.ones((2, 3), dtype), c)


@pytest.mark.parametrize("size", [1, 7, 1031])
@pytest.mark.parametrize("max_norm", [1e-3, 1.0, 1e6])
def test_clip_grad_norm(size, max_norm, dt):
    dtype, rtol = dt
    g = np.random.default_rng(10).normal(size=size).astype(dtype) * 3
    g_cpu, g_ref = g.copy(), g.copy()
    n_cpu, n_ref = cpu.clip_grad_norm(g_cpu, max_norm), ref.clip_grad_norm(g_ref, max_norm)
    _close(n_cpu, n_ref, rtol)
    _close(g_cpu, g_ref, rtol)
    assert n_cpu == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=rtol)
    assert np.linalg.norm(g_cpu.astype(np.float64)) <= max_norm * (1 + 1e-5) or max_norm > n_cpu
    if max_norm > n_cpu:
        np.testing.assert_array_equal(g_cpu, g)


@pytest.mark.parametrize("shape", SHAPES)
def test_regression_sums(shape, dt):
    dtype, rtol = dt
    rng = np.random.default_rng(11)
    Z, T = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    sums = []
    for k in (cpu, ref):
        a, s = np.full(shape[1], 0.5), np.full(shape[1], 0.25)  # accumulates onto what is there
        k.regression_sums(Z, T, a, s)
        sums.append((a, s))
    _close(sums[0][0], sums[1][0], rtol)
    _close(sums[0][1], sums[1][1], rtol)
    D = Z.astype(np.float64) - T
    np.testing.assert_allclose(sums[0][0], 0.5 + np.abs(D).sum(0), rtol=rtol)
