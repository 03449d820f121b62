"""What fastmlp's estimators use of scikit-learn, imported in one place: a clear
ImportError when scikit-learn is absent, and stand-ins where a version lacks a name.
"""

import warnings

try:
    from scipy.special import xlogy  # noqa: F401 - the estimators' log loss
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastmlp.MLPClassifier and fastmlp.MLPRegressor need scikit-learn and SciPy "
        f"({exc}): pip install 'fastmlp[sklearn]' (or pip install scikit-learn scipy)"
    ) from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

try:  # the exact ConvergenceWarning of scikit-learn's lbfgs solver
    from sklearn.utils.optimize import _check_optimize_result
except ImportError:  # pragma: no cover - a future scikit-learn may move it
    def _check_optimize_result(solver, result, max_iter=None):
        n_iter = min(result.nit, max_iter) if max_iter is not None else result.nit
        if result.status != 0:
            warnings.warn(f"{solver} failed to converge after {n_iter} iteration(s) "
                          f"(status={result.status}):\n{result.message}\n", ConvergenceWarning)
        return n_iter

from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_sample_weight

try:  # scikit-learn >= 1.2: its parameter checks, and their error (a ValueError and a TypeError)
    from sklearn.utils._param_validation import (InvalidParameterError,
                                                 validate_parameter_constraints)
except ImportError:  # pragma: no cover - a future scikit-learn may move them
    class InvalidParameterError(ValueError, TypeError):
        """A bad parameter (scikit-learn's class of that name: both error types)."""

    validate_parameter_constraints = None
