"""Every CUDA kernel (kernels/cuda/) against the NumPy reference, under the CUDA simulator.

The simulator runs each CUDA thread as a Python thread, so the shapes are tiny, but chosen
to cross every tile edge of the small simulator configuration (GEMM tiles of 8 x 8 with a
k-step of 4, 16-thread blocks, at most 4 blocks for the grid-stride loops): sizes 1, 3, 7,
17, 33. Outputs are NaN-filled on the device before the call, so an element a kernel
forgets to write fails the comparison; inputs are checked unchanged afterwards.

Tolerance: rtol 1e-5 (float32) / 1e-12 (float64) relative to the scale of the terms that
make up each output (atol = rtol * scale), as in tests/test_kernels_cpu.py.
"""

import numpy as np
import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, ACT_IDS, BIG, DTYPE_IDS, DTYPES, activation_of, assert_close,
                     dot_scale, randn, rng_for)
from sim_helpers import nan_device, run_both


# ---------------------------------------------------------------------------------------
# the module itself


def test_available_under_the_simulator():
    assert kc.SIM
    assert kc.is_available() and kc.why_unavailable() is None
    assert kc.name == "cuda"
    # the simulator gets the small configuration: 16-thread blocks
    assert kc.device.THREADS == 16
    for bm, bn, bk, tm, tn in (kc.device.GEMM_LARGE, kc.device.GEMM_SMALL):
        assert (bn // tn) * (bm // tm) == 16


def test_both_gemm_tile_configurations_are_exercised():
    """Small outputs take the small tiles, larger ones the large tiles (both appear in the
    shapes of the GEMM tests below)."""
    assert kc.gemm._gemm_config(7, 17) == kc.device.GEMM_SMALL
    assert kc.gemm._gemm_config(33, 17) == kc.device.GEMM_LARGE
    assert kc.gemm._gemm_config(33, 7) == kc.device.GEMM_LARGE
    assert kc.gemm._gemm_config(3, 9) == kc.device.GEMM_SMALL


def test_memory_functions():
    rng = rng_for("memory")
    for dtype in (np.float32, np.float64, np.int64, np.uint8):
        host = (rng.standard_normal((7, 3)) * 50).astype(dtype)
        d = kc.to_device(host)
        back = kc.to_host(d)
        assert back.dtype == host.dtype and back.shape == host.shape
        np.testing.assert_array_equal(back, host)
        d2 = kc.to_device(d)  # a device copy, independent of d
        z = kc.zeros((7, 3), dtype)
        assert kc.to_host(z).dtype == np.dtype(dtype)
        assert not kc.to_host(z).any()
        np.testing.assert_array_equal(kc.to_host(d2), host)
        assert kc.empty((2, 5), dtype).shape == (2, 5)
    # write: a host array into an existing device array (cast to its dtype), and into a
    # view of a flat array
    d = kc.zeros((3, 4), np.float32)
    kc.write(d, np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(kc.to_host(d), np.arange(12.0).reshape(3, 4))
    flat = kc.zeros(10, np.float64)
    kc.write(flat[2:8].reshape(2, 3), np.ones((2, 3)))
    np.testing.assert_array_equal(kc.to_host(flat), [0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    kc.write(flat, kc.to_device(np.full(10, 2.0)))
    np.testing.assert_array_equal(kc.to_host(flat), 2.0)
    z1 = kc.zeros(17, np.float32)
    assert kc.to_host(z1).shape == (17,) and not kc.to_host(z1).any()
    assert kc.zeros((0, 3), np.float64).shape == (0, 3)
    # a non-contiguous host array is uploaded as its values
    host = np.arange(12.0).reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(kc.to_host(kc.to_device(host)), host)
    kc.synchronize()


# ---------------------------------------------------------------------------------------
# GEMM: matmul, linear layer forward, delta propagation, weight gradient

GEMM_SHAPES = ((1, 1, 1), (7, 3, 17), (33, 17, 7), (3, 33, 9))  # (m, k, n)


@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matmul(dtype, trans_a, trans_b):
    rng = rng_for("matmul", trans_a, trans_b, np.dtype(dtype).str)
    for m, k, n in GEMM_SHAPES:
        A = randn(rng, (k, m) if trans_a else (m, k), dtype)
        B = randn(rng, (n, k) if trans_b else (k, n), dtype)
        C = np.empty((m, n), dtype)
        r, ra, c, ca = run_both("matmul", [A, B, C, trans_a, trans_b], out=(2,))
        assert c is None
        opA = A.T if trans_a else A
        opB = B.T if trans_b else B
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(opA, opB),
                     what=f"matmul {(m, k, n)} trans_a={trans_a} trans_b={trans_b}")


def test_matmul_empty_inner_dimension():
    A = np.zeros((5, 0))
    B = np.zeros((0, 9))
    r, ra, c, ca = run_both("matmul", [A, B, np.empty((5, 9)), False, False], out=(2,))
    np.testing.assert_array_equal(ca[2], 0.0)


LAYER_SHAPES = ((1, 3, 1), (33, 7, 17), (7, 17, 9))  # (batch, in, out)


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_linear_forward(dtype, act):
    rng = rng_for("linear_forward", act, np.dtype(dtype).str)
    for batch, fin, fout in LAYER_SHAPES:
        A_in = randn(rng, (batch, fin), dtype)
        W = randn(rng, (fout, fin), dtype, scale=2.0 / np.sqrt(fin))
        b = randn(rng, (fout,), dtype)
        r, ra, c, ca = run_both("linear_forward", [A_in, W, b, act, np.empty((batch, fout), dtype)],
                                out=(4,))
        assert c is None
        scale = dot_scale(A_in, W.T) + float(np.abs(b).max())
        assert_close(ca[4], ra[4], dtype, scale=scale,
                     what=f"linear_forward act={act} {(batch, fin, fout)}")


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_delta_backward(dtype, act):
    rng = rng_for("delta_backward", act, np.dtype(dtype).str)
    for batch, fin, fout in LAYER_SHAPES:
        delta = randn(rng, (batch, fout), dtype)
        W = randn(rng, (fout, fin), dtype)
        D_prev = activation_inputs(rng, batch, fin, dtype, scale=2.0)
        if act not in codes.NEEDS_PREACTIVATION:
            D_prev = activation_of(D_prev, act)
        r, ra, c, ca = run_both("delta_backward",
                                [delta, W, D_prev, act, np.empty((batch, fin), dtype)], out=(4,))
        assert c is None
        # |f'| <= 1.13 (GELU's maximum), so the terms of an output are bounded by |delta| @ |W|
        assert_close(ca[4], ra[4], dtype, scale=1.2 * dot_scale(delta, W),
                     what=f"delta_backward act={act} {(batch, fin, fout)}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_weight_grad(dtype):
    rng = rng_for("weight_grad", np.dtype(dtype).str)
    for batch, fin, fout in ((1, 1, 1), (33, 7, 17), (17, 33, 3), (7, 3, 33), (3, 9, 20)):
        delta = randn(rng, (batch, fout), dtype)
        A_prev = randn(rng, (batch, fin), dtype)
        r, ra, c, ca = run_both("weight_grad", [delta, A_prev, np.empty((fout, fin), dtype),
                                                np.empty((fout,), dtype)], out=(2, 3))
        assert c is None
        what = f"weight_grad {(batch, fin, fout)}"
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(delta.T, A_prev), what="dW " + what)
        assert_close(ca[3], ra[3], dtype, scale=float(np.abs(delta).sum(axis=0).max()),
                     what="db " + what)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_layer_forward_backward_random_shapes(dtype):
    """linear_forward -> delta_backward -> weight_grad on seeded random shapes in 1..40 and
    random activations and weight scales (a fixed-seed stand-in for hypothesis, whose
    example counts would be too slow under the simulator)."""
    rng = rng_for("random_shapes", np.dtype(dtype).str)
    for _ in range(5):
        batch, fin, fout = (int(v) for v in rng.integers(1, 41, size=3))
        act = int(rng.choice(ACT_CODES))
        w_scale = float(rng.choice([0.1, 1.0, 10.0]))
        what = f"B={batch} in={fin} out={fout} act={act} w_scale={w_scale}"
        A_prev = randn(rng, (batch, fin), dtype, scale=2.0)
        if act not in codes.NEEDS_PREACTIVATION:
            A_prev = activation_of(A_prev, act)
        W = randn(rng, (fout, fin), dtype, scale=w_scale)
        b = randn(rng, (fout,), dtype)
        r, ra, c, ca = run_both("linear_forward", [A_prev, W, b, act, np.empty((batch, fout), dtype)],
                                out=(4,))
        assert_close(ca[4], ra[4], dtype, scale=1.2 * (dot_scale(A_prev, W.T) + np.abs(b).max()),
                     what="forward " + what)
        delta = randn(rng, (batch, fout), dtype)
        r, ra, c, ca = run_both("delta_backward",
                                [delta, W, A_prev, act, np.empty((batch, fin), dtype)], out=(4,))
        assert_close(ca[4], ra[4], dtype, scale=1.2 * dot_scale(delta, W), what="delta " + what)
        r, ra, c, ca = run_both("weight_grad", [delta, A_prev, np.empty((fout, fin), dtype),
                                                np.empty((fout,), dtype)], out=(2, 3))
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(delta.T, A_prev), what="dW " + what)
        assert_close(ca[3], ra[3], dtype, scale=float(np.abs(delta).sum(axis=0).max()),
                     what="db " + what)


def test_layers_as_views_of_one_flat_parameter_array():
    """The model keeps W and b of every layer as views into one flat device array."""
    rng = rng_for("views")
    fin, fout, batch = 7, 9, 5
    flat = randn(rng, (fout * fin + fout,), np.float64)
    dflat = kc.to_device(flat)
    W = dflat[:fout * fin].reshape(fout, fin)
    b = dflat[fout * fin:]
    A_in = randn(rng, (batch, fin), np.float64)
    out = kc.empty((batch, fout), np.float64)
    kc.linear_forward(kc.to_device(A_in), W, b, codes.TANH, out)
    expected = np.empty((batch, fout))
    ref.linear_forward(A_in, flat[:fout * fin].reshape(fout, fin), flat[fout * fin:], codes.TANH,
                       expected)
    assert_close(kc.to_host(out), expected, np.float64)
    # gradients into views of a flat gradient array, then one optimizer launch over it all
    gflat = kc.zeros(flat.size, np.float64)
    delta = randn(rng, (batch, fout), np.float64)
    kc.weight_grad(kc.to_device(delta), kc.to_device(A_in), gflat[:fout * fin].reshape(fout, fin),
                   gflat[fout * fin:])
    g = kc.to_host(gflat)
    assert_close(g[:fout * fin].reshape(fout, fin), delta.T @ A_in, np.float64,
                 scale=dot_scale(delta.T, A_in))
    assert_close(g[fout * fin:], delta.sum(axis=0), np.float64, scale=np.abs(delta).sum(0).max())
    kc.sgd_update(dflat, gflat, kc.zeros(flat.size, np.float64), 0.1, 0.0, 0.0, False)
    assert_close(kc.to_host(dflat), flat - 0.1 * g, np.float64)


# ---------------------------------------------------------------------------------------
# activations and softmax


def activation_inputs(rng, batch, features, dtype, scale=3.0):
    Z = randn(rng, (batch, features), dtype, scale=scale)
    edge = np.array([0.0, -0.0, 30.0, -30.0, BIG, -BIG, 1e-3, -1e-3], dtype)
    n = min(features, edge.size)
    Z[0, :n] = edge[:n]
    return Z


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activate(dtype, act):
    rng = rng_for("activate", act, np.dtype(dtype).str)
    for batch, features in ((1, 1), (7, 17), (3, 33)):
        Z = activation_inputs(rng, batch, features, dtype)
        r, ra, c, ca = run_both("activate", [Z, act, np.empty_like(Z)], out=(2,))
        assert c is None
        assert np.isfinite(ca[2]).all()
        # relative to the array's scale: the oracle's GELU (1 + erf) cancels for z << 0,
        # the kernel's (erfc) does not, so their tiniest values differ beyond 1e-12
        assert_close(ca[2], ra[2], dtype, what=f"activate act={act} {(batch, features)}")
        exact_zero = ra[2] == 0
        if act in (codes.RELU, codes.IDENTITY):
            np.testing.assert_array_equal(ca[2][exact_zero], 0)


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activation_backward(dtype, act):
    rng = rng_for("activation_backward", act, np.dtype(dtype).str)
    for batch, features in ((1, 1), (7, 17), (3, 33)):
        D = activation_inputs(rng, batch, features, dtype)
        if act not in codes.NEEDS_PREACTIVATION:
            D = activation_of(D, act)
        delta = randn(rng, (batch, features), dtype)
        r, ra, c, ca = run_both("activation_backward", [D, act, delta], inout=(2,))
        assert c is None
        assert_close(ca[2], ra[2], dtype, scale=1.2 * float(np.abs(delta).max()),
                     what=f"activation_backward act={act} {(batch, features)}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax(dtype):
    rng = rng_for("softmax", np.dtype(dtype).str)
    for batch, k in ((1, 1), (33, 7), (7, 17), (3, 33)):
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        if batch == 3:
            Z[0] = BIG
            Z[1, ::2] = -BIG
        r, ra, c, ca = run_both("softmax", [Z, np.empty_like(Z)], out=(1,))
        assert c is None
        assert_close(ca[1], ra[1], dtype, what=f"softmax {(batch, k)}")


# ---------------------------------------------------------------------------------------
# losses


def ce_targets(rng, kind, batch, k, dtype):
    if kind in ("labels", "labels_int32"):
        return rng.integers(0, k, size=batch).astype(np.int32 if kind == "labels_int32"
                                                     else np.int64)
    if kind == "onehot":
        return np.eye(k, dtype=dtype)[rng.integers(0, k, size=batch)]
    if kind == "probs":
        return rng.dirichlet(np.ones(k), size=batch).astype(dtype)
    if kind == "unnormalized":
        T = rng.dirichlet(np.ones(k), size=batch) * rng.uniform(0.5, 2.0, size=(batch, 1))
        return T.astype(dtype)
    raise AssertionError(kind)


def ce_scale(T, batch, w):
    wmax = 1.0 if w is None else float(np.abs(w).max())
    if T.ndim == 1:
        return 2.0 * wmax / batch
    T = np.abs(T.astype(np.float64))
    return wmax * float(T.sum(axis=1).max() + T.max() + 1.0) / batch


def check_loss(fname, Z, T, dtype, w, extra, dz_scale, what):
    args = [Z, T, np.empty_like(Z), w] + list(extra)
    r, ra, c, ca = run_both(fname, args, out=(2,))
    assert isinstance(c, float) and np.isfinite(c), what
    assert np.isfinite(ca[2]).all(), what
    assert_close(c, r, dtype, scale=abs(r), what="loss " + what)
    assert_close(ca[2], ra[2], dtype, scale=dz_scale, what="dZ " + what)
    return r


CE_KINDS = ("labels", "labels_int32", "onehot", "probs", "unnormalized")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", CE_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy(dtype, kind, weighted, smoothing):
    rng = rng_for("ce", kind, weighted, smoothing, np.dtype(dtype).str)
    for batch, k in ((1, 1), (33, 7), (17, 3)):
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        T = ce_targets(rng, kind, batch, k, dtype)
        w = rng.uniform(0.0, 2.0, size=batch).astype(dtype) if weighted else None
        check_loss("softmax_cross_entropy", Z, T, dtype, w, [smoothing], ce_scale(T, batch, w),
                   f"ce {kind} w={weighted} s={smoothing} {(batch, k)}")


BCE_CASES = [(1, "labels_1d"), (1, "labels_int"), (1, "soft"), (3, "binary"), (17, "soft")]


def bce_targets(rng, kind, batch, k, dtype):
    if kind == "labels_1d":
        return rng.integers(0, 2, size=batch).astype(dtype)
    if kind == "labels_int":
        return rng.integers(0, 2, size=batch)
    if kind == "binary":
        return rng.integers(0, 2, size=(batch, k)).astype(dtype)
    if kind == "soft":
        return rng.uniform(0, 1, size=(batch, k)).astype(dtype)
    raise AssertionError(kind)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k, kind", BCE_CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_binary_cross_entropy(dtype, k, kind, weighted):
    rng = rng_for("bce", k, kind, weighted, np.dtype(dtype).str)
    for batch in (1, 33):
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        T = bce_targets(rng, kind, batch, k, dtype)
        w = rng.uniform(0.0, 2.0, size=batch).astype(dtype) if weighted else None
        wmax = 1.0 if w is None else float(w.max())
        check_loss("sigmoid_binary_cross_entropy", Z, T, dtype, w, [],
                   wmax * (1.0 + float(np.abs(T).max())) / Z.size,
                   f"bce {kind} w={weighted} {(batch, k)}")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("target_shape", ["2d", "1d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mse(dtype, target_shape, weighted):
    rng = rng_for("mse", target_shape, weighted, np.dtype(dtype).str)
    for batch, k in ((1, 1), (33, 3), (7, 17)):
        if target_shape == "1d":
            k = 1
        Z = randn(rng, (batch, k), dtype, scale=2.0)
        T = randn(rng, (batch, k) if target_shape == "2d" else (batch,), dtype)
        w = rng.uniform(0.0, 2.0, size=batch).astype(dtype) if weighted else None
        wmax = 1.0 if w is None else float(w.max())
        check_loss("mse", Z, T, dtype, w, [],
                   2.0 * wmax * float(np.abs(Z).max() + np.abs(T).max()) / Z.size,
                   f"mse {target_shape} w={weighted} {(batch, k)}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_losses_stable_for_huge_logits(dtype):
    rng = rng_for("stability", np.dtype(dtype).str)
    batch, k = 7, 3
    Z = rng.choice(np.array([-BIG, BIG, 0.0, -BIG / 2]), size=(batch, k)).astype(dtype)
    Z[np.arange(batch), rng.integers(0, k, size=batch)] = BIG
    for kind in ("labels", "onehot", "probs"):
        T = ce_targets(rng, kind, batch, k, dtype)
        check_loss("softmax_cross_entropy", Z, T, dtype, None, [0.0], ce_scale(T, batch, None),
                   f"stable ce {kind}")
    Zb = rng.choice(np.array([-BIG, BIG]), size=(batch, k)).astype(dtype)
    check_loss("sigmoid_binary_cross_entropy", Zb, bce_targets(rng, "soft", batch, k, dtype),
               dtype, None, [], 2.0 / Zb.size, "stable bce")
    dZ = kc.empty((1, 2), dtype)
    loss = kc.softmax_cross_entropy(kc.to_device(np.array([[BIG, -BIG]], dtype)),
                                    kc.to_device(np.array([1])), dZ)
    assert loss == pytest.approx(2 * BIG)
    np.testing.assert_allclose(kc.to_host(dZ), [[1.0, -1.0]])


# ---------------------------------------------------------------------------------------
# total=: the loss summed on the device, no readback


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_losses_accumulate_into_a_device_total(dtype):
    """With total=, each call adds B * loss to total[0] and returns None; three batches of
    different sizes (33 rows: several blocks, each with its partial sum) sum up."""
    rng = rng_for("total", np.dtype(dtype).str)
    k = 5
    cases = {
        "ce_labels": lambda B: ("softmax_cross_entropy", rng.integers(0, k, size=B), [0.1]),
        "ce_probs": lambda B: ("softmax_cross_entropy", ce_targets(rng, "probs", B, k, dtype), [0.0]),
        "bce": lambda B: ("sigmoid_binary_cross_entropy", bce_targets(rng, "soft", B, k, dtype), []),
        "mse": lambda B: ("mse", randn(rng, (B, k), dtype), []),
    }
    for label, make in cases.items():
        for weighted in (False, True):
            total = kc.zeros(1, np.float64)
            expected = 0.0
            for batch in (33, 1, 7):
                fname, T, extra = make(batch)
                Z = randn(rng, (batch, k), dtype, scale=2.0)
                w = rng.uniform(0, 2, size=batch).astype(dtype) if weighted else None
                r = getattr(ref, fname)(Z, T, np.empty_like(Z), w, *extra)
                expected += batch * r
                dZ = nan_device(Z.shape, dtype)
                res = getattr(kc, fname)(kc.to_device(Z), kc.to_device(T), dZ,
                                         None if w is None else kc.to_device(w), *extra,
                                         total=total)
                assert res is None
                assert np.isfinite(kc.to_host(dZ)).all()  # dZ is still written
            got = kc.to_host(total)
            assert got.shape == (1,) and got.dtype == np.float64
            assert_close(got[0], expected, dtype, scale=abs(expected),
                         what=f"total {label} weighted={weighted}")


def test_count_correct_accumulates_into_a_device_total():
    rng = rng_for("count_total")
    for total_dtype in (np.int64, np.float64):
        total = kc.zeros(1, total_dtype)
        expected = 0
        for batch, k in ((33, 4), (7, 1), (1, 3)):
            Z = rng.integers(-2, 3, size=(batch, k)).astype(np.float32)
            y = rng.integers(0, max(k, 2), size=batch)
            expected += ref.count_correct(Z, y)
            assert kc.count_correct(kc.to_device(Z), kc.to_device(y), total=total) is None
        got = kc.to_host(total)
        assert got.dtype == np.dtype(total_dtype) and got[0] == expected


# ---------------------------------------------------------------------------------------
# metrics and data movement


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.float64], ids=["i64", "i32", "f64"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_correct(dtype, label_dtype):
    rng = rng_for("count_correct", np.dtype(dtype).str, np.dtype(label_dtype).str)
    for batch, k in ((1, 3), (33, 7), (17, 1), (7, 2)):
        if k == 1:
            Z = randn(rng, (batch, k), dtype)
            Z[::3] = 0.0  # z == 0 predicts class 0
            y = rng.integers(0, 2, size=batch)
        else:  # small integer logits: ties are common and go to the first maximum
            Z = rng.integers(-2, 3, size=(batch, k)).astype(dtype)
            y = rng.integers(0, k, size=batch)
            y[: batch // 2] = Z[: batch // 2].argmax(axis=1)
        y = y.astype(label_dtype)
        r, _, c, _ = run_both("count_correct", [Z, y])
        assert isinstance(c, int) and c == r, f"count_correct {(batch, k)}"
    Zk = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 3.0]])
    assert kc.count_correct(kc.to_device(Zk), kc.to_device(np.array([1, 0, 1, 0]))) == 2


@pytest.mark.parametrize(
    "src_dtype, out_dtype, idx_dtype",
    [(np.uint8, np.float32, np.int64), (np.uint8, np.float64, np.int32),
     (np.float32, np.float32, np.int64), (np.float64, np.float32, np.int32),
     (np.int64, np.int64, np.int64)],
    ids=["u8->f32", "u8->f64/i32", "f32", "f64->f32/i32", "i64"],
)
def test_gather_rows(src_dtype, out_dtype, idx_dtype):
    rng = rng_for("gather", np.dtype(src_dtype).str, np.dtype(out_dtype).str)
    n = 40
    for features in (1, 17):
        if np.dtype(src_dtype).kind == "f":
            X = randn(rng, (n, features), src_dtype, scale=100.0)
        else:
            X = rng.integers(0, 256, size=(n, features)).astype(src_dtype)
        for batch in (1, 33):
            idx = rng.integers(0, n, size=batch).astype(idx_dtype)
            idx[0] = n - 1
            if batch > 1:
                idx[1], idx[-1] = 0, idx[0]
            out = np.full((batch, features), 7, out_dtype)
            is_float = out.dtype.kind == "f"
            r, ra, c, ca = run_both("gather_rows", [X, idx, out], out=(2,) if is_float else (),
                                    inout=() if is_float else (2,))
            assert c is None
            np.testing.assert_array_equal(ca[2], X[idx].astype(out_dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_regression_sums_accumulate(dtype):
    rng = rng_for("regression_sums", np.dtype(dtype).str)
    for batch, k, one_d in ((33, 7, False), (1, 1, False), (17, 1, True), (5, 9, False)):
        abs_err = rng.uniform(0, 1, size=k)
        sq_err = rng.uniform(0, 1, size=k)
        a_ref, s_ref = abs_err.copy(), sq_err.copy()
        d_abs, d_sq = kc.to_device(abs_err), kc.to_device(sq_err)
        for _ in range(2):  # accumulates over calls
            Z = randn(rng, (batch, k), dtype)
            T = randn(rng, (batch,) if one_d else (batch, k), dtype)
            ref.regression_sums(Z, T, a_ref, s_ref)
            assert kc.regression_sums(kc.to_device(Z), kc.to_device(T), d_abs, d_sq) is None
        assert_close(kc.to_host(d_abs), a_ref, dtype, what=f"abs {(batch, k)}")
        assert_close(kc.to_host(d_sq), s_ref, dtype, what=f"sq {(batch, k)}")


# ---------------------------------------------------------------------------------------
# random numbers, dropout, batch norm


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fill_uniform(dtype):
    U1, U2, U3 = kc.empty((64, 64), dtype), kc.empty((64, 64), dtype), kc.empty((64, 64), dtype)
    kc.fill_uniform(U1, np.random.default_rng(5))
    kc.fill_uniform(U2, np.random.default_rng(5))
    kc.fill_uniform(U3, np.random.default_rng(6))
    u1, u2, u3 = kc.to_host(U1), kc.to_host(U2), kc.to_host(U3)
    assert u1.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(u1, u2)  # deterministic given the generator's state
    assert (u1 != u3).mean() > 0.99  # another seed, other numbers
    for u in (u1, u3):
        assert u.min() >= 0 and u.max() < 1
        assert abs(u.mean() - 0.5) < 0.02  # 4096 values: std of the mean 0.0045
        assert abs(u.var() - 1 / 12) < 0.01
        assert len(np.unique(u)) > 4000
        # no structure along rows or columns: the row and column means are all plausible
        assert abs(u.mean(axis=0) - 0.5).max() < 0.2 and abs(u.mean(axis=1) - 0.5).max() < 0.2
        # neighbours are uncorrelated
        assert abs(np.corrcoef(u.ravel()[:-1], u.ravel()[1:])[0, 1]) < 0.06
    # the same generator advances: two draws in a row differ
    rng = np.random.default_rng(7)
    kc.fill_uniform(U1, rng)
    kc.fill_uniform(U2, rng)
    assert (kc.to_host(U1) != kc.to_host(U2)).mean() > 0.99
    # 1-D arrays, and odd sizes
    v = kc.empty(33, dtype)
    kc.fill_uniform(v, np.random.default_rng(1))
    vh = kc.to_host(v)
    assert vh.shape == (33,) and (vh >= 0).all() and (vh < 1).all() and len(np.unique(vh)) == 33


@pytest.mark.parametrize("act", [codes.IDENTITY, codes.RELU, codes.SIGMOID, codes.GELU],
                         ids=["identity", "relu", "sigmoid", "gelu"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dropout(dtype, act):
    rng = rng_for("dropout", act, np.dtype(dtype).str)
    for batch, features, p in ((1, 1, 0.5), (33, 7, 0.3), (7, 17, 0.9)):
        A_in = randn(rng, (batch, features), dtype)
        U = rng.random((batch, features)).astype(dtype)
        U[0, 0] = p  # the boundary U == p keeps the unit
        r, ra, c, ca = run_both("dropout_forward", [A_in, U, p, np.empty_like(A_in)], out=(3,))
        assert c is None
        assert_close(ca[3], ra[3], dtype, what=f"dropout_forward {(batch, features, p)}")
        delta = randn(rng, (batch, features), dtype)
        D_prev = activation_inputs(rng, batch, features, dtype)
        if act not in codes.NEEDS_PREACTIVATION:
            D_prev = activation_of(D_prev, act)
        r, ra, c, ca = run_both("dropout_backward",
                                [delta, U, p, D_prev, act, np.empty_like(delta)], out=(5,))
        assert c is None
        assert_close(ca[5], ra[5], dtype, scale=1.2 * float(np.abs(delta).max()) / (1 - p),
                     what=f"dropout_backward {(batch, features, p)}")


def test_dropout_with_device_random_numbers():
    """fill_uniform then dropout_forward, all on the device: about p of the units drop."""
    A = kc.to_device(np.ones((64, 33), np.float32))
    U = kc.empty((64, 33), np.float32)
    out = kc.empty((64, 33), np.float32)
    kc.fill_uniform(U, np.random.default_rng(0))
    kc.dropout_forward(A, U, 0.25, out)
    o = kc.to_host(out)
    assert set(np.unique(o)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((o == 0).mean() - 0.25) < 0.03


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_batchnorm(dtype, act):
    rng = rng_for("batchnorm", act, np.dtype(dtype).str)
    for batch, features in ((3, 1), (33, 7), (7, 17)):
        X = randn(rng, (batch, features), dtype, scale=2.0) + 1.5
        gamma = (1 + 0.5 * rng.standard_normal(features)).astype(dtype)
        beta = randn(rng, (features,), dtype)
        rmean = randn(rng, (features,), dtype)
        rvar = rng.uniform(0.5, 2, size=features).astype(dtype)
        args = [X, gamma, beta, rmean, rvar, 0.1, 1e-5, act, np.empty_like(X),
                np.empty(features, dtype), np.empty_like(X)]
        r, ra, c, ca = run_both("batchnorm_forward", args, out=(8, 9, 10), inout=(3, 4))
        assert c is None
        what = f"batchnorm_forward act={act} {(batch, features)}"
        assert_close(ca[8], ra[8], dtype, what="Xhat " + what)
        assert_close(ca[9], ra[9], dtype, what="inv_std " + what)
        scale = float(np.abs(gamma).max() * np.abs(ra[8]).max() + np.abs(beta).max())
        assert_close(ca[10], ra[10], dtype, scale=scale, what="A_out " + what)
        assert_close(ca[3], ra[3], dtype, what="running_mean " + what)
        assert_close(ca[4], ra[4], dtype, what="running_var " + what)

        r, ra2, c, ca2 = run_both("batchnorm_inference",
                                  [X, gamma, beta, ra[3], ra[4], 1e-5, act, np.empty_like(X)],
                                  out=(7,))
        assert c is None
        assert_close(ca2[7], ra2[7], dtype, what="batchnorm_inference " + what)

        delta = randn(rng, (batch, features), dtype)
        D_prev = activation_inputs(rng, batch, features, dtype)
        if act not in codes.NEEDS_PREACTIVATION:
            D_prev = activation_of(D_prev, act)
        Xhat = ra[8]
        inv_std = ra[9]
        args = [delta, Xhat, inv_std, gamma, np.empty(features, dtype), np.empty(features, dtype),
                D_prev, act, np.empty_like(delta)]
        r, ra3, c, ca3 = run_both("batchnorm_backward", args, out=(4, 5, 8))
        assert c is None
        what = f"batchnorm_backward act={act} {(batch, features)}"
        dscale = float(np.abs(delta).sum(axis=0).max() * max(1.0, np.abs(Xhat).max()))
        assert_close(ca3[4], ra3[4], dtype, scale=dscale, what="dgamma " + what)
        assert_close(ca3[5], ra3[5], dtype, scale=dscale, what="dbeta " + what)
        scale = 1.2 * float(np.abs(gamma * inv_std).max() / batch * 3 * dscale)
        assert_close(ca3[8], ra3[8], dtype, scale=scale, what="delta_prev " + what)


# ---------------------------------------------------------------------------------------
# optimizers: several steps, the whole state compared after each

PARAM_SIZES = (1, 37, 300)  # 300 > 4 blocks x 16 threads: the grid-stride loop runs


def run_optimizer(fname, dtype, size, steps, make_args, state_names, seed_key):
    rng = rng_for(fname, size, seed_key, np.dtype(dtype).str)
    p0 = randn(rng, (size,), dtype)
    host = {n: (p0.copy() if n == "p" else np.zeros(size, dtype)) for n in state_names}
    dev = {n: kc.to_device(a) for n, a in host.items()}
    for step in range(1, steps + 1):
        g = randn(rng, (size,), dtype)
        dg = kc.to_device(g)
        getattr(ref, fname)(*make_args(host, g, step))
        assert getattr(kc, fname)(*make_args(dev, dg, step)) is None
        np.testing.assert_array_equal(kc.to_host(dg), g)
        for n in state_names:
            assert_close(kc.to_host(dev[n]), host[n], dtype, what=f"{fname} {n} step {step} {seed_key}")
    assert not np.array_equal(kc.to_host(dev["p"]), p0)


SGD_CONFIGS = [(0.0, 0.0, False), (0.0, 1e-2, False), (0.9, 0.0, False), (0.5, 1e-2, False),
               (0.9, 0.0, True), (0.9, 5e-3, True)]


@pytest.mark.parametrize("momentum, weight_decay, nesterov", SGD_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sgd_update(dtype, momentum, weight_decay, nesterov):
    def args(s, g, step):
        return (s["p"], g, s["buf"], 0.1, momentum, weight_decay, nesterov)

    for size in PARAM_SIZES:
        run_optimizer("sgd_update", dtype, size, 3, args, ("p", "buf"),
                      (momentum, weight_decay, nesterov))


ADAM_CONFIGS = [(0.9, 0.999, 0.0, True, False), (0.9, 0.999, 0.1, True, False),
                (0.9, 0.999, 0.1, False, False), (0.0, 0.99, 1e-2, False, False),
                (0.9, 0.999, 0.0, True, True), (0.5, 0.9, 1e-2, False, True)]


@pytest.mark.parametrize("beta1, beta2, weight_decay, decoupled, amsgrad", ADAM_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_update(dtype, beta1, beta2, weight_decay, decoupled, amsgrad):
    names = ("p", "m", "v", "v_max") if amsgrad else ("p", "m", "v")

    def args(s, g, step):
        return (s["p"], g, s["m"], s["v"], step, 1e-2, beta1, beta2, 1e-8, weight_decay,
                decoupled) + ((s["v_max"],) if amsgrad else ())

    for size in PARAM_SIZES:
        run_optimizer("adam_update", dtype, size, 4, args, names,
                      (beta1, beta2, weight_decay, decoupled, amsgrad))


RMSPROP_CONFIGS = [(0.0, 0.0, False), (0.9, 0.0, False), (0.0, 1e-2, True), (0.9, 1e-2, True)]


@pytest.mark.parametrize("momentum, weight_decay, centered", RMSPROP_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rmsprop_update(dtype, momentum, weight_decay, centered):
    def args(s, g, step):
        return (s["p"], g, s["sq"], s["gavg"], s["buf"], 1e-2, 0.99, 1e-8, weight_decay,
                momentum, centered)

    for size in PARAM_SIZES:
        run_optimizer("rmsprop_update", dtype, size, 3, args, ("p", "sq", "gavg", "buf"),
                      (momentum, weight_decay, centered))


@pytest.mark.parametrize("kernel", ["sgd_update", "adam_update", "rmsprop_update", "clip_grad_norm",
                                    "scale"])
def test_optimizer_kernels_refuse_arrays_that_are_not_flat(kernel):
    p = kc.to_device(np.ones((3, 4)))
    z = kc.to_device(np.zeros((3, 4)))
    args = {"sgd_update": (p, z, z, 0.1, 0.0, 0.0, False),
            "adam_update": (p, z, z, z, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, True),
            "rmsprop_update": (p, z, z, z, z, 0.1, 0.99, 1e-8, 0.0, 0.0, False),
            "clip_grad_norm": (p, 1.0), "scale": (p, 2.0)}[kernel]
    with pytest.raises(ValueError, match="flat contiguous 1-D"):
        getattr(kc, kernel)(*args)
    np.testing.assert_array_equal(kc.to_host(p), 1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_scale(dtype):
    rng = rng_for("scale", np.dtype(dtype).str)
    for size, c in ((1, 0.5), (37, -3.0), (300, 0.0)):
        x = randn(rng, (size,), dtype)
        x_ref = x.copy()
        ref.scale(x_ref, c)
        dx = kc.to_device(x)
        kc.scale(dx, c)
        assert_close(kc.to_host(dx), x_ref, dtype, what=f"scale {size}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_clip_grad_norm(dtype):
    rng = rng_for("clip", np.dtype(dtype).str)
    for size, max_norm in ((1, 0.1), (37, 1.0), (300, 100.0), (300, 2.0)):
        g = randn(rng, (size,), dtype)
        g_ref = g.copy()
        norm_ref = ref.clip_grad_norm(g_ref, max_norm)
        # host variant: returns the norm (synchronises)
        dg = kc.to_device(g)
        norm = kc.clip_grad_norm(dg, max_norm)
        assert isinstance(norm, float)
        assert_close(norm, norm_ref, dtype, scale=norm_ref, what=f"norm {size}")
        assert_close(kc.to_host(dg), g_ref, dtype, what=f"clipped g {size}")
        # device variant: the norm into a device scalar, the decision on the device
        dg = kc.to_device(g)
        norm_out = kc.zeros(1, np.float64)
        assert kc.clip_grad_norm(dg, max_norm, norm_out) is None
        assert_close(kc.to_host(norm_out)[0], norm_ref, dtype, scale=norm_ref)
        assert_close(kc.to_host(dg), g_ref, dtype, what=f"clipped g (device) {size}")
        if norm_ref <= max_norm:
            np.testing.assert_array_equal(kc.to_host(dg), g)  # untouched


# ---------------------------------------------------------------------------------------
# one whole training step, as the model will run it, on the device vs the reference


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_training_steps_match_the_reference(dtype):
    """A 9-17-3 network, relu then softmax cross-entropy, two steps of SGD with momentum:
    parameters in one flat array with views per layer, batches gathered on the device from
    a uint8 data set, loss and accuracy summed on the device and read once at the end."""
    rng = rng_for("train", np.dtype(dtype).str)
    sizes = [9, 17, 3]
    n, batch = 40, 11
    X = rng.integers(0, 256, size=(n, sizes[0])).astype(np.uint8)
    y = rng.integers(0, sizes[-1], size=n)
    shapes = [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]
    total = sum(o * i + o for o, i in shapes)
    flat = (0.3 * rng.standard_normal(total)).astype(dtype)

    def views(a):
        out, pos = [], 0
        for o, i in shapes:
            out.append((a[pos:pos + o * i].reshape(o, i), a[pos + o * i:pos + o * i + o]))
            pos += o * i + o
        return out

    def step(k, P, G, buf, Xd, yd, idx, losses, correct):
        L = len(shapes)
        A = [k.empty((batch, sizes[0]), dtype)]
        k.gather_rows(Xd, idx, A[0])
        for li, (W, b) in enumerate(views(P)):
            A.append(k.empty((batch, W.shape[0]), dtype))
            k.linear_forward(A[li], W, b, codes.RELU if li < L - 1 else codes.IDENTITY, A[li + 1])
        yb = k.empty(batch, np.int64)
        k.gather_rows(yd.reshape(n, 1), idx, yb.reshape(batch, 1))
        D = [None] * (L + 1)
        D[L] = k.empty(A[L].shape, dtype)
        if k is kc:
            k.softmax_cross_entropy(A[L], yb, D[L], None, 0.0, total=losses)
            k.count_correct(A[L], yb, total=correct)
        else:
            losses[0] += batch * k.softmax_cross_entropy(A[L], yb, D[L], None, 0.0)
            correct[0] += k.count_correct(A[L], yb)
        for li in range(L, 0, -1):
            W, b = views(P)[li - 1]
            dW, db = views(G)[li - 1]
            k.weight_grad(D[li], A[li - 1], dW, db)
            if li > 1:
                D[li - 1] = k.empty(A[li - 1].shape, dtype)
                k.delta_backward(D[li], W, A[li - 1], codes.RELU, D[li - 1])
        k.sgd_update(P, G, buf, 0.05, 0.9, 1e-3, False)

    host = dict(P=flat.copy(), G=np.zeros(total, dtype), buf=np.zeros(total, dtype))
    dev = {key: kc.to_device(v) for key, v in host.items()}
    Xd, yd = kc.to_device(X), kc.to_device(y)
    losses_h, correct_h = np.zeros(1), np.zeros(1, np.int64)
    losses_d, correct_d = kc.zeros(1, np.float64), kc.zeros(1, np.int64)
    for s in range(2):
        idx = rng.integers(0, n, size=batch)
        step(ref, host["P"], host["G"], host["buf"], X, y, idx, losses_h, correct_h)
        step(kc, dev["P"], dev["G"], dev["buf"], Xd, yd, kc.to_device(idx), losses_d, correct_d)
    # the update's rounding is relative to the gradient's terms (inputs up to 255)
    scale = float(np.abs(host["P"]).max() + 0.05 * 10 * np.abs(host["buf"]).max())
    assert_close(kc.to_host(dev["P"]), host["P"], dtype, scale=scale,
                 what="parameters after two steps")
    assert_close(kc.to_host(losses_d)[0], losses_h[0], dtype, scale=abs(losses_h[0]))
    assert kc.to_host(correct_d)[0] == correct_h[0]
