"""Softmax and the loss kernels of every backend against the NumPy reference: softmax
cross-entropy (labels, one-hot, soft and unnormalised targets; per-sample weights; label
smoothing), KL divergence, binary cross-entropy, MSE and Poisson, on awkward shapes and on
huge logits. How the comparison works: tests/conformance/test_backend_dense.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp.kernels import reference as ref
from helpers import (BATCHES, BIG, DTYPE_IDS, DTYPES, FEATURES, RTOL, SIMULATED, assert_close,
                     bce_targets, check_no_return, randn, rng_for, targets)


def sample_weights(rng, batch, dtype, weighted):
    return rng.uniform(0.0, 2.0, size=batch).astype(dtype) if weighted else None


def wmax(w):
    return 1.0 if w is None else float(np.abs(w).max())


def ce_scale(T, batch, w=None, smoothing=0.0):
    """Magnitude of the terms of dZ = w (p * sum(Q) - Q) / B, Q the smoothed targets."""
    if T.ndim == 1:
        return wmax(w) * (2.0 + smoothing) / batch
    T = np.abs(T.astype(np.float64))
    return wmax(w) * (float(T.sum(axis=1).max() + T.max()) + smoothing) / batch


def check_loss(backend, fname, Z, T, dtype, w, extra, dz_scale, what):
    """loss and dZ of `fname` on `backend` against the reference; returns (loss, dZ)."""
    args = [Z, T, np.empty_like(Z), w] + list(extra)
    r, ra, c, ca = backend.run(fname, args, out=(2,))
    assert np.isfinite(c) and np.isfinite(ca[2]).all(), what
    assert_close(c, r, dtype, scale=abs(r), what="loss " + what)
    assert_close(ca[2], ra[2], dtype, scale=dz_scale, what="dZ " + what)
    return r, ra[2]


def check_softmax_ce(backend, Z, T, dtype, what, w=None, smoothing=0.0):
    return check_loss(backend, "softmax_cross_entropy", Z, T, dtype, w, [smoothing],
                      ce_scale(T, Z.shape[0], w, smoothing), what)


def check_bce(backend, Z, T, dtype, what, w=None):
    # dZ = w (sigmoid(z) - t) / size; terms of magnitude <= w (1 + |t|) / size
    return check_loss(backend, "sigmoid_binary_cross_entropy", Z, T, dtype, w, [],
                      wmax(w) * (1.0 + float(np.abs(T).max())) / Z.size, what)[0]


def check_mse(backend, Z, T, dtype, what, w=None):
    # dZ = 2 w (z - t) / size: z - t may cancel, so the scale is that of its terms
    return check_loss(backend, "mse", Z, T, dtype, w, [],
                      2.0 * wmax(w) * float(np.abs(Z).max() + np.abs(T).max()) / Z.size, what)[0]


# ---------------------------------------------------------------------------------------
# softmax


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax(backend, dtype, batch):
    rng = rng_for("softmax", batch, np.dtype(dtype).itemsize)
    for k in FEATURES:
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        if batch >= 3:
            Z[0] = BIG
            Z[1, ::2] = -BIG
        r, ra, c, ca = backend.run("softmax", [Z, np.empty_like(Z)], out=(1,))
        check_no_return("softmax", r, c)
        # every row has an entry >= 1/K, so max |P| is the row's scale
        assert_close(ca[1], ra[1], dtype, what=f"softmax B={batch} K={k}")
        np.testing.assert_allclose(ca[1].sum(axis=1), 1.0, rtol=10 * RTOL[np.dtype(dtype)])


# ---------------------------------------------------------------------------------------
# softmax cross-entropy and KL divergence


CE_KINDS = ("labels", "labels_int32", "onehot", "probs", "unnormalized")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", CE_KINDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy(backend, dtype, batch, kind, weighted, smoothing):
    rng = rng_for("softmax_ce", batch, kind, weighted, smoothing, np.dtype(dtype).itemsize)
    for k in FEATURES:
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        T = targets(rng, kind, batch, k, dtype)
        if kind == "probs" and k > 1:
            assert (T.max(axis=1) < 1).all()  # really not one-hot
        w = sample_weights(rng, batch, dtype, weighted)
        loss, _ = check_softmax_ce(backend, Z, T, dtype, f"softmax_ce {kind} w={weighted} "
                                   f"s={smoothing} B={batch} K={k}", w, smoothing)
        assert loss >= 0


def test_softmax_cross_entropy_labels_equal_onehot(backend):
    """Labels and the equivalent one-hot rows give the same loss and dZ."""
    rng = rng_for("ce_labels_onehot")
    Z = randn(rng, (33, 17), np.float64)
    y = rng.integers(0, 17, size=33)
    _, _, l1, (_, _, dZ1, _, _) = backend.run("softmax_cross_entropy",
                                              [Z, y, np.empty_like(Z), None, 0.0], out=(2,))
    _, _, l2, (_, _, dZ2, _, _) = backend.run("softmax_cross_entropy",
                                              [Z, np.eye(17)[y], np.empty_like(Z), None, 0.0],
                                              out=(2,))
    assert_close(l1, l2, np.float64, scale=abs(l2))
    assert_close(dZ1, dZ2, np.float64, scale=2 / 33)


def test_weights_are_per_sample_loss_factors(backend):
    rng = np.random.default_rng(2)
    Z, y = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    w = np.array([0, 1, 2, 0.5, 1, 3.0])
    _, _, weighted, (_, _, dZ, _, _) = backend.run("softmax_cross_entropy",
                                                   [Z, y, np.empty_like(Z), w, 0.0], out=(2,))
    per_sample = [backend.run("softmax_cross_entropy",
                              [Z[i:i + 1], y[i:i + 1], np.empty((1, 4)), None, 0.0], out=(2,))[2]
                  for i in range(6)]
    assert weighted == pytest.approx(np.dot(w, per_sample) / 6, rel=1e-12)
    assert np.all(dZ[0] == 0)  # weight 0: no gradient


def test_label_smoothing_matches_the_formula(backend):
    rng = np.random.default_rng(3)
    Z, y = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    eps = 0.2
    Q = (1 - eps) * np.eye(4)[y] + eps / 4
    logP = Z - Z.max(1, keepdims=True)
    logP -= np.log(np.exp(logP).sum(1, keepdims=True))
    _, _, loss, (_, _, dZ, _, _) = backend.run("softmax_cross_entropy",
                                               [Z, y, np.empty_like(Z), None, eps], out=(2,))
    assert loss == pytest.approx(-(Q * logP).sum() / 5, rel=1e-12)
    np.testing.assert_allclose(dZ, (np.exp(logP) - Q) / 5, rtol=1e-12, atol=1e-15)


def kl_targets(rng, batch, k):
    """Rows on the simplex with some exact zeros (0 log 0 = 0)."""
    P = rng.random((batch, k)) ** 2
    P[rng.random((batch, k)) < 0.2] = 0
    P[np.arange(batch), rng.integers(0, k, batch)] += 0.1
    return P / P.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("batch, k", [(1, 2), (17, 3)] if SIMULATED else [(1, 2), (19, 3), (40, 5)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_kl_divergence(backend, dtype, batch, k, weighted):
    rng = rng_for("kl", batch, k, weighted, np.dtype(dtype).itemsize)
    Z = randn(rng, (batch, k), dtype, scale=2.0)
    T = kl_targets(rng, batch, k).astype(dtype)
    w = sample_weights(rng, batch, dtype, weighted)
    args = [Z, T, np.empty_like(Z), w]
    r, ra, c, ca = backend.run("softmax_kl_divergence", args, out=(2,))
    assert np.isfinite(c) and np.isfinite(ca[2]).all()
    # KL = CE - H: the weighted means of the cross-entropy sum_j T_ij (m_i + lse_i - z_ij)
    # and of the targets' entropy -sum_j T_ij log T_ij. Every term of both is >= 0 (m_i - z_ij
    # and lse_i = log sum_j exp(z_ij - m_i) too), so each is known to rtol relative to itself,
    # as the cross-entropy tests check it (scale = the loss), and their difference, which
    # cancels where softmax(Z) is near T, to rtol * (CE + H) = rtol * (KL + 2 H)
    T64 = T.astype(np.float64)
    H = -(T64 * np.log(np.where(T64 > 0, T64, 1.0))).sum(axis=1)
    H_mean = float((H if w is None else w.astype(np.float64) * H).mean())
    assert_close(c, r, dtype, scale=abs(r) + 2 * H_mean)
    assert_close(ca[2], ra[2], dtype, scale=ce_scale(T, batch, w))
    assert r >= -RTOL[np.dtype(dtype)]


# ---------------------------------------------------------------------------------------
# binary cross-entropy, MSE, Poisson


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "k, kind",
    [(1, "labels_1d"), (1, "labels_int"), (1, "binary"), (1, "soft"),
     (3, "binary"), (17, "binary"), (3, "soft"), (17, "soft")],
)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_binary_cross_entropy(backend, dtype, batch, k, kind, weighted):
    rng = rng_for("bce", batch, k, kind, weighted, np.dtype(dtype).itemsize)
    Z = randn(rng, (batch, k), dtype, scale=3.0)
    T = bce_targets(rng, kind, batch, k, dtype)
    w = sample_weights(rng, batch, dtype, weighted)
    loss = check_bce(backend, Z, T, dtype, f"bce {kind} w={weighted} B={batch} K={k}", w)
    assert loss >= 0


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("target_shape", ["2d", "1d"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mse(backend, dtype, batch, target_shape, weighted):
    rng = rng_for("mse", batch, target_shape, weighted, np.dtype(dtype).itemsize)
    for k in FEATURES if target_shape == "2d" else (1,):
        Z = randn(rng, (batch, k), dtype, scale=2.0)
        T = randn(rng, (batch, k) if target_shape == "2d" else (batch,), dtype)
        w = sample_weights(rng, batch, dtype, weighted)
        check_mse(backend, Z, T, dtype, f"mse B={batch} K={k} T{T.shape} w={weighted}", w)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (7, 3), (13, 1), (13, 3), (31, 17)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_poisson(backend, dtype, shape, weighted):
    rng = rng_for("poisson", np.dtype(dtype).str, shape, weighted)
    Z = rng.normal(0, 2, shape).astype(dtype)
    T = rng.poisson(3.0, shape).astype(dtype)
    w = sample_weights(rng, shape[0], dtype, weighted)
    r, ra, c, ca = backend.run("poisson", [Z, T, np.empty(shape, dtype), w], out=(2,))
    # sums of exp() lose a little more than a dot product in float32
    rtol = 2e-5 if np.dtype(dtype) == np.float32 else None
    scale = wmax(w) * float(np.exp(Z.astype(float)).max() + T.max() * np.abs(Z).max())
    assert_close(c, r, dtype, scale, rtol=rtol, what="loss")
    assert_close(ca[2], ra[2], dtype, float(np.abs(ra[2]).max()), rtol=rtol, what="dZ")
    # the formula itself
    Z64, T64 = Z.astype(np.float64), T.astype(np.float64)
    W = np.ones((shape[0], 1)) if w is None else w.astype(np.float64)[:, None]
    np.testing.assert_allclose(r, np.mean(W * (np.exp(Z64) - T64 * Z64)), rtol=1e-12)
    np.testing.assert_allclose(ra[2], (W * (np.exp(Z64) - T64) / Z.size).astype(dtype),
                               rtol=RTOL[np.dtype(dtype)])


def test_poisson_large_logits_stay_finite_in_float32(backend):
    # exp(100) overflows float32, not the float64 every backend computes it in: the loss is
    # finite (this suite found CUDA's kernel summing in float32 and returning inf)
    Z = np.array([[100.0, -100.0, 0.0]], np.float32)
    T = np.array([[1.0, 0.0, 2.0]], np.float32)
    _, _, loss, (_, _, dZ, _) = backend.run("poisson", [Z, T, np.empty_like(Z), None], out=(2,))
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, (np.exp(100.0) - 100.0 + np.exp(-100.0) + 1.0) / 3, rtol=1e-6)
    assert dZ[0, 1] >= 0 and dZ[0, 2] == pytest.approx((1 - 2) / 3)


# ---------------------------------------------------------------------------------------
# huge logits


def huge_logits(rng, batch, k, dtype):
    """Logits of +-BIG and 0, with the largest entry of each row somewhere random."""
    Z = rng.choice(np.array([-BIG, BIG, 0.0, -BIG / 2]), size=(batch, k)).astype(dtype)
    Z[np.arange(batch), rng.integers(0, k, size=batch)] = BIG
    return Z


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_losses_stable_for_huge_logits(backend, dtype):
    rng = rng_for("stability", np.dtype(dtype).itemsize)
    for batch in BATCHES if SIMULATED else (1, 7, 33):
        for k in FEATURES if SIMULATED else (1, 3, 17):
            Z = huge_logits(rng, batch, k, dtype)
            # targets on the wrong class give losses of order BIG: finite, not inf/nan
            for kind in ("labels", "onehot", "probs"):
                check_softmax_ce(backend, Z, targets(rng, kind, batch, k, dtype), dtype,
                                 f"stable softmax_ce {kind} B={batch} K={k}")
            Zb = rng.choice(np.array([-BIG, BIG]), size=(batch, k)).astype(dtype)
            for kind in ("binary", "soft"):
                check_bce(backend, Zb, bce_targets(rng, kind, batch, k, dtype), dtype,
                          f"stable bce {kind} B={batch} K={k}")
            r, ra, c, ca = backend.run("softmax", [Z, np.empty_like(Z)], out=(1,))
            assert np.isfinite(ca[1]).all()
            assert_close(ca[1], ra[1], dtype, what=f"stable softmax B={batch} K={k}")
    # a confidently wrong prediction costs exactly the logit gap
    Z = np.array([[BIG, -BIG]], dtype)
    _, _, loss, (_, _, dZ, _, _) = backend.run(
        "softmax_cross_entropy", [Z, np.array([1]), np.empty_like(Z), None, 0.0], out=(2,))
    assert loss == pytest.approx(2 * BIG)
    np.testing.assert_allclose(dZ, [[1.0, -1.0]])
    _, _, loss, (_, _, dZ, _) = backend.run(
        "sigmoid_binary_cross_entropy", [Z, np.array([[0.0, 1.0]], dtype), np.empty_like(Z), None],
        out=(2,))
    assert loss == pytest.approx(BIG)
    np.testing.assert_allclose(dZ, [[0.5, -0.5]])


@settings(max_examples=5 if SIMULATED else 30, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    loss=st.sampled_from(["ce_labels", "ce_onehot", "ce_probs", "bce_binary", "bce_soft",
                          "mse"]),
    batch=st.integers(1, 12),
    k=st.integers(1, 12),
    logit_scale=st.sampled_from([0.01, 1.0, 30.0, BIG]),
    seed=st.integers(0, 2**32 - 1),
)
def test_losses_on_random_shapes(backend, dtype, loss, batch, k, logit_scale, seed):
    rng = np.random.default_rng(seed)
    Z = randn(rng, (batch, k), dtype, scale=logit_scale)
    what = f"{loss} B={batch} K={k} scale={logit_scale}"
    if loss.startswith("ce_"):
        kind = {"ce_labels": "labels", "ce_onehot": "onehot", "ce_probs": "probs"}[loss]
        check_softmax_ce(backend, Z, targets(rng, kind, batch, k, dtype), dtype, what)
    elif loss.startswith("bce_"):
        check_bce(backend, Z, bce_targets(rng, loss[4:], batch, k, dtype), dtype, what)
    else:
        check_mse(backend, Z, randn(rng, (batch, k), dtype, scale=logit_scale), dtype, what)
