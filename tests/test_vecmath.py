"""kernels/vecmath.py: the CPU backend's vectorisable float32 exp, expm1, log1p and tanh,
against float64 NumPy over the float32 range, in ulp of the float32 result; and their
float64 path, which must be the C library's function exactly."""

import math

import numpy as np
import pytest
from numba import njit

from fastmlp.kernels import vecmath

MAX_ULP = 3.0  # measured: exp 1.0, expm1 1.7, log1p 2.8, tanh 2.5


@njit
def _apply(X, out, which):
    for i in range(X.size):
        if which == 0:
            out[i] = vecmath.exp(X[i])
        elif which == 1:
            out[i] = vecmath.expm1(X[i])
        elif which == 2:
            out[i] = vecmath.log1p(X[i])
        else:
            out[i] = vecmath.tanh(X[i])


FUNCTIONS = {"exp": (0, np.exp), "expm1": (1, np.expm1), "log1p": (2, np.log1p), "tanh": (3, np.tanh)}


def _inputs(name):
    rng = np.random.default_rng(7)
    tiny = np.logspace(-38, 0, 4001)
    X = np.concatenate([np.linspace(-110, 110, 200001), 3 * rng.standard_normal(50000),
                        tiny, -tiny, [0.0, -0.0]])
    if name == "log1p":
        X = np.concatenate([np.abs(X), np.logspace(-38, 30, 3001), -np.logspace(-38, -1e-7, 3001)])
    return X.astype(np.float32)


def _run(name, X):
    which, _ = FUNCTIONS[name]
    out = np.full_like(X, np.nan)
    _apply(X, out, which)
    return out


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float32_within_a_few_ulp(name):
    X = _inputs(name)
    out = _run(name, X)
    with np.errstate(all="ignore"):
        exact = FUNCTIONS[name][1](X.astype(np.float64))
    finfo = np.finfo(np.float32)
    normal = np.isfinite(exact) & (np.abs(exact) >= finfo.tiny) & (np.abs(exact) <= finfo.max)
    ulp = np.spacing(np.abs(exact[normal]).astype(np.float32)).astype(np.float64)
    err = np.abs(out[normal].astype(np.float64) - exact[normal]) / ulp
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP, f"{name}({X[normal][worst]!r}) is {err[worst]:.2f} ulp off"
    # where float32 overflows the result is inf; where it underflows, at most the smallest normal
    over = np.isfinite(exact) & (np.abs(exact) > finfo.max)
    assert np.all(np.isinf(out[over]) & (np.sign(out[over]) == np.sign(exact[over])))
    under = np.isfinite(exact) & (np.abs(exact) < finfo.tiny)
    assert np.all(np.abs(out[under]) <= finfo.tiny)


@pytest.mark.parametrize("name, x, expected", [
    ("exp", np.inf, np.inf), ("exp", -np.inf, 0.0), ("exp", 89.0, np.inf), ("exp", -200.0, 0.0),
    ("expm1", np.inf, np.inf), ("expm1", -np.inf, -1.0), ("expm1", -0.0, 0.0),
    ("log1p", np.inf, np.inf), ("log1p", -1.0, -np.inf), ("log1p", -2.0, np.nan), ("log1p", 0.0, 0.0),
    ("tanh", np.inf, 1.0), ("tanh", -np.inf, -1.0), ("tanh", 1e30, 1.0), ("tanh", 0.0, 0.0),
    ("exp", np.nan, np.nan), ("expm1", np.nan, np.nan), ("log1p", np.nan, np.nan), ("tanh", np.nan, np.nan),
])
def test_float32_special_values(name, x, expected):
    out = _run(name, np.array([x], np.float32))[0]
    if np.isnan(expected):
        assert np.isnan(out)
    else:
        assert out == np.float32(expected)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float64_is_the_c_library(name):
    X = np.array([-0.75, -1e-9, 0.0, 0.3, 2.0, 50.0])
    out = np.empty_like(X)
    _apply(X, out, FUNCTIONS[name][0])
    expected = [getattr(math, name)(x) for x in X]
    np.testing.assert_array_equal(out, expected)
