"""Dense-layer kernels of every backend against the NumPy reference: matmul, linear_forward,
delta_backward, weight_grad (writing and accumulating), activate, activation_backward, add,
and the layer kernels on views (one flat parameter array, column slices of a wider buffer).

Each test runs the reference and the backend on private copies of the same inputs
(``Backend.run``): pure outputs are NaN-filled first, inputs must come back unchanged, and
results are read from the very arrays that were passed. Shapes come from helpers (sizes 1
and sizes that are multiples of no tile; tiny under the CUDA simulator).

Tolerance: rtol 1e-5 (float32) / 1e-12 (float64) relative to the scale of the terms that
make up each output (atol = rtol * scale, see helpers.assert_close).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp.kernels import codes
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, DTYPES, EVERY_ACT, EVERY_BATCH, EVERY_DTYPE,
                     FEATURE_PAIRS, FEATURES, SIMULATED, activation_inputs, activation_of,
                     assert_close, check_no_return, dot_scale, randn, rng_for)


def derivative_input(rng, batch, features, dtype, act, scale=3.0):
    """D, what f' is taken from: Z for the activations in NEEDS_PREACTIVATION, else f(Z)."""
    Z = activation_inputs(rng, batch, features, dtype, scale)
    return Z if act in codes.NEEDS_PREACTIVATION else activation_of(Z, act)


# ---------------------------------------------------------------------------------------
# matmul


@EVERY_BATCH
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@EVERY_DTYPE
def test_matmul(backend, dtype, trans_a, trans_b, batch):
    rng = rng_for("matmul", batch, trans_a, trans_b, np.dtype(dtype).itemsize)
    for k, n in FEATURE_PAIRS:
        m = batch
        A = randn(rng, (k, m) if trans_a else (m, k), dtype)
        B = randn(rng, (n, k) if trans_b else (k, n), dtype)
        C = np.empty((m, n), dtype)
        r, ra, c, ca = backend.run("matmul", [A, B, C, trans_a, trans_b], out=(2,))
        check_no_return("matmul", r, c)
        opA = A.T if trans_a else A
        opB = B.T if trans_b else B
        # the reference really is op(A) @ op(B) (guards against a broken oracle)
        assert_close(ra[2], opA.astype(np.float64) @ opB.astype(np.float64), dtype,
                     scale=dot_scale(opA, opB), what="reference matmul vs float64 product")
        assert_close(ca[2], ra[2], dtype, scale=dot_scale(opA, opB),
                     what=f"matmul {(m, k, n)} trans_a={trans_a} trans_b={trans_b}")


def test_matmul_empty_inner_dimension(backend):
    A = np.zeros((5, 0))
    B = np.zeros((0, 9))
    r, ra, c, ca = backend.run("matmul", [A, B, np.empty((5, 9)), False, False], out=(2,))
    np.testing.assert_array_equal(ca[2], 0.0)


# ---------------------------------------------------------------------------------------
# linear layer: forward, delta propagation, weight gradient


def every_layer_case(test):
    """Parametrise `test` over every dtype, activation and batch size."""
    return EVERY_BATCH(EVERY_ACT(EVERY_DTYPE(test)))


def case_shapes(kernel, dtype, key, batch, shapes=FEATURE_PAIRS):
    """(rng, shape) for each of `shapes`, from one generator seeded by the test's case."""
    rng = rng_for(kernel, batch, key, np.dtype(dtype).itemsize)
    for shape in shapes:
        yield rng, shape


def check_output(backend, fname, args, i, dtype, scale, what, written=True):
    """Run `fname` on the reference and `backend`; argument `i` must agree to rtol * scale.

    `written`: the kernel writes argument i from scratch (it is NaN-filled first); else it
    updates it in place. Returns the reference's and the backend's arguments after the call.
    """
    r, ra, c, ca = backend.run(fname, args, **{"out" if written else "inout": (i,)})
    check_no_return(fname, r, c)
    assert_close(ca[i], ra[i], dtype, scale=scale, what=f"{fname} {what}")
    return ra, ca


@every_layer_case
def test_linear_forward(backend, dtype, act, batch):
    for rng, (fin, fout) in case_shapes("linear_forward", dtype, act, batch):
        A_in = randn(rng, (batch, fin), dtype)
        W = randn(rng, (fout, fin), dtype, scale=2.0 / np.sqrt(fin))
        b = randn(rng, (fout,), dtype)
        # every activation has |f'| <= 1.13 (GELU's maximum): the error of f(z) is bounded by z's
        check_output(backend, "linear_forward", [A_in, W, b, act, np.empty((batch, fout), dtype)],
                     4, dtype, dot_scale(A_in, W.T) + float(np.abs(b).max()),
                     f"act={act} B={batch} in={fin} out={fout}")


@every_layer_case
def test_delta_backward(backend, dtype, act, batch):
    for rng, (fin, fout) in case_shapes("delta_backward", dtype, act, batch):
        delta = randn(rng, (batch, fout), dtype)
        W = randn(rng, (fout, fin), dtype)
        D_prev = derivative_input(rng, batch, fin, dtype, act, scale=2.0)
        check_output(backend, "delta_backward", [delta, W, D_prev, act, np.empty((batch, fin), dtype)],
                     4, dtype, dot_scale(delta, W), f"act={act} B={batch} in={fin} out={fout}")


@every_layer_case
def test_delta_backward_accumulate(backend, dtype, act, batch):
    """delta_prev = f'(D) * (delta_prev + delta @ W): GEMM with beta = 1, then f'."""
    for rng, (fin, fout) in case_shapes("delta_backward_acc", dtype, act, batch):
        delta = randn(rng, (batch, fout), dtype)
        W = randn(rng, (fout, fin), dtype)
        D_prev = activation_of(randn(rng, (batch, fin), dtype, scale=2.0), act)
        before = randn(rng, (batch, fin), dtype)
        scale = dot_scale(delta, W) + float(np.abs(before).max())
        ra, _ = check_output(backend, "delta_backward", [delta, W, D_prev, act, before, True], 4,
                             dtype, scale, f"accumulate act={act} B={batch} in={fin} out={fout}",
                             written=False)
        d = np.empty_like(before)
        ref.delta_backward(delta, W, D_prev, act, d)  # without the accumulated part
        ref.activation_backward(D_prev, act, before_times := before.copy())
        assert_close(ra[4], d.astype(np.float64) + before_times, dtype, scale=scale,
                     what="reference accumulate = write + f' * what was there")


def check_weight_grad(backend, dtype, delta, A_prev, dW, db, accumulate, what):
    args = [delta, A_prev, dW, db] + ([True] if accumulate else [])
    r, ra, c, ca = backend.run("weight_grad", args, **(dict(inout=(2, 3)) if accumulate
                                                          else dict(out=(2, 3))))
    check_no_return("weight_grad", r, c)
    dW_scale = dot_scale(delta.T, A_prev) + (float(np.abs(dW).max()) if accumulate else 0.0)
    db_scale = float(np.abs(delta).sum(axis=0).max()) + (float(np.abs(db).max()) if accumulate
                                                          else 0.0)
    expected_dW = delta.T.astype(np.float64) @ A_prev + (dW if accumulate else 0.0)
    assert_close(ra[2], expected_dW, dtype, scale=dW_scale, what="reference dW " + what)
    assert_close(ca[2], ra[2], dtype, scale=dW_scale, what="dW " + what)
    assert_close(ca[3], ra[3], dtype, scale=db_scale, what="db " + what)


@pytest.mark.parametrize("accumulate", [False, True], ids=["write", "accumulate"])
@EVERY_BATCH
@EVERY_DTYPE
def test_weight_grad(backend, dtype, batch, accumulate):
    for rng, (fin, fout) in case_shapes("weight_grad", dtype, accumulate, batch):
        delta = randn(rng, (batch, fout), dtype)
        A_prev = randn(rng, (batch, fin), dtype)
        dW, db = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
        check_weight_grad(backend, dtype, delta, A_prev, dW, db, accumulate,
                          f"weight_grad accumulate={accumulate} B={batch} in={fin} out={fout}")


# ---------------------------------------------------------------------------------------
# activations


@every_layer_case
def test_activate(backend, dtype, act, batch):
    for rng, features in case_shapes("activate", dtype, act, batch, FEATURES):
        Z = activation_inputs(rng, batch, features, dtype)
        # elementwise: each entry must be right to rtol relative to itself (scale 0 -> the
        # atol is the smallest normal number), except that entries that are exactly zero
        # in the reference must come out zero
        _, ca = check_output(backend, "activate", [Z, act, np.empty_like(Z)], 2, dtype, 0.0,
                             f"act={act} B={batch} F={features}")
        assert np.isfinite(ca[2]).all()


@every_layer_case
def test_activation_backward(backend, dtype, act, batch):
    for rng, features in case_shapes("activation_backward", dtype, act, batch, FEATURES):
        D = derivative_input(rng, batch, features, dtype, act)
        delta = randn(rng, (batch, features), dtype)
        # f'(D) is computed from a rounded D, so it is known to absolute (not relative)
        # accuracy: the error scale of delta * f'(D) is max |delta|
        ra, ca = check_output(backend, "activation_backward", [D, act, delta], 2, dtype,
                              float(np.abs(delta).max()), f"act={act} B={batch} F={features}",
                              written=False)
        if act != codes.IDENTITY and not np.array_equal(ra[2], delta):
            # the kernel really updated the array it was given
            assert not np.array_equal(ca[2], delta)


# ---------------------------------------------------------------------------------------
# add (a graph model's Add, and deltas summed at a fan-out)


@EVERY_BATCH
@EVERY_DTYPE
def test_add(backend, dtype, batch):
    rng = rng_for("add", batch, np.dtype(dtype).itemsize)
    for _, n in FEATURE_PAIRS:
        X, Y = randn(rng, (batch, n), dtype), randn(rng, (batch, n), dtype)
        r, ra, c, ca = backend.run("add", [X, Y, np.empty((batch, n), dtype)], out=(2,))
        check_no_return("add", r, c)
        np.testing.assert_array_equal(ra[2], X + Y)  # one rounding: exact in both
        np.testing.assert_array_equal(ca[2], ra[2])


@EVERY_DTYPE
def test_add_in_place(backend, dtype):
    """out may be one of the inputs (deltas summed into a fan-out buffer)."""
    rng = rng_for("add-in-place", np.dtype(dtype).itemsize)
    X, Y = randn(rng, (7, 17), dtype), randn(rng, (7, 17), dtype)
    Xd = backend.device(X)
    backend.add(Xd, backend.device(Y), Xd)
    np.testing.assert_array_equal(backend.host(Xd), X + Y)


# ---------------------------------------------------------------------------------------
# one layer's forward, backward and gradient on random shapes


#: the largest random size: past two 8 x 8 tiles and a 16-thread block under the simulator
RANDOM_MAX = 20 if SIMULATED else 40


@settings(max_examples=5 if SIMULATED else 30, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    act=st.sampled_from(ACT_CODES),
    batch=st.integers(1, RANDOM_MAX),
    fin=st.integers(1, RANDOM_MAX),
    fout=st.integers(1, RANDOM_MAX),
    w_scale=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_forward_backward_random_shapes(backend, dtype, act, batch, fin, fout, w_scale,
                                              seed):
    """linear_forward -> delta_backward -> weight_grad, as in one training step."""
    rng = np.random.default_rng(seed)
    A_prev = D_prev = derivative_input(rng, batch, fin, dtype, act, scale=2.0)
    W = randn(rng, (fout, fin), dtype, scale=w_scale)
    b = randn(rng, (fout,), dtype)
    r, ra, c, ca = backend.run("linear_forward", [A_prev, W, b, act, np.empty((batch, fout), dtype)],
                               out=(4,))
    assert_close(ca[4], ra[4], dtype, scale=dot_scale(A_prev, W.T) + float(np.abs(b).max()))

    delta = randn(rng, (batch, fout), dtype)
    r, ra, c, ca = backend.run("delta_backward",
                               [delta, W, D_prev, act, np.empty((batch, fin), dtype)], out=(4,))
    assert_close(ca[4], ra[4], dtype, scale=dot_scale(delta, W))
    check_weight_grad(backend, dtype, delta, A_prev, np.empty((fout, fin), dtype),
                      np.empty((fout,), dtype), False, f"B={batch} in={fin} out={fout}")


# ---------------------------------------------------------------------------------------
# views: one flat parameter array; column slices of a wider buffer (a Concatenate)


def test_layers_as_views_of_one_flat_parameter_array(backend):
    """The model keeps W and b of every layer as views into one flat array."""
    rng = rng_for("views")
    fin, fout, batch = 7, 9, 5
    flat = randn(rng, (fout * fin + fout,), np.float64)
    dflat = backend.device(flat)
    W = dflat[:fout * fin].reshape(fout, fin)
    b = dflat[fout * fin:]
    A_in = randn(rng, (batch, fin), np.float64)
    out = backend.empty((batch, fout), np.float64)
    backend.linear_forward(backend.device(A_in), W, b, codes.TANH, out)
    expected = np.empty((batch, fout))
    ref.linear_forward(A_in, flat[:fout * fin].reshape(fout, fin), flat[fout * fin:], codes.TANH,
                       expected)
    assert_close(backend.host(out), expected, np.float64)
    # gradients into views of a flat gradient array, then one optimizer launch over it all
    gflat = backend.zeros(flat.size, np.float64)
    delta = randn(rng, (batch, fout), np.float64)
    backend.weight_grad(backend.device(delta), backend.device(A_in),
                        gflat[:fout * fin].reshape(fout, fin), gflat[fout * fin:])
    g = backend.host(gflat).copy()
    assert_close(g[:fout * fin].reshape(fout, fin), delta.T @ A_in, np.float64,
                 scale=dot_scale(delta.T, A_in))
    assert_close(g[fout * fin:], delta.sum(axis=0), np.float64, scale=np.abs(delta).sum(0).max())
    backend.sgd_update(dflat, gflat, backend.zeros(flat.size, np.float64), 0.1, 0.0, 0.0, False)
    assert_close(backend.host(dflat), flat - 0.1 * g, np.float64)


def columns(rng, batch, width, dtype, left=3, right=2):
    """A random (batch, left + width + right) buffer and the column range of its slice."""
    return randn(rng, (batch, left + width + right), dtype), slice(left, left + width)


#: one activation under the simulator, where a case takes seconds (the slicing is the subject)
SLICE_ACTS = ["relu"] if SIMULATED else ["identity", "relu", "tanh", "gelu"]


@EVERY_BATCH
@pytest.mark.parametrize("act", [codes.ACTIVATIONS[a] for a in SLICE_ACTS], ids=SLICE_ACTS)
@EVERY_DTYPE
def test_layer_kernels_on_column_slices(backend, dtype, act, batch):
    """linear_forward into a slice, reading a slice; delta_backward (write and accumulate)
    and weight_grad (write and accumulate) from slices: the same numbers as on whole arrays,
    and the columns outside the slice untouched."""
    rng = rng_for("slices", batch, act, np.dtype(dtype).itemsize)
    for fin, fout in FEATURE_PAIRS:
        A_buf, a = columns(rng, batch, fin, dtype)
        A_dev = backend.device(A_buf)
        W, b = randn(rng, (fout, fin), dtype, scale=1 / np.sqrt(fin)), randn(rng, (fout,), dtype)
        Wd, bd = backend.device(W), backend.device(b)
        out_buf, o = columns(rng, batch, fout, dtype)
        out_dev = backend.device(out_buf)
        backend.linear_forward(A_dev[:, a], Wd, bd, act, out_dev[:, o])
        expected = np.empty((batch, fout), dtype)
        ref.linear_forward(np.ascontiguousarray(A_buf[:, a]), W, b, act, expected)
        got = backend.host(out_dev)
        assert_close(got[:, o], expected, dtype,
                     scale=dot_scale(A_buf[:, a], W.T) + float(np.abs(b).max()))
        np.testing.assert_array_equal(got[:, :o.start], out_buf[:, :o.start])
        np.testing.assert_array_equal(got[:, o.stop:], out_buf[:, o.stop:])

        delta_buf, d = columns(rng, batch, fout, dtype)
        delta, delta_dev = delta_buf[:, d], backend.device(delta_buf)[:, d]
        D = activation_of(randn(rng, (batch, fin), dtype), act)
        Dd = backend.device(D)
        for accumulate in (False, True):
            got_buf, g = columns(rng, batch, fin, dtype)
            got_dev = backend.device(got_buf)
            want = np.ascontiguousarray(got_buf[:, g])
            backend.delta_backward(delta_dev, Wd, Dd, act, got_dev[:, g], accumulate)
            ref.delta_backward(np.ascontiguousarray(delta), W, D, act, want, accumulate)
            got = backend.host(got_dev)
            assert_close(got[:, g], want, dtype, scale=dot_scale(delta, W) + float(np.abs(want).max()))
            np.testing.assert_array_equal(got[:, :g.start], got_buf[:, :g.start])
            dW, db = randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
            dW_ref, db_ref = dW.copy(), db.copy()
            dWd, dbd = backend.device(dW), backend.device(db)
            backend.weight_grad(delta_dev, A_dev[:, a], dWd, dbd, accumulate)
            ref.weight_grad(np.ascontiguousarray(delta), np.ascontiguousarray(A_buf[:, a]), dW_ref,
                            db_ref, accumulate)
            assert_close(backend.host(dWd), dW_ref, dtype,
                         scale=dot_scale(delta.T, A_buf[:, a]) + float(np.abs(dW_ref).max()))
            assert_close(backend.host(dbd), db_ref, dtype,
                         scale=float(np.abs(delta).sum(axis=0).max()) + 10)
