"""What only the CUDA backend has, under the CUDA simulator: the module and its memory
functions, ``total=`` / ``norm_out=`` (sums kept on the device), dropout on device random
numbers, and whole training steps on the device against the reference. What every backend computes alike (the contract kernels) is compared in
tests/conformance/, which runs here with backend "cuda".

The simulator runs each CUDA thread as a Python thread, so the shapes are tiny but cross
every tile edge of its small configuration (sizes 1, 3, 7, 17, 33); tolerances as in
helpers.assert_close.
"""

import numpy as np
import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref
from helpers import (DTYPE_IDS, DTYPES, Backend, assert_close, bce_targets, nan_array, randn,
                     rng_for, targets)

CUDA = Backend("cuda")


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
# total=: the loss summed on the device, no readback


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_losses_accumulate_into_a_device_total(dtype):
    """With total=, each call adds B * loss to total[0] and returns None; three batches of
    different sizes (33 rows: several blocks, each with its partial sum) sum up."""
    rng = rng_for("total", np.dtype(dtype).str)
    k = 5
    cases = {
        "ce_labels": lambda B: ("softmax_cross_entropy", rng.integers(0, k, size=B), [0.1]),
        "ce_probs": lambda B: ("softmax_cross_entropy", targets(rng, "probs", B, k, dtype), [0.0]),
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
                dZ = nan_array(CUDA, Z.shape, dtype)
                res = getattr(kc, fname)(kc.to_device(Z), kc.to_device(T), dZ,
                                         None if w is None else kc.to_device(w), *extra,
                                         total=total)
                assert res is None
                assert np.isfinite(kc.to_host(dZ)).all()  # dZ is still written
            got = kc.to_host(total)
            assert got.shape == (1,) and got.dtype == np.float64
            assert_close(got[0], expected, dtype, scale=abs(expected),
                         what=f"total {label} weighted={weighted}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_binary_correct_accumulates_into_a_device_total(dtype):
    rng = rng_for("bin_correct", np.dtype(dtype).str)
    for batch, k in ((1, 1), (7, 3), (17, 9), (33, 17)):
        Z = randn(rng, (batch, k), dtype)
        T = rng.integers(0, 2, (batch, k)).astype(dtype)
        expected = ref.count_binary_correct(Z, T)
        total = kc.zeros(1, np.int64)
        kc.count_binary_correct(kc.to_device(Z), kc.to_device(T), total=total)
        kc.count_binary_correct(kc.to_device(Z), kc.to_device(T), total=total)
        assert int(kc.to_host(total)[0]) == 2 * expected


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
# random numbers and dropout on the device (each kernel against the reference: conformance)


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


# ---------------------------------------------------------------------------------------
# norm_out=: the gradient norm kept on the device

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_clip_grad_norm_into_a_device_scalar(dtype):
    """norm_out=: the norm into a device scalar, the decision on the device (the host
    variant, on every backend, is in tests/conformance/test_backend_optimizers.py)."""
    rng = rng_for("clip", np.dtype(dtype).str)
    for size, max_norm in ((1, 0.1), (37, 1.0), (300, 100.0), (300, 2.0)):
        g = randn(rng, (size,), dtype)
        g_ref = g.copy()
        norm_ref = ref.clip_grad_norm(g_ref, max_norm)
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
