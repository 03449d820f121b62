"""Hypothesis fuzzing of the CUDA kernels against the NumPy reference, under the simulator:
random tiny shapes, values, transposes, activations and losses (few examples: each
simulated launch runs one Python thread per CUDA thread)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp.kernels import codes
from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref

RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _close(actual, expected, rtol, terms):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(float(terms), 1e-30))


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 9), n=st.integers(1, 9), trans_a=st.booleans(),
       trans_b=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       scale=st.sampled_from([1e-2, 1.0, 1e2]), seed=st.integers(0, 2**16))
def test_fuzz_matmul(m, k, n, trans_a, trans_b, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    A = (rng.normal(size=(k, m) if trans_a else (m, k)) * scale).astype(dtype)
    B = (rng.normal(size=(n, k) if trans_b else (k, n)) * scale).astype(dtype)
    C = kc.zeros((m, n), dtype)
    kc.matmul(kc.to_device(A), kc.to_device(B), C, trans_a, trans_b)
    expected = np.empty((m, n), dtype)
    ref.matmul(A, B, expected, trans_a, trans_b)
    terms = (np.abs(A.T if trans_a else A).astype(np.float64) @ np.abs(B.T if trans_b else B)).max()
    _close(kc.to_host(C), expected, RTOL[dtype], terms)


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 7), n_in=st.integers(1, 7), n_out=st.integers(1, 7),
       act=st.sampled_from(sorted(codes.ACTIVATIONS.values())), act_prev=st.sampled_from([0, 1, 5]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_fuzz_linear_layer_forward_and_backward(batch, n_in, n_out, act, act_prev, dtype, seed):
    rng = np.random.default_rng(seed)
    A_in = rng.normal(size=(batch, n_in)).astype(dtype)
    W = rng.normal(size=(n_out, n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    delta = rng.normal(size=(batch, n_out)).astype(dtype)
    D_prev = np.abs(A_in) if act_prev not in codes.NEEDS_PREACTIVATION else A_in
    rtol = RTOL[dtype]
    out = kc.zeros((batch, n_out), dtype)
    kc.linear_forward(kc.to_device(A_in), kc.to_device(W), kc.to_device(b), act, out)
    expected = np.empty((batch, n_out), dtype)
    ref.linear_forward(A_in, W, b, act, expected)
    _close(kc.to_host(out), expected, rtol, (np.abs(A_in) @ np.abs(W.T)).max() + np.abs(b).max())
    d_prev = kc.zeros((batch, n_in), dtype)
    kc.delta_backward(kc.to_device(delta), kc.to_device(W), kc.to_device(D_prev), act_prev, d_prev)
    exp_prev = np.empty((batch, n_in), dtype)
    ref.delta_backward(delta, W, D_prev, act_prev, exp_prev)
    _close(kc.to_host(d_prev), exp_prev, rtol, 1.2 * (np.abs(delta) @ np.abs(W)).max())
    dW, db = kc.zeros((n_out, n_in), dtype), kc.zeros(n_out, dtype)
    kc.weight_grad(kc.to_device(delta), kc.to_device(A_in), dW, db)
    exp_dW, exp_db = np.empty((n_out, n_in), dtype), np.empty(n_out, dtype)
    ref.weight_grad(delta, A_in, exp_dW, exp_db)
    _close(kc.to_host(dW), exp_dW, rtol, (np.abs(delta.T) @ np.abs(A_in)).max())
    _close(kc.to_host(db), exp_db, rtol, np.abs(delta).sum(0).max())


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 9), k=st.integers(2, 6), loss=st.sampled_from(["ce", "bce", "mse"]),
       weighted=st.booleans(), scale=st.sampled_from([1.0, 30.0, 1e4]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_fuzz_losses(batch, k, loss, weighted, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    Z = (rng.normal(size=(batch, k)) * scale).astype(dtype)
    w = rng.random(batch).astype(dtype) if weighted else None
    if loss == "ce":
        T = rng.integers(0, k, batch)
        name, extra = "softmax_cross_entropy", (0.1,)
    else:
        T = (rng.integers(0, 2, (batch, k)) if loss == "bce" else rng.normal(size=(batch, k))).astype(dtype)
        name, extra = ("sigmoid_binary_cross_entropy" if loss == "bce" else "mse"), ()
    dZ = kc.zeros((batch, k), dtype)
    got = getattr(kc, name)(kc.to_device(Z), kc.to_device(T), dZ,
                            None if w is None else kc.to_device(w), *extra)
    exp_dZ = np.empty((batch, k), dtype)
    expected = getattr(ref, name)(Z, T, exp_dZ, w, *extra)
    rtol = RTOL[dtype]
    assert np.isfinite(got)
    _close(got, expected, rtol, abs(expected) + 1.0)
    _close(kc.to_host(dZ), exp_dZ, rtol, np.abs(exp_dZ).max() + 1.0 / batch)
