"""The optimizer kernels of every backend against the NumPy reference: SGD, Adam / AdamW
(AMSGrad), RMSprop, Adagrad and LAMB over several steps with the whole state compared after
each, gradient clipping and scaling, on flat arrays of awkward sizes (helpers.PARAM_SIZES)."""

import numpy as np
import pytest

from fastmlp.kernels import reference as ref
from helpers import DTYPE_IDS, DTYPES, PARAM_SIZES, SIMULATED, assert_close, randn, rng_for

STEPS = 4 if SIMULATED else 5

#: Adagrad's and LAMB's tolerance (absolute and relative, as the CUDA tests had it)
TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=1e-6),
       np.dtype(np.float64): dict(rtol=1e-12, atol=1e-14)}


def run_optimizer(backend, fname, dtype, size, make_args, state_names, key, shrinking=False,
                  grad_is_state=False, init=0.0, close=None):
    """STEPS calls of `fname` on the reference and on `backend` from the same state; after
    each step every state array (and the gradient, unchanged unless `grad_is_state`) is
    compared. `make_args(state, g, step)` builds the call's arguments; `key` seeds the generator. Returns the backend's
    final state on the host."""
    rng = rng_for(*key)
    p0 = randn(rng, (size,), dtype)
    host = {n: (p0.copy() if n == "p" else np.full(size, init, dtype)) for n in state_names}
    dev = {n: backend.device(a) for n, a in host.items()}
    for step in range(1, STEPS + 1):
        g = randn(rng, (size,), dtype) * (STEPS + 1 - step if shrinking else 1)
        dg = backend.device(g)
        getattr(ref, fname)(*make_args(host, g, step))
        assert getattr(backend, fname)(*make_args(dev, dg, step)) is None
        what = f"{fname} step {step} {key}"
        if not grad_is_state:
            np.testing.assert_array_equal(backend.host(dg), g,
                                          err_msg=f"{fname} modified the gradient")
        for n in state_names + (("g",) if grad_is_state else ()):
            got, want = (backend.host(dg), g) if n == "g" else (backend.host(dev[n]), host[n])
            if close is None:
                assert_close(got, want, dtype, what=f"{n} {what}")
            else:
                close(got, want, err_msg=f"{n} {what}")
    final = {n: backend.host(a) for n, a in dev.items()}
    assert not np.array_equal(final["p"], p0)  # the parameter passed in was updated
    return final


SGD_CONFIGS = [
    # (momentum, weight_decay, nesterov)
    (0.0, 0.0, False),
    (0.0, 1e-2, False),
    (0.9, 0.0, False),
    (0.5, 1e-2, False),
    (0.9, 0.0, True),
    (0.9, 5e-3, True),
]


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("momentum, weight_decay, nesterov", SGD_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sgd_update(backend, dtype, momentum, weight_decay, nesterov, size):
    def args(s, g, step):
        return (s["p"], g, s["buf"], 0.1, momentum, weight_decay, nesterov)

    final = run_optimizer(backend, "sgd_update", dtype, size, args, ("p", "buf"),
                          ("sgd", size, momentum, weight_decay, nesterov, np.dtype(dtype).itemsize))
    if momentum == 0:
        assert not final["buf"].any()  # no momentum: the buffer is not touched
    else:
        assert final["buf"].any()


ADAM_CONFIGS = [
    # (beta1, beta2, weight_decay, decoupled, amsgrad)
    (0.9, 0.999, 0.0, True, False),
    (0.9, 0.999, 0.0, False, False),
    (0.9, 0.999, 0.1, True, False),
    (0.9, 0.999, 0.1, False, False),
    (0.5, 0.9, 1e-2, True, False),
    (0.0, 0.99, 1e-2, False, False),
    (0.9, 0.999, 0.0, True, True),
    (0.5, 0.9, 1e-2, False, True),
    (0.9, 0.99, 1e-2, True, True),
    (0.9, 0.99, 1e-2, False, True),
]


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("beta1, beta2, weight_decay, decoupled, amsgrad", ADAM_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_update(backend, dtype, beta1, beta2, weight_decay, decoupled, amsgrad, size):
    names = ("p", "m", "v", "v_max") if amsgrad else ("p", "m", "v")

    def args(s, g, step):
        return (s["p"], g, s["m"], s["v"], step, 1e-2, beta1, beta2, 1e-8, weight_decay,
                decoupled) + ((s["v_max"],) if amsgrad else ())

    # AMSGrad with shrinking gradients: v falls, v_max holds
    final = run_optimizer(backend, "adam_update", dtype, size, args, names,
                          ("adam", size, beta1, beta2, weight_decay, decoupled, np.dtype(dtype).itemsize)
                          + (("amsgrad",) if amsgrad else ()), shrinking=amsgrad)
    assert final["m"].any() and final["v"].any()
    if amsgrad:
        assert np.all(final["v_max"] >= final["v"])


def test_adam_first_step_is_lr_times_sign(backend):
    """Sanity of the formula: Adam's first step moves every weight by about lr * sign(g)."""
    p0 = np.linspace(-1, 1, 11)
    g = np.linspace(-3, 2, 11) + 0.25  # no zero gradients
    p, m, v = (backend.device(a) for a in (p0, np.zeros(11), np.zeros(11)))
    backend.adam_update(p, backend.device(g), m, v, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, True)
    np.testing.assert_allclose(p0 - backend.host(p), 1e-3 * np.sign(g), rtol=1e-6)


RMSPROP_CONFIGS = [
    # (momentum, weight_decay, centered)
    (0.0, 0.0, False),
    (0.9, 0.0, False),
    (0.9, 1e-2, False),
    (0.0, 0.0, True),
    (0.0, 1e-2, True),
    (0.9, 1e-2, True),
    (0.5, 0.1, True),
]


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("momentum, weight_decay, centered", RMSPROP_CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rmsprop_update(backend, dtype, momentum, weight_decay, centered, size):
    def args(s, g, step):
        return (s["p"], g, s["sq"], s["gavg"], s["buf"], 1e-2, 0.99, 1e-8, weight_decay,
                momentum, centered)

    run_optimizer(backend, "rmsprop_update", dtype, size, args, ("p", "sq", "gavg", "buf"),
                  ("rmsprop", size, momentum, weight_decay, centered, np.dtype(dtype).itemsize))


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adagrad_update(backend, dtype, size):
    def args(s, g, step):
        return (s["p"], g, s["acc"], 0.1 / (1 + (step - 1) * 0.01), 1e-3, 1e-10)

    run_optimizer(backend, "adagrad_update", dtype, size, args, ("p", "acc"), ("adagrad", size, np.dtype(dtype).itemsize),
                  init=0.1, close=lambda a, b, **kw: np.testing.assert_allclose(
                      a, b, **TOL[np.dtype(dtype)], **kw))


def segments_for(size):
    """LAMB's tensors: one, or several including an empty one."""
    return np.array({1: [0, 1], 7: [0, 3, 3, 7]}.get(size, [0, size - 7, size - 2, size]),
                    np.int64)


@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lamb_update(backend, dtype, size):
    segments = segments_for(size)

    def args(s, g, step):
        return (s["p"], g, s["m"], s["v"], step, 0.01, 0.9, 0.999, 1e-6, 0.01, segments)

    run_optimizer(backend, "lamb_update", dtype, size, args, ("p", "m", "v"), ("lamb", size, np.dtype(dtype).itemsize),
                  grad_is_state=True,  # g -> the update
                  close=lambda a, b, **kw: np.testing.assert_allclose(
                      a, b, **TOL[np.dtype(dtype)], **kw))


# ---------------------------------------------------------------------------------------
# scaling and clipping


@pytest.mark.parametrize("c", [0.0, 0.375, 0.5, -3.0])
@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_scale(backend, dtype, size, c):
    x = randn(rng_for("scale", size, c, np.dtype(dtype).str), (size,), dtype)
    r, ra, res, xa = backend.run("scale", [x, c], inout=(0,))
    assert r is None and res is None
    assert_close(xa[0], ra[0], dtype, what=f"scale {size}")
    np.testing.assert_array_equal(ra[0], (x * dtype(c)).astype(dtype))


@pytest.mark.parametrize("max_norm", [1e-3, 0.1, 1.0, 2.0, 100.0, 1e6])
@pytest.mark.parametrize("size", PARAM_SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_clip_grad_norm(backend, dtype, size, max_norm):
    g = 3 * randn(rng_for("clip", size, max_norm, np.dtype(dtype).str), (size,), dtype)
    norm_ref, (g_ref, _), norm, (g_out, _) = backend.run("clip_grad_norm", [g, max_norm],
                                                         inout=(0,))
    assert isinstance(norm, float)
    assert_close(norm, norm_ref, dtype, scale=norm_ref, what=f"norm {size}")
    assert_close(g_out, g_ref, dtype, what=f"clipped g {size}")
    rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    assert norm == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=rtol)
    if max_norm > norm:
        np.testing.assert_array_equal(g_out, g)  # untouched
    else:
        assert np.linalg.norm(g_out.astype(np.float64)) <= max_norm * (1 + 1e-5)


@pytest.mark.parametrize("kernel", ["sgd_update", "adam_update", "rmsprop_update",
                                    "adagrad_update", "clip_grad_norm", "scale"])
def test_optimizer_kernels_refuse_arrays_that_are_not_flat(backend, kernel):
    if backend.name == "reference":
        pytest.skip("the NumPy reference takes any shape; the compiled kernels need flat arrays")
    p = backend.device(np.ones((3, 4)))
    z = backend.device(np.zeros((3, 4)))
    args = {"sgd_update": (p, z, z, 0.1, 0.0, 0.0, False),
            "adam_update": (p, z, z, z, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, True),
            "rmsprop_update": (p, z, z, z, z, 0.1, 0.99, 1e-8, 0.0, 0.0, False),
            "adagrad_update": (p, z, z, 0.1, 0.0, 1e-10),
            "clip_grad_norm": (p, 1.0), "scale": (p, 2.0)}[kernel]
    with pytest.raises(ValueError, match="flat contiguous 1-D"):
        getattr(backend, kernel)(*args)
    np.testing.assert_array_equal(backend.host(p), 1.0)
