"""The kernels of the layers beyond Dense, on every backend against the NumPy reference:
random numbers (fill_uniform), dropout and batch norm; and f' of every activation against a
central difference of f (what the derivative kernels compute really is the derivative).

How the comparison works: test_backend_dense.py. Tolerance rtol 1e-5 (float32) / 1e-12
(float64) relative to the scale of each output's terms (helpers.assert_close).
"""

import numpy as np
import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import reference as ref
from helpers import (ACT_CODES, ACT_IDS, EVERY_ACT, EVERY_DTYPE, RTOL, SIMULATED,
                     activation_inputs, activation_of, assert_close, check_no_return, randn,
                     rng_for)

#: (batch, features) of the elementwise layer kernels
SHAPES = ((1, 1), (17, 9)) if SIMULATED else ((1, 1), (1, 5), (7, 1), (7, 3), (33, 17), (130, 64))


def derivative_input(rng, batch, features, dtype, act):
    """D, what f' is taken from: Z for the activations in NEEDS_PREACTIVATION, else f(Z)."""
    Z = activation_inputs(rng, batch, features, dtype)
    return Z if act in codes.NEEDS_PREACTIVATION else activation_of(Z, act)


# ---------------------------------------------------------------------------------------
# f' is the derivative of f


@EVERY_ACT
@EVERY_DTYPE
def test_activation_backward_is_the_derivative(backend, dtype, act):
    """activation_backward(D, act, G) on z from N(0, 16) (no kink of relu near any z): G f'(z)
    against the reference to rtol relative to its largest entry, and in float64 f'(z) itself
    against (f(z + h) - f(z - h)) / 2h of the reference's f."""
    rng = rng_for("f-prime", act, np.dtype(dtype).str)
    h = 1e-6
    for shape in SHAPES:
        Z = (rng.normal(size=shape) * 4).astype(dtype)
        D = Z if act in codes.NEEDS_PREACTIVATION else activation_of(Z, act)
        G = rng.normal(size=shape).astype(dtype)
        r, ra, c, ca = backend.run("activation_backward", [D, act, G], inout=(2,))
        assert_close(ca[2], ra[2], dtype, what=f"G f' act={act} {shape}")
        if dtype != np.float64:
            continue
        Ap, Am = np.empty_like(Z), np.empty_like(Z)
        ref.activate(Z + h, act, Ap)
        ref.activate(Z - h, act, Am)
        ones = backend.device(np.ones_like(Z))
        backend.activation_backward(backend.device(D), act, ones)
        np.testing.assert_allclose(backend.host(ones), (Ap - Am) / (2 * h), rtol=1e-6, atol=1e-8,
                                   err_msg=f"f' of act={act} {shape}")


# ---------------------------------------------------------------------------------------
# random numbers


@EVERY_DTYPE
def test_fill_uniform(backend, dtype):
    """Seeded by the generator it is given, uniform on [0, 1), without structure; the host
    backends draw the very numbers of numpy's Generator.random (the reference's)."""
    shape = (64, 64) if SIMULATED else (200, 50)
    n = shape[0] * shape[1]
    U1, U2, U3 = (backend.empty(shape, dtype) for _ in range(3))
    backend.fill_uniform(U1, np.random.default_rng(5))
    backend.fill_uniform(U2, np.random.default_rng(5))
    backend.fill_uniform(U3, np.random.default_rng(6))
    u1, u2, u3 = (backend.host(U).copy() for U in (U1, U2, U3))
    assert u1.dtype == np.dtype(dtype) and u1.shape == shape
    np.testing.assert_array_equal(u1, u2)  # deterministic given the generator's state
    if not backend.on_device:
        expected = np.empty(shape, dtype)
        ref.fill_uniform(expected, np.random.default_rng(5))
        np.testing.assert_array_equal(u1, expected)
    assert (u1 != u3).mean() > 0.99  # another seed, other numbers
    for u in (u1, u3):
        assert u.min() >= 0 and u.max() < 1
        # the mean's standard error is 0.29 / sqrt(n), the variance's 0.075 / sqrt(n)
        assert abs(u.mean() - 0.5) < 1 / np.sqrt(n) and abs(u.var() - 1 / 12) < 0.5 / np.sqrt(n)
        assert len(np.unique(u)) > 0.97 * n
        # no structure along rows or columns: the row and column means are all plausible
        assert abs(u.mean(axis=0) - 0.5).max() < 0.2 and abs(u.mean(axis=1) - 0.5).max() < 0.2
        # neighbours are uncorrelated
        assert abs(np.corrcoef(u.ravel()[:-1], u.ravel()[1:])[0, 1]) < 0.06
    # the same generator advances: two draws in a row differ
    rng = np.random.default_rng(7)
    backend.fill_uniform(U1, rng)
    backend.fill_uniform(U2, rng)
    assert (backend.host(U1) != backend.host(U2)).mean() > 0.99
    # 1-D arrays, and odd sizes
    v = backend.empty(33, dtype)
    backend.fill_uniform(v, np.random.default_rng(1))
    vh = backend.host(v)
    assert vh.shape == (33,) and (vh >= 0).all() and (vh < 1).all() and len(np.unique(vh)) == 33


# ---------------------------------------------------------------------------------------
# dropout


#: the activations of the layer before a dropout (f' is applied on the way back)
DROPOUT_ACTS = [codes.IDENTITY, codes.RELU, codes.SIGMOID, codes.TANH, codes.GELU]


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9])
@EVERY_DTYPE
def test_dropout(backend, dtype, p):
    rng = rng_for("dropout", p, np.dtype(dtype).str)
    for batch, features in SHAPES:
        A_in = randn(rng, (batch, features), dtype)
        U = rng.random((batch, features)).astype(dtype)
        if float(dtype(p)) == p:  # the boundary U == p keeps the unit (p not rounded: below)
            U[0, 0] = p
        what = f"{(batch, features)} p={p}"
        r, ra, c, ca = backend.run("dropout_forward", [A_in, U, p, np.empty_like(A_in)], out=(3,))
        check_no_return("dropout_forward", r, c)
        assert_close(ca[3], ra[3], dtype, what="dropout_forward " + what)
        np.testing.assert_array_equal(ca[3] == 0, (U < p) | (A_in == 0))
        for act in DROPOUT_ACTS:
            delta = randn(rng, (batch, features), dtype)
            D_prev = derivative_input(rng, batch, features, dtype, act)
            r, ra, c, ca = backend.run("dropout_backward",
                                       [delta, U, p, D_prev, act, np.empty_like(delta)], out=(5,))
            check_no_return("dropout_backward", r, c)
            assert_close(ca[5], ra[5], dtype, what=f"dropout_backward act={act} {what}")


@EVERY_DTYPE
def test_dropout_keeps_the_unit_where_u_equals_p_in_its_dtype(backend, dtype):
    """U >= p in U's dtype (as NumPy compares a float32 array with a Python float): U ==
    float32(0.9), which is below 0.9, keeps the unit in float32 (this suite found the CPU
    comparing in float64 and dropping it)."""
    p = 0.9
    A_in, U, delta = np.ones((1, 3), dtype), np.full((1, 3), p, dtype), np.ones((1, 3), dtype)
    r, ra, c, ca = backend.run("dropout_forward", [A_in, U, p, np.empty_like(A_in)], out=(3,))
    np.testing.assert_array_equal(ra[3], A_in / dtype(1 - p))  # all kept, by the reference
    np.testing.assert_array_equal(ca[3], ra[3])
    r, ra, c, ca = backend.run("dropout_backward",
                               [delta, U, p, A_in, codes.IDENTITY, np.empty_like(delta)], out=(5,))
    np.testing.assert_array_equal(ca[5], ra[5])
    assert (ra[5] != 0).all()


# ---------------------------------------------------------------------------------------
# batch norm

#: (batch, features); a batch of at least 2 (the running variance is unbiased)
BN_SHAPES = ((2, 1), (17, 9)) if SIMULATED else ((2, 1), (2, 5), (7, 3), (33, 17), (130, 64))


@EVERY_ACT
@EVERY_DTYPE
def test_batchnorm(backend, dtype, act):
    """Training forward (Xhat, inv_std, A, the running statistics updated), inference with
    the updated statistics, and backward (dgamma, dbeta, delta_prev)."""
    rng = rng_for("batchnorm", act, np.dtype(dtype).str)
    rtol = RTOL[np.dtype(dtype)]
    for batch, features in BN_SHAPES:
        what = f"act={act} {(batch, features)}"
        X = randn(rng, (batch, features), dtype, scale=2.0) + 1.5
        gamma = (1 + 0.5 * rng.standard_normal(features)).astype(dtype)
        beta = randn(rng, (features,), dtype)
        rmean = randn(rng, (features,), dtype)
        rvar = rng.uniform(0.5, 2, size=features).astype(dtype)
        args = [X, gamma, beta, rmean, rvar, 0.1, 1e-5, act, np.empty_like(X),
                np.empty(features, dtype), np.empty_like(X)]
        r, ra, c, ca = backend.run("batchnorm_forward", args, out=(8, 9, 10), inout=(3, 4))
        check_no_return("batchnorm_forward", r, c)
        for i, name in ((8, "Xhat"), (9, "inv_std"), (10, "A_out"), (3, "running_mean"),
                        (4, "running_var")):
            assert_close(ca[i], ra[i], dtype, what=f"{name} batchnorm_forward {what}")
        # the running statistics and Xhat are what they should be
        X64 = X.astype(np.float64)
        np.testing.assert_allclose(ca[3], 0.9 * rmean + 0.1 * X64.mean(0), rtol=rtol * 10)
        np.testing.assert_allclose(ca[4], 0.9 * rvar + 0.1 * X64.var(0, ddof=1), rtol=rtol * 10)
        np.testing.assert_allclose(ca[8].mean(0), 0, atol=rtol * 100)

        r, ra2, c, ca2 = backend.run("batchnorm_inference",
                                     [X, gamma, beta, ra[3], ra[4], 1e-5, act, np.empty_like(X)],
                                     out=(7,))
        check_no_return("batchnorm_inference", r, c)
        assert_close(ca2[7], ra2[7], dtype, what="batchnorm_inference " + what)

        delta = randn(rng, (batch, features), dtype)
        D_prev = derivative_input(rng, batch, features, dtype, act)
        Xhat, inv_std = ra[8], ra[9]
        args = [delta, Xhat, inv_std, gamma, np.empty(features, dtype), np.empty(features, dtype),
                D_prev, act, np.empty_like(delta)]
        r, ra3, c, ca3 = backend.run("batchnorm_backward", args, out=(4, 5, 8))
        check_no_return("batchnorm_backward", r, c)
        assert_close(ca3[4], ra3[4], dtype, what="dgamma " + what)
        assert_close(ca3[5], ra3[5], dtype, what="dbeta " + what)
        # dX = gamma inv_std / n (n delta - sum(delta) - Xhat sum(delta Xhat)) cancels: judge
        # it against the size of its terms (then times f'(D_prev), |f'| <= 1.13)
        n = batch
        terms = np.abs(gamma * inv_std / n) * (n * np.abs(delta) + np.abs(delta).sum(0)
                                               + np.abs(Xhat) * np.abs(delta * Xhat).sum(0))
        assert_close(ca3[8], ra3[8], dtype, scale=float(terms.max()), what="delta_prev " + what)
