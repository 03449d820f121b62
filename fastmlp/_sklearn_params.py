"""The estimators' parameter checks, scikit-learn style (run by fit, not by __init__), and
the activation names they accept."""

import numbers

import numpy as np

from . import distributed as _distributed
from .kernels.codes import ACTIVATIONS

_SKLEARN_ACTIVATIONS = {"logistic": "sigmoid"}
_DEVICES = ("auto", "cpu", "reference", "cuda")


def _fastmlp_activation(name):
    """fastmlp's name of the activation `name` (scikit-learn's 'logistic' is 'sigmoid')."""
    if not isinstance(name, str) or (name not in ACTIVATIONS and name not in _SKLEARN_ACTIVATIONS):
        raise ValueError(
            "activation must be one of "
            f"{sorted(set(ACTIVATIONS) | set(_SKLEARN_ACTIVATIONS))}; got {name!r}"
        )
    return _SKLEARN_ACTIVATIONS.get(name, name)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_hidden_layer_sizes(hidden_layer_sizes):
    """hidden_layer_sizes as a list of ints > 0 (an int is one hidden layer)."""
    sizes = hidden_layer_sizes
    if _is_int(sizes):
        sizes = [sizes]
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError("hidden_layer_sizes must be an int or a sequence of ints; got "
                        f"{hidden_layer_sizes!r}") from None
    if not all(_is_int(s) for s in sizes):
        raise TypeError(f"hidden_layer_sizes must hold ints; got {hidden_layer_sizes!r}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
    return [int(s) for s in sizes]


def check_params(est):
    """Check every parameter of the estimator `est` (scikit-learn style: in fit, not in
    __init__); returns its hidden layer sizes as a list. A bad one raises scikit-learn's
    InvalidParameterError (a ValueError and a TypeError, as scikit-learn's estimators do):
    scikit-learn's own checks of its parameters first (its messages), then fastmlp's of
    the rest and of the activation names (which include fastmlp's)."""
    from ._sklearn_compat import InvalidParameterError, validate_parameter_constraints

    if validate_parameter_constraints is not None:
        from sklearn import neural_network

        theirs = getattr(neural_network, type(est).__name__, None)
        constraints = {name: rule for name, rule in
                       getattr(theirs, "_parameter_constraints", {}).items()
                       if name != "activation" and hasattr(est, name)}
        validate_parameter_constraints(constraints, {n: getattr(est, n) for n in constraints},
                                       caller_name=type(est).__name__)
    try:
        return _check_params(est)
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(str(exc)) from None


def _check_params(est):
    _fastmlp_activation(est.activation)
    if est.solver not in ("sgd", "adam", "lbfgs"):
        raise ValueError(f"solver must be 'lbfgs', 'sgd' or 'adam'; got {est.solver!r}")
    if est.learning_rate not in ("constant", "invscaling", "adaptive"):
        raise ValueError("learning_rate must be 'constant', 'invscaling' or 'adaptive'; got "
                         f"{est.learning_rate!r}")
    checks = [
        ("alpha", est.alpha, lambda v: _is_real(v) and 0 <= v < np.inf, "a number >= 0"),
        ("learning_rate_init", est.learning_rate_init, lambda v: _is_real(v) and 0 < v < np.inf,
         "a number > 0"),
        ("power_t", est.power_t, lambda v: _is_real(v) and 0 <= v < np.inf, "a number >= 0"),
        ("max_iter", est.max_iter, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        ("tol", est.tol, lambda v: _is_real(v) and 0 <= v < np.inf, "a number >= 0"),
        ("momentum", est.momentum, lambda v: _is_real(v) and 0 <= v <= 1,
         "a number in [0, 1]"),
        ("validation_fraction", est.validation_fraction,
         lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
        ("beta_1", est.beta_1, lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
        ("beta_2", est.beta_2, lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
        ("epsilon", est.epsilon, lambda v: _is_real(v) and 0 < v < np.inf, "a number > 0"),
        ("n_iter_no_change", est.n_iter_no_change,
         lambda v: (_is_int(v) and v >= 1) or (_is_real(v) and v == np.inf),
         "an int >= 1 or np.inf"),
        ("max_fun", est.max_fun, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    ]
    for name, value, ok, what in checks:
        if not ok(value):
            raise ValueError(f"{name} must be {what}; got {value!r}")
    if est.early_stopping and est.validation_fraction == 0:
        raise ValueError("validation_fraction must be > 0 with early_stopping=True (the "
                         "share of the data set aside to score each iteration); got 0")
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        if not isinstance(getattr(est, name), (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False; got {getattr(est, name)!r}")
    if not (isinstance(est.verbose, (bool, np.bool_)) or (_is_int(est.verbose) and est.verbose >= 0)):
        raise ValueError(f"verbose must be True/False or an int >= 0; got {est.verbose!r}")
    if not (est.batch_size == "auto" or _is_int(est.batch_size)):
        raise ValueError(f"batch_size must be 'auto' or an int >= 1; got {est.batch_size!r}")
    if _is_int(est.batch_size) and est.batch_size < 1:
        raise ValueError(f"batch_size must be 'auto' or an int >= 1; got {est.batch_size!r}")
    if not isinstance(est.device, str) or est.device.strip().lower() not in _DEVICES:
        raise ValueError(f"device must be one of {list(_DEVICES)}; got {est.device!r}")
    if not (isinstance(est.dtype, str) and est.dtype == "auto"):
        try:
            ok = np.dtype(est.dtype) in (np.dtype(np.float32), np.dtype(np.float64))
        except TypeError:
            ok = False
        if not ok or est.dtype is None:
            raise ValueError(f"dtype must be 'auto', 'float32' or 'float64'; got {est.dtype!r}")
    if est.distributed is not None:
        _distributed.strategy(est.distributed)  # "mpi" or fastmlp.distributed.MPI(...)
    return check_hidden_layer_sizes(est.hidden_layer_sizes)
