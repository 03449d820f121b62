"""Every CPU kernel (kernels/cpu.py) against the NumPy reference (kernels/reference.py).

Each test runs the reference and the CPU kernel on private copies of the same inputs and
compares what they wrote. Pure outputs are pre-filled with NaN in both copies, so an element
a kernel forgets to write stays NaN and fails the comparison; results are read back from the
very arrays that were passed in (the contract: outputs are written into the caller's
arrays), and every input array is checked to be bit-for-bit unchanged afterwards.

Shapes are deliberately awkward: sizes of 1 and odd/prime sizes that are multiples of no
tile (batch in BATCHES, features in FEATURES), plus hypothesis-drawn small shapes.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp.kernels import codes, cpu
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, ACT_IDS, BATCHES, BIG, DTYPE_IDS, DTYPES, FEATURE_PAIRS, FEATURES,
                     RTOL, activation_of, assert_close, call_both, check_no_return, dot_scale, randn, rng_for)


# ---------------------------------------------------------------------------------------
# matmul


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matmul(dtype, trans_a, trans_b, batch):
    rng = rng_for("matmul", batch, trans_a, trans_b, np.dtype(dtype).itemsize)
    for k, n in FEATURE_PAIRS:
        m = batch
        A = randn(rng, (k, m) if trans_a else (m, k), dtype)
        B = randn(rng, (n, k) if trans_b else (k, n), dtype)
        C = np.empty((m, n), dtype)
        r, ra, c, ca = call_both("matmul", [A, B, C, trans_a, trans_b], out=(2,))
        check_no_return("matmul", r, c)
        opA = A.T if trans_a else A
        opB = B.T if trans_b else B
        # the reference really is op(A) @ op(B) (guards against a broken oracle)
        assert_close(ra[2], opA.astype(np.float64) @ opB.astype(np.float64), dtype,
                     scale=dot_scale(opA, opB), what="reference matmul vs float64 product")
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(opA, opB),
                     what=f"matmul {(m, k, n)} trans_a={trans_a} trans_b={trans_b}")


# ---------------------------------------------------------------------------------------
# linear layer: forward, delta propagation, weight gradient


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_linear_forward(dtype, act, batch):
    rng = rng_for("linear_forward", batch, act, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        A_in = randn(rng, (batch, fin), dtype)
        W = randn(rng, (fout, fin), dtype, scale=2.0 / np.sqrt(fin))
        b = randn(rng, (fout,), dtype)
        A_out = np.empty((batch, fout), dtype)
        r, ra, c, ca = call_both("linear_forward", [A_in, W, b, act, A_out], out=(4,))
        check_no_return("linear_forward", r, c)
        # every activation has |f'| <= 1, so the error of f(z) is bounded by that of z
        scale = dot_scale(A_in, W.T) + float(np.abs(b).max())
        assert_close(ca[4], ra[4], dtype, scale=scale,
                     what=f"linear_forward act={act} B={batch} in={fin} out={fout}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_delta_backward(dtype, act, batch):
    rng = rng_for("delta_backward", batch, act, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        delta = randn(rng, (batch, fout), dtype)
        W = randn(rng, (fout, fin), dtype)
        A_prev = activation_of(randn(rng, (batch, fin), dtype, scale=2.0), act)
        out = np.empty((batch, fin), dtype)
        r, ra, c, ca = call_both("delta_backward", [delta, W, A_prev, act, out], out=(4,))
        check_no_return("delta_backward", r, c)
        # f'(A) lies in [0, 1] for every activation, so |out| <= |delta| @ |W| termwise
        assert_close(ca[4], ra[4], dtype, scale=dot_scale(delta, W),
                     what=f"delta_backward act={act} B={batch} in={fin} out={fout}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_weight_grad(dtype, batch):
    rng = rng_for("weight_grad", batch, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        delta = randn(rng, (batch, fout), dtype)
        A_prev = randn(rng, (batch, fin), dtype)
        dW = np.empty((fout, fin), dtype)
        db = np.empty((fout,), dtype)
        r, ra, c, ca = call_both("weight_grad", [delta, A_prev, dW, db], out=(2, 3))
        check_no_return("weight_grad", r, c)
        what = f"weight_grad B={batch} in={fin} out={fout}"
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(delta.T, A_prev), what="dW " + what)
        assert_close(ca[3], ra[3], dtype, scale=float(np.abs(delta).sum(axis=0).max()),
                     what="db " + what)


# ---------------------------------------------------------------------------------------
# activations


def activation_inputs(rng, batch, features, dtype):
    """Random pre-activations plus the edge cases 0, +-30 and +-BIG in the first row."""
    Z = randn(rng, (batch, features), dtype, scale=3.0)
    edge = np.array([0.0, -0.0, 30.0, -30.0, BIG, -BIG, 1e-3, -1e-3], dtype)
    n = min(features, edge.size)
    Z[0, :n] = edge[:n]
    return Z


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activate(dtype, act, batch):
    rng = rng_for("activate", batch, act, np.dtype(dtype).itemsize)
    for features in FEATURES:
        Z = activation_inputs(rng, batch, features, dtype)
        A = np.empty_like(Z)
        r, ra, c, ca = call_both("activate", [Z, act, A], out=(2,))
        check_no_return("activate", r, c)
        assert np.isfinite(ca[2]).all()
        # elementwise: each entry must be right to rtol relative to itself (scale 0 -> the
        # atol is the smallest normal number), except that entries that are exactly zero
        # in the reference must come out zero
        assert_close(ca[2], ra[2], dtype, scale=0.0,
                     what=f"activate act={act} B={batch} F={features}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activation_backward(dtype, act, batch):
    rng = rng_for("activation_backward", batch, act, np.dtype(dtype).itemsize)
    for features in FEATURES:
        A = activation_of(activation_inputs(rng, batch, features, dtype), act)
        delta = randn(rng, (batch, features), dtype)
        r, ra, c, ca = call_both("activation_backward", [A, act, delta], inout=(2,))
        check_no_return("activation_backward", r, c)
        # f'(A) in [0, 1] is computed from the rounded A, so it is known to absolute (not
        # relative) accuracy: the error scale of delta * f'(A) is max |delta|
        assert_close(ca[2], ra[2], dtype, scale=float(np.abs(delta).max()),
                     what=f"activation_backward act={act} B={batch} F={features}")
        if act != codes.IDENTITY and not np.array_equal(ra[2], delta):
            # the kernel really updated the array it was given
            assert not np.array_equal(ca[2], delta)


# ---------------------------------------------------------------------------------------
# softmax and the losses


def targets(rng, kind, batch, k, dtype):
    """Targets of softmax cross-entropy: labels (B,) or a (B, K) target matrix."""
    if kind in ("labels", "labels_int32"):
        return rng.integers(0, k, size=batch).astype(np.int32 if kind == "labels_int32"
                                                     else np.int64)
    if kind == "onehot":
        return np.eye(k, dtype=dtype)[rng.integers(0, k, size=batch)]
    if kind == "probs":  # rows on the simplex, not one-hot (k == 1 is necessarily one-hot)
        return rng.dirichlet(np.ones(k), size=batch).astype(dtype)
    if kind == "unnormalized":  # rows summing to anything in [0.5, 2]: dZ uses sum(T)
        T = rng.dirichlet(np.ones(k), size=batch) * rng.uniform(0.5, 2.0, size=(batch, 1))
        return T.astype(dtype)
    raise AssertionError(kind)


def ce_scale(T, batch):
    """Magnitude of the terms of dZ = (p * sum(T) - T) / B."""
    if T.ndim == 1:
        return 2.0 / batch
    T = np.abs(T.astype(np.float64))
    return float(T.sum(axis=1).max() + T.max()) / batch


def check_softmax_ce(Z, T, dtype, what):
    dZ = np.empty_like(Z)
    r, ra, c, ca = call_both("softmax_cross_entropy", [Z, T, dZ], out=(2,))
    assert np.isfinite(c) and np.isfinite(ca[2]).all(), what
    assert_close(c, r, dtype, scale=abs(r), what="loss " + what)
    assert_close(ca[2], ra[2], dtype, scale=ce_scale(T, Z.shape[0]), what="dZ " + what)
    return r, ra[2]


CE_KINDS = ("labels", "labels_int32", "onehot", "probs", "unnormalized")


@pytest.mark.parametrize("kind", CE_KINDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy(dtype, batch, kind):
    rng = rng_for("softmax_ce", batch, kind, np.dtype(dtype).itemsize)
    for k in FEATURES:
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        T = targets(rng, kind, batch, k, dtype)
        if kind == "probs" and k > 1:
            assert (T.max(axis=1) < 1).all()  # really not one-hot
        loss, _ = check_softmax_ce(Z, T, dtype, f"softmax_ce {kind} B={batch} K={k}")
        assert loss >= 0


def test_softmax_cross_entropy_labels_equal_onehot():
    """Labels and the equivalent one-hot rows give the same loss and dZ (both backends)."""
    rng = rng_for("ce_labels_onehot")
    Z = randn(rng, (33, 17), np.float64)
    y = rng.integers(0, 17, size=33)
    for k in (ref, cpu):
        dZ1, dZ2 = np.empty_like(Z), np.empty_like(Z)
        l1 = k.softmax_cross_entropy(Z, y, dZ1)
        l2 = k.softmax_cross_entropy(Z, np.eye(17)[y], dZ2)
        assert_close(l1, l2, np.float64, scale=abs(l2))
        assert_close(dZ1, dZ2, np.float64, scale=2 / 33)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax(dtype, batch):
    rng = rng_for("softmax", batch, np.dtype(dtype).itemsize)
    for k in FEATURES:
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        P = np.empty_like(Z)
        r, ra, c, ca = call_both("softmax", [Z, P], out=(1,))
        check_no_return("softmax", r, c)
        # every row has an entry >= 1/K, so max |P| is the row's scale
        assert_close(ca[1], ra[1], dtype, what=f"softmax B={batch} K={k}")
        np.testing.assert_allclose(ca[1].sum(axis=1), 1.0, rtol=10 * RTOL[np.dtype(dtype)])


def bce_targets(rng, kind, batch, k, dtype):
    if kind == "labels_1d":  # K == 1 only: labels of shape (B,)
        return rng.integers(0, 2, size=batch).astype(dtype)
    if kind == "labels_int":  # K == 1 only: integer labels of shape (B,)
        return rng.integers(0, 2, size=batch)
    if kind == "binary":
        return rng.integers(0, 2, size=(batch, k)).astype(dtype)
    if kind == "soft":
        return rng.uniform(0, 1, size=(batch, k)).astype(dtype)
    raise AssertionError(kind)


def check_bce(Z, T, dtype, what):
    dZ = np.empty_like(Z)
    r, ra, c, ca = call_both("sigmoid_binary_cross_entropy", [Z, T, dZ], out=(2,))
    assert np.isfinite(c) and np.isfinite(ca[2]).all(), what
    assert_close(c, r, dtype, scale=abs(r), what="loss " + what)
    # dZ = (sigmoid(z) - t) / size; terms of magnitude <= (1 + |t|) / size
    scale = (1.0 + float(np.abs(T).max())) / Z.size
    assert_close(ca[2], ra[2], dtype, scale=scale, what="dZ " + what)
    return r


@pytest.mark.parametrize(
    "k, kind",
    [(1, "labels_1d"), (1, "labels_int"), (1, "binary"), (1, "soft"),
     (3, "binary"), (17, "binary"), (3, "soft"), (64, "soft")],
)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_binary_cross_entropy(dtype, batch, k, kind):
    rng = rng_for("bce", batch, k, kind, np.dtype(dtype).itemsize)
    Z = randn(rng, (batch, k), dtype, scale=3.0)
    T = bce_targets(rng, kind, batch, k, dtype)
    loss = check_bce(Z, T, dtype, f"bce {kind} B={batch} K={k}")
    assert loss > 0


@pytest.mark.parametrize("target_shape", ["2d", "1d"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mse(dtype, batch, target_shape):
    rng = rng_for("mse", batch, target_shape, np.dtype(dtype).itemsize)
    for k in FEATURES if target_shape == "2d" else (1,):
        Z = randn(rng, (batch, k), dtype, scale=2.0)
        T = randn(rng, (batch, k) if target_shape == "2d" else (batch,), dtype)
        check_mse(Z, T, dtype, f"mse B={batch} K={k} T{T.shape}")


def check_mse(Z, T, dtype, what):
    dZ = np.empty_like(Z)
    r, ra, c, ca = call_both("mse", [Z, T, dZ], out=(2,))
    assert np.isfinite(c)
    assert_close(c, r, dtype, scale=abs(r), what="loss " + what)
    # dZ = 2 (z - t) / size: z - t may cancel, so the scale is that of its terms
    scale = 2.0 * float(np.abs(Z).max() + np.abs(T).max()) / Z.size
    assert_close(ca[2], ra[2], dtype, scale=scale, what="dZ " + what)
    return r


def huge_logits(rng, batch, k, dtype):
    """Logits of +-BIG and 0, with the largest entry of each row somewhere random."""
    Z = rng.choice(np.array([-BIG, BIG, 0.0, -BIG / 2]), size=(batch, k)).astype(dtype)
    Z[np.arange(batch), rng.integers(0, k, size=batch)] = BIG
    return Z


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_losses_stable_for_huge_logits(dtype):
    rng = rng_for("stability", np.dtype(dtype).itemsize)
    for batch in (1, 7, 33):
        for k in (1, 3, 17):
            Z = huge_logits(rng, batch, k, dtype)
            # targets on the wrong class give losses of order BIG: finite, not inf/nan
            for kind in ("labels", "onehot", "probs"):
                loss, dZ = check_softmax_ce(Z, targets(rng, kind, batch, k, dtype), dtype,
                                            f"stable softmax_ce {kind} B={batch} K={k}")
                assert np.isfinite(loss) and np.isfinite(dZ).all()
            Zb = rng.choice(np.array([-BIG, BIG]), size=(batch, k)).astype(dtype)
            for kind in ("binary", "soft"):
                check_bce(Zb, bce_targets(rng, kind, batch, k, dtype), dtype,
                          f"stable bce {kind} B={batch} K={k}")
            P = np.empty_like(Z)
            r, ra, c, ca = call_both("softmax", [Z, P], out=(1,))
            assert np.isfinite(ca[1]).all()
            assert_close(ca[1], ra[1], dtype, what=f"stable softmax B={batch} K={k}")
    # a confidently wrong prediction costs exactly the logit gap, on both backends
    Z = np.array([[BIG, -BIG]], dtype)
    for k in (ref, cpu):
        dZ = np.empty_like(Z)
        assert k.softmax_cross_entropy(Z, np.array([1]), dZ) == pytest.approx(2 * BIG)
        np.testing.assert_allclose(dZ, [[1.0, -1.0]])
        dZ = np.empty_like(Z)
        loss = k.sigmoid_binary_cross_entropy(Z, np.array([[0.0, 1.0]], dtype), dZ)
        assert loss == pytest.approx(BIG)
        np.testing.assert_allclose(dZ, [[0.5, -0.5]])


# ---------------------------------------------------------------------------------------
# optimizers: several consecutive steps, state compared after every step

SGD_CONFIGS = [
    # (momentum, weight_decay, nesterov)
    (0.0, 0.0, False),
    (0.0, 1e-2, False),
    (0.9, 0.0, False),
    (0.5, 1e-2, False),
    (0.9, 0.0, True),
    (0.9, 5e-3, True),
]
PARAM_SIZES = (1, 7, 130, 1031)


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("momentum, weight_decay, nesterov", SGD_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sgd_update(dtype, momentum, weight_decay, nesterov, size):
    rng = rng_for("sgd", size, momentum, weight_decay, nesterov, np.dtype(dtype).itemsize)
    lr = 0.1
    p0 = randn(rng, (size,), dtype)
    p_ref, p_cpu = p0.copy(), p0.copy()
    buf_ref, buf_cpu = np.zeros(size, dtype), np.zeros(size, dtype)
    for step in range(1, 6):
        g = randn(rng, (size,), dtype)
        g_saved = g.copy()
        ref.sgd_update(p_ref, g, buf_ref, lr, momentum, weight_decay, nesterov)
        assert cpu.sgd_update(p_cpu, g, buf_cpu, lr, momentum, weight_decay, nesterov) is None
        np.testing.assert_array_equal(g, g_saved, err_msg="sgd_update modified the gradient")
        what = f"sgd step {step} momentum={momentum} wd={weight_decay} nesterov={nesterov}"
        assert_close(p_cpu, p_ref, dtype, what="p " + what)
        assert_close(buf_cpu, buf_ref, dtype, what="buf " + what)
    assert not np.array_equal(p_cpu, p0)  # the parameter passed in was updated
    if momentum == 0:
        assert not buf_cpu.any()  # no momentum: the buffer is not touched
    else:
        assert buf_cpu.any()


ADAM_CONFIGS = [
    # (beta1, beta2, weight_decay, decoupled)
    (0.9, 0.999, 0.0, True),
    (0.9, 0.999, 0.0, False),
    (0.9, 0.999, 0.1, True),
    (0.9, 0.999, 0.1, False),
    (0.5, 0.9, 1e-2, True),
    (0.0, 0.99, 1e-2, False),
]


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("beta1, beta2, weight_decay, decoupled", ADAM_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_update(dtype, beta1, beta2, weight_decay, decoupled, size):
    rng = rng_for("adam", size, beta1, beta2, weight_decay, decoupled, np.dtype(dtype).itemsize)
    lr, eps = 1e-2, 1e-8
    p0 = randn(rng, (size,), dtype)
    state = {name: [p0.copy() if name == "p" else np.zeros(size, dtype) for _ in range(2)]
             for name in ("p", "m", "v")}
    (p_ref, p_cpu), (m_ref, m_cpu), (v_ref, v_cpu) = state["p"], state["m"], state["v"]
    for step in range(1, 6):
        g = randn(rng, (size,), dtype)
        g_saved = g.copy()
        ref.adam_update(p_ref, g, m_ref, v_ref, step, lr, beta1, beta2, eps, weight_decay,
                        decoupled)
        assert cpu.adam_update(p_cpu, g, m_cpu, v_cpu, step, lr, beta1, beta2, eps,
                               weight_decay, decoupled) is None
        np.testing.assert_array_equal(g, g_saved, err_msg="adam_update modified the gradient")
        what = f"adam step {step} b1={beta1} b2={beta2} wd={weight_decay} dec={decoupled}"
        assert_close(p_cpu, p_ref, dtype, what="p " + what)
        assert_close(m_cpu, m_ref, dtype, what="m " + what)
        assert_close(v_cpu, v_ref, dtype, what="v " + what)
    assert not np.array_equal(p_cpu, p0)
    assert m_cpu.any() and v_cpu.any()


def test_adam_first_step_is_lr_times_sign():
    """Sanity of the oracle: Adam's first step moves every weight by about lr * sign(g)."""
    p0 = np.linspace(-1, 1, 11)
    g = np.linspace(-3, 2, 11) + 0.25  # no zero gradients
    for k in (ref, cpu):
        p, m, v = p0.copy(), np.zeros(11), np.zeros(11)
        k.adam_update(p, g, m, v, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, True)
        np.testing.assert_allclose(p0 - p, 1e-3 * np.sign(g), rtol=1e-6)


# ---------------------------------------------------------------------------------------
# data movement and metrics


@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32], ids=["i64", "i32"])
@pytest.mark.parametrize(
    "src_dtype, out_dtype",
    [(np.float32, np.float32), (np.float64, np.float64), (np.uint8, np.float32),
     (np.uint8, np.float64), (np.float64, np.float32), (np.int64, np.int64)],
    ids=["f32", "f64", "u8->f32", "u8->f64", "f64->f32", "i64"],
)
def test_gather_rows(src_dtype, out_dtype, idx_dtype):
    rng = rng_for("gather", np.dtype(src_dtype).str, np.dtype(out_dtype).str,
                  np.dtype(idx_dtype).str)
    for features in FEATURES:
        n = 150
        if np.dtype(src_dtype).kind == "f":
            X = randn(rng, (n, features), src_dtype, scale=100.0)
        else:
            X = rng.integers(0, 256, size=(n, features)).astype(src_dtype)
        for batch in BATCHES:
            idx = rng.integers(0, n, size=batch).astype(idx_dtype)
            idx[0] = n - 1  # the last row, and (batch > 1) a repeated index and row 0
            if batch > 1:
                idx[1], idx[-1] = 0, idx[0]
            out = np.full((batch, features), 7, out_dtype)
            # float outputs are NaN-filled first; integer ones keep the 7s (no NaN to use)
            is_float = out.dtype.kind == "f"
            r, ra, c, ca = call_both("gather_rows", [X, idx, out], out=(2,) if is_float else (),
                                     inout=() if is_float else (2,))
            check_no_return("gather_rows", r, c)
            np.testing.assert_array_equal(ca[2], ra[2])
            np.testing.assert_array_equal(ca[2], X[idx].astype(out_dtype))


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.float64],
                         ids=["i64", "i32", "f64"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_correct_multiclass(dtype, batch, label_dtype):
    rng = rng_for("count_correct", batch, np.dtype(dtype).itemsize, np.dtype(label_dtype).str)
    for k in FEATURES[1:]:
        # small integer logits: ties are common and must go to the first maximum
        Z = rng.integers(-2, 3, size=(batch, k)).astype(dtype)
        y = rng.integers(0, k, size=batch)
        y[: batch // 2] = Z[: batch // 2].argmax(axis=1)  # about half right
        y = y.astype(label_dtype)
        r, _, c, _ = call_both("count_correct", [Z, y])
        assert isinstance(c, (int, np.integer))
        assert c == r, f"count_correct B={batch} K={k}"


@pytest.mark.parametrize("label_dtype", [np.int64, np.float32, np.float64],
                         ids=["i64", "f32", "f64"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_correct_one_output(dtype, batch, label_dtype):
    rng = rng_for("count_correct1", batch, np.dtype(dtype).itemsize, np.dtype(label_dtype).str)
    Z = randn(rng, (batch, 1), dtype)
    Z[::3] = 0.0  # z == 0 predicts class 0
    y = rng.integers(0, 2, size=batch).astype(label_dtype)
    r, _, c, _ = call_both("count_correct", [Z, y])
    assert isinstance(c, (int, np.integer))
    assert c == r == int(((Z[:, 0] > 0) == (y == 1)).sum())


def test_count_correct_known_values():
    Z = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 3.0]])
    y = np.array([1, 0, 1, 0])  # right, right, tie -> class 0 (wrong), wrong
    Z1 = np.array([[0.5], [-0.5], [0.0], [2.0]])
    y1 = np.array([1.0, 0.0, 1.0, 0.0])  # right, right, wrong (0 -> class 0), wrong
    for k in (ref, cpu):
        assert k.count_correct(Z, y) == 2
        assert k.count_correct(Z1, y1) == 2


# ---------------------------------------------------------------------------------------
# hypothesis: small random shapes, values and activations


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    act=st.sampled_from(ACT_CODES),
    batch=st.integers(1, 12),
    fin=st.integers(1, 12),
    fout=st.integers(1, 12),
    w_scale=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_forward_backward_hypothesis(dtype, act, batch, fin, fout, w_scale, seed):
    """linear_forward -> delta_backward -> weight_grad, as in one training step."""
    rng = np.random.default_rng(seed)
    A_prev = activation_of(randn(rng, (batch, fin), dtype, scale=2.0), act)
    W = randn(rng, (fout, fin), dtype, scale=w_scale)
    b = randn(rng, (fout,), dtype)
    A_out = np.empty((batch, fout), dtype)
    r, ra, c, ca = call_both("linear_forward", [A_prev, W, b, act, A_out], out=(4,))
    assert_close(ca[4], ra[4], dtype, scale=dot_scale(A_prev, W.T) + float(np.abs(b).max()))

    delta = randn(rng, (batch, fout), dtype)
    out = np.empty((batch, fin), dtype)
    r, ra, c, ca = call_both("delta_backward", [delta, W, A_prev, act, out], out=(4,))
    assert_close(ca[4], ra[4], dtype, scale=dot_scale(delta, W))

    dW, db = np.empty((fout, fin), dtype), np.empty((fout,), dtype)
    r, ra, c, ca = call_both("weight_grad", [delta, A_prev, dW, db], out=(2, 3))
    assert_close(ca[2], ra[2], dtype, scale=dot_scale(delta.T, A_prev))
    assert_close(ca[3], ra[3], dtype, scale=float(np.abs(delta).sum(axis=0).max()))


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    loss=st.sampled_from(["ce_labels", "ce_onehot", "ce_probs", "bce_binary", "bce_soft",
                          "mse"]),
    batch=st.integers(1, 12),
    k=st.integers(1, 12),
    logit_scale=st.sampled_from([0.01, 1.0, 30.0, BIG]),
    seed=st.integers(0, 2**32 - 1),
)
def test_losses_hypothesis(dtype, loss, batch, k, logit_scale, seed):
    rng = np.random.default_rng(seed)
    Z = randn(rng, (batch, k), dtype, scale=logit_scale)
    what = f"{loss} B={batch} K={k} scale={logit_scale}"
    if loss.startswith("ce_"):
        kind = {"ce_labels": "labels", "ce_onehot": "onehot", "ce_probs": "probs"}[loss]
        check_softmax_ce(Z, targets(rng, kind, batch, k, dtype), dtype, what)
    elif loss.startswith("bce_"):
        check_bce(Z, bce_targets(rng, loss[4:], batch, k, dtype), dtype, what)
    else:
        check_mse(Z, randn(rng, (batch, k), dtype, scale=logit_scale), dtype, what)


@pytest.mark.parametrize("kernel", ["sgd_update", "adam_update"])
def test_optimizer_kernels_refuse_arrays_that_are_not_flat(kernel):
    from fastmlp.kernels import cpu

    p = np.ones((3, 4))
    args = {"sgd_update": (p, np.ones((3, 4)), np.zeros((3, 4)), 0.1, 0.0, 0.0, False),
            "adam_update": (p, np.ones((3, 4)), np.zeros((3, 4)), np.zeros((3, 4)), 1, 0.1,
                            0.9, 0.999, 1e-8, 0.0, True)}[kernel]
    with pytest.raises(ValueError, match="flat contiguous 1-D"):
        getattr(cpu, kernel)(*args)
    np.testing.assert_array_equal(p, 1.0)
