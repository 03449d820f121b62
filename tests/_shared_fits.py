"""Two fits compared, and the optimizers they are run with, for the tests of fit's compiled
runs (test_fast_epoch: against the step-by-step path; test_fast_split: two threads, one
thread, the whole batch)."""

import numpy as np

import fastmlp as fm

#: 203 rows = 6 full batches of 32 (two halves of 16) and a partial one of 11; 7 features
N, F = 203, 7

OPTIMIZERS = {
    "sgd": lambda: fm.SGD(0.05),
    "sgd-nesterov-decay": lambda: fm.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam-coupled": lambda: fm.Adam(3e-3, weight_decay=1e-2, decoupled=False),
    "adamw-amsgrad": lambda: fm.AdamW(3e-3, amsgrad=True),
}


def _close(a, b, rtol):
    if rtol is None:
        np.testing.assert_array_equal(a, b)
    else:  # rtol relative to each array's scale
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def assert_same_fits(a, b, rtol=None):
    """(model, history) pairs: weights, optimizer state and history bit for bit, or with
    rtol to rounding."""
    (ma, ha), (mb, hb) = a, b
    for wa, wb in zip(ma.get_weights(), mb.get_weights()):
        _close(wa, wb, rtol)
    assert ma._opt_state.keys() == mb._opt_state.keys()
    for name in ma._opt_state:
        if name != "step":
            _close(ma._opt_state[name], mb._opt_state[name], rtol)
    assert ma._opt_state["step"] == mb._opt_state["step"]
    assert ha.history.keys() == hb.history.keys()
    for key in ha.history:
        if rtol is None:
            assert ha.history[key] == hb.history[key]
        else:
            np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=rtol)


def fit_data(loss, outputs, seed=0):
    """N x F standard-normal inputs and targets for `loss` with `outputs` outputs (labels
    for cross_entropy; a vector for binary_cross_entropy with one output)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, F))
    if loss == "cross_entropy":
        y = rng.integers(0, outputs, N)
    elif loss == "binary_cross_entropy":
        y = (rng.random((N, outputs)) > 0.5).astype(np.float64)
        y = y[:, 0] if outputs == 1 else y
    elif loss == "poisson":
        y = rng.poisson(2.0, (N, outputs)).astype(np.float64)
    else:
        y = rng.standard_normal((N, outputs))
    return X, y
