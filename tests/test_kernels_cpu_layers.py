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


