"""What MLPClassifier and MLPRegressor share: their parameters, the model they train, the
fit driver (which calls the solvers of ``_sklearn_solvers``), the fitted attributes, and
pickling."""

from __future__ import annotations

import threading
from types import FunctionType
from typing import Any, Literal, Optional, Sequence, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike

from . import distributed as _distributed
from ._sklearn_compat import (BaseEstimator, _check_sample_weight, _validate_data,
                              check_is_fitted, check_random_state)
from ._sklearn_params import _fastmlp_activation, check_params
from ._sklearn_solvers import _Solvers
from ._typing import Device, Inputs
from .distributed import MPI
from ._validation import check_targets
from .errors import DivergenceError
from .model import MLP
from .optim import SGD, Adam
from .saving import from_bytes, to_bytes
from .sparse import check_sparse_X, issparse

#: held by a push of coefs_ / intercepts_ into a model, and by a fit while it starts and
#: ends (so that no push of lists older than the fit's weights lands during or after it)
_PUSH = threading.Lock()


def _check_weight_list(name, arrays, n_layers):
    """coefs_ / intercepts_ is a list (or tuple) of one array per layer."""
    if not isinstance(arrays, (list, tuple)):
        raise ValueError(f"{name} must be a list of {n_layers} arrays, one per layer; got "
                         f"{type(arrays).__name__}")
    if len(arrays) != n_layers:
        raise ValueError(f"{name} must be a list of {n_layers} arrays, one per layer; got "
                         + ("an empty list" if not arrays else f"{len(arrays)}"))


def _checked_weight(name, i, a, shape, dtype):
    """Item i of coefs_ / intercepts_ as an array of `dtype`: real numbers of `shape`."""
    what = (f"layer {i + 1}'s weights, (n_in, n_out)" if name == "coefs_"
            else f"layer {i + 1}'s biases")
    expected = f"{name}[{i}] must be an array of real numbers of shape {shape} ({what})"
    if a is None or isinstance(a, (str, bytes)):
        raise ValueError(f"{expected}; got {a!r}")
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(f"{expected}; got a {type(a).__name__} that is no array "
                         f"({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{expected}; got an array of dtype {arr.dtype}")
    if arr.shape != shape:
        found = f"the scalar {a!r}" if arr.ndim == 0 else f"an array of shape {arr.shape}"
        raise ValueError(f"{name}[{i}] must have shape {shape} ({what}); got {found}")
    return arr.astype(dtype, copy=False)


#: the estimator's own class in the methods that return the estimator
_Est = TypeVar("_Est", bound="_BaseMLP")


class _BaseMLP(_Solvers, BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the model, fit, pickling."""

    def __init__(self, hidden_layer_sizes: Union[int, Sequence[int]] = (100,),
                 activation: str = "relu", *, solver: Literal["sgd", "adam", "lbfgs"] = "adam",
                 alpha: float = 0.0001, batch_size: Union[int, Literal["auto"]] = "auto",
                 learning_rate: Literal["constant", "invscaling", "adaptive"] = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 device: Device = "auto", dtype: Literal["auto", "float32", "float64"] = "auto",
                 distributed: Union[str, MPI, None] = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.dtype = dtype
        self.distributed = distributed

    # ------------------------------------------------------------------------------------
    # parameters

    def _check_params(self):
        """Check every parameter (fastmlp._sklearn_params); returns the hidden sizes."""
        return check_params(self)

    # ------------------------------------------------------------------------------------
    # the model

    def _grad_scale(self):
        """fastmlp's loss gradient divided by scikit-learn's (constant for a given problem)."""
        return 1.0

    def _model_dtype(self, X):
        if isinstance(self.dtype, str) and self.dtype == "auto":  # as scikit-learn computes:
            # in X's dtype, but lbfgs (SciPy's) trains float64 weights
            return "float32" if X.dtype == np.float32 and self.solver != "lbfgs" else "float64"
        return np.dtype(self.dtype).name

    def _new_optimizer(self):
        c = self._grad_scale()
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init / c, momentum=float(self.momentum),
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return Adam(lr=self.learning_rate_init, beta1=float(self.beta_1),
                    beta2=float(self.beta_2), eps=float(self.epsilon) * c, decoupled=False)

    def _new_model(self, n_features, hidden, dtype, seed):
        return MLP([n_features, *hidden, self.n_outputs_],
                   activation=_fastmlp_activation(self.activation), output="identity",
                   loss=self._loss_name(), optimizer=self._new_optimizer(), device=self.device,
                   dtype=dtype, seed=seed)

    def _initialize(self, X, hidden):
        """First fit: fresh model and training records (as scikit-learn's _initialize),
        initialised as scikit-learn does, from the same draws of random_state: per layer,
        W and b uniform in +-sqrt(6 / (fan_in + fan_out)) (2 instead of 6 for logistic)."""
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._out_activation()
        # the model's own seed serves nothing here (the estimator shuffles, and initialises
        # from random_state below), so it takes no draw from random_state
        self.model_ = self._new_model(X.shape[1], hidden, self._model_dtype(X), 0)
        sizes = self.model_.sizes
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            W = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b = self._random_state.uniform(-bound, bound, fan_out)
            weights += [W.T, b]
        self.model_.set_weights(weights)
        self.n_iter_ = 0
        self.t_ = 0
        if self.solver != "lbfgs":  # as scikit-learn: lbfgs has none of these
            self._init_stochastic_records()

    def _init_stochastic_records(self):
        """The records of the stochastic solvers (first fit; or a warm start after lbfgs)."""
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self._best_weights = self.model_.get_weights()

    def _check_architecture(self, hidden):
        """warm_start / partial_fit continue the model: its shape must not have changed."""
        sizes = self.model_.sizes
        dense = [layer for layer in self.model_.layers if hasattr(layer, "out_features")]
        current = [layer.out_features for layer in dense[:-1]]
        if current != hidden or sizes[-1] != self.n_outputs_:
            raise ValueError(
                f"warm_start / partial_fit continue the fitted network ({sizes}); "
                f"hidden_layer_sizes is now {hidden} and the targets need {self.n_outputs_} "
                "outputs: fit a new estimator (warm_start=False) to change the architecture"
            )
        act = _fastmlp_activation(self.activation)
        if dense[:-1] and dense[0].activation != act:
            raise ValueError(f"warm_start / partial_fit: activation changed from "
                             f"{dense[0].activation!r} to {act!r}; fit a new estimator")

    def _restart_optimizer(self, hidden):
        """A non-incremental fit starts a fresh optimizer (as scikit-learn) on the same
        weights, in the same model (so that arrays of coefs_ held from before see the new
        fit, as scikit-learn's, which it trains in place) -- unless `device` now names
        another device, where the weights move to a new model."""
        if self.device in ("auto", self.model_.device):
            self.model_.compile(optimizer=self._new_optimizer())
            return
        weights = self.model_.get_weights()
        self.model_ = self._new_model(self.model_.n_features, hidden, self.model_.dtype.name, 0)
        self.model_.set_weights(weights)

    # ------------------------------------------------------------------------------------
    # fitting

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self._check_params()
        if self.early_stopping and incremental and self.solver != "lbfgs":
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not self.__sklearn_is_fitted__() or (not self.warm_start and not incremental)
        X, T = self._validate_input(X, y, incremental, reset=first_pass)
        w = self._check_sample_weight(sample_weight, X)
        # MPI: this fit is one process of a data-parallel job (fastmlp.distributed)
        dist = None if self.distributed is None else _distributed.connect(self.distributed)
        self._random_state = check_random_state(self.random_state)
        if dist is not None:  # every process draws what rank 0 draws
            self._random_state = dist.agreed_random_state(self.random_state, self._random_state)
        if first_pass:
            self._initialize(X, hidden)
            self._learning_rate = float(self.learning_rate_init)
        else:
            self._check_architecture(hidden)
            if not incremental:
                self._restart_optimizer(hidden)
                self._learning_rate = float(self.learning_rate_init)
        model = self.model_
        X = check_sparse_X(X, dtype=model.dtype) if issparse(X) else np.ascontiguousarray(X, dtype=model.dtype)
        # the targets as the loss kernel takes them (int64 labels, or (n, outputs) floats)
        T, _ = check_targets(T, model.loss, model.n_outputs, X.shape[0], model.dtype)
        self._loss_constant = self._constant_of_loss(T, w)
        with _PUSH:  # a push of coefs_ by another thread's predict ends first (see model_)
            self.__dict__["_training"] = True  # then the lists wait for this fit
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, T, w, dist)
            else:
                self._fit_stochastic(X, T, w, incremental, dist)
        except FloatingPointError as exc:  # fastmlp's DivergenceError, or NumPy's
            raise DivergenceError(
                "Solver produced non-finite parameter weights. The input data may contain large "
                f"values and need to be preprocessed. ({exc})") from None
        finally:
            with _PUSH:  # the lists get the trained weights before they count again
                self._pull_weights()
                del self.__dict__["_training"]
        if not model._finite_parameters():  # as scikit-learn: checked once, at the end
            raise DivergenceError(
                "Solver produced non-finite parameter weights. The input data may contain large "
                "values and need to be preprocessed.")
        return self

    def _check_sample_weight(self, sample_weight, X):
        """scikit-learn's check (shape, numbers), plus: finite and >= 0."""
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("sample_weight must hold finite numbers >= 0; got values from "
                             f"{np.nanmin(w):g} to {np.nanmax(w):g}")
        return w

    def _constant_of_loss(self, T, w):
        """What scikit-learn's reported loss adds to fastmlp's, over the whole set (0 but
        for poisson)."""
        per_sample = self._constant_per_sample(T)
        return 0.0 if per_sample is None else float(np.average(per_sample, weights=w))

    def _constant_per_sample(self, T):
        return None

    def fit(self: _Est, X: Inputs, y: ArrayLike,
            sample_weight: Optional[ArrayLike] = None) -> _Est:
        """Fit the model to data matrix X (dense or SciPy sparse) and targets y; returns self.

        sample_weight (n_samples,) weights each sample's loss as in scikit-learn: every
        batch's loss is the weighted mean, and the L2 term is divided by the batch's weight
        sum. Trains for up to ``max_iter`` iterations (epochs; L-BFGS iterations for
        solver='lbfgs'), stopping early as scikit-learn's MLP does; warns with a
        ConvergenceWarning when ``max_iter`` is reached first.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _partial_fit_available(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # ------------------------------------------------------------------------------------
    # prediction helpers

    def _check_X(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                              accept_sparse=["csr", "csc"])

    def __sklearn_is_fitted__(self):
        return self.__dict__.get("_model") is not None

    # ------------------------------------------------------------------------------------
    # the trained network: model_, and coefs_ / intercepts_ as scikit-learn's lists
    #
    # scikit-learn's coefs_ and intercepts_ are lists of arrays that its training updates in
    # place and its forward pass reads: an edit of an array, an item or the whole list
    # changes the network, and arrays held from before see later training. Here the network
    # is model_ (its weights in one flat vector, maybe on a GPU), and the lists, once read,
    # are pushed into it wherever it is used next (model_, so predict, fit, pickling) and
    # refreshed in place after each training. A fit in progress uses its own weights (the
    # lists wait), as do other threads' predictions meanwhile.

    @property
    def model_(self):
        """The trained ``fastmlp.Sequential``, with any edit of coefs_ / intercepts_."""
        model = self.__dict__.get("_model")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'model_'")
        self._push_weights(model)
        return model

    @model_.setter
    def model_(self, model):
        self.__dict__["_model"] = model
        self.__dict__["_coefs"] = self.__dict__["_intercepts"] = None  # lists of the new one

    def _weight_lists(self):
        """(coefs_, intercepts_): made from the model on first read, then kept."""
        model = self.__dict__.get("_model")
        if model is None:
            check_is_fitted(self)
        if self.__dict__.get("_coefs") is None:
            weights = model.get_weights()
            self.__dict__["_coefs"] = [np.ascontiguousarray(W.T) for W in weights[0::2]]
            self.__dict__["_intercepts"] = list(weights[1::2])
        return self.__dict__["_coefs"], self.__dict__["_intercepts"]

    def _push_weights(self, model):
        """The lists' values into the model, where they were read and differ from it (not
        while a fit trains it)."""
        if self.__dict__.get("_coefs") is None:
            return
        with _PUSH:
            coefs, intercepts = self.__dict__.get("_coefs"), self.__dict__.get("_intercepts")
            if coefs is None or self.__dict__.get("_training"):
                return
            weights = model.get_weights()
            new, changed = list(weights), False
            for name, arrays, at in (("coefs_", coefs, 0), ("intercepts_", intercepts, 1)):
                old = weights[at::2]
                _check_weight_list(name, arrays, len(old))
                for i, (a, was) in enumerate(zip(arrays, old)):
                    a = _checked_weight(name, i, a, was.shape[::-1] if at == 0 else was.shape,
                                        model.dtype)
                    a = a.T if at == 0 else a
                    if np.array_equal(a, was, equal_nan=True):
                        continue
                    if not np.isfinite(a).all():
                        raise ValueError(f"{name}[{i}] holds NaN or infinite values")
                    new[at + 2 * i], changed = a, True
            if changed:
                model.set_weights(new)

    def _pull_weights(self):
        """After training: the model's weights into the lists read before, in place (arrays
        held from before see them, as scikit-learn's, which it trains in place)."""
        coefs, intercepts = self.__dict__.get("_coefs"), self.__dict__.get("_intercepts")
        if coefs is None:
            return
        weights = self.__dict__["_model"].get_weights()
        for arrays, new in ((coefs, [W.T for W in weights[0::2]]), (intercepts, weights[1::2])):
            for i, value in enumerate(new):
                a = arrays[i]
                if (isinstance(a, np.ndarray) and a.shape == value.shape and a.flags.writeable
                        and a.dtype == value.dtype):
                    a[...] = value
                else:
                    arrays[i] = np.ascontiguousarray(value)

    def _set_weight_list(self, name, arrays):
        if self.__dict__.get("_model") is None:
            raise AttributeError(
                f"{name} can be set on a fitted {type(self).__name__} only (it goes into the "
                f"trained network): call fit or partial_fit first")
        self._weight_lists()
        _check_weight_list(name, arrays, len(self.__dict__["_model"].get_weights()) // 2)
        key = "_" + name[:-1]
        before, self.__dict__[key] = self.__dict__[key], arrays
        try:
            self._push_weights(self.__dict__["_model"])  # checked now, as well as when used
        except ValueError:
            self.__dict__[key] = before  # a refused list leaves the one before in place
            raise

    @property
    def coefs_(self):
        """The weight matrices, a list of (n_in, n_out) arrays (scikit-learn's layout: W.T).
        As in scikit-learn, an edit of an array (``est.coefs_[0][:] = 0``), of an item or of
        the whole list changes the network, and arrays held from before see later training
        (refreshed when a fit ends)."""
        return self._weight_lists()[0]

    @coefs_.setter
    def coefs_(self, coefs):
        self._set_weight_list("coefs_", coefs)

    @property
    def intercepts_(self):
        """The bias vectors, one per layer (a list, as coefs_)."""
        return self._weight_lists()[1]

    @intercepts_.setter
    def intercepts_(self, intercepts):
        self._set_weight_list("intercepts_", intercepts)

    # ------------------------------------------------------------------------------------
    # pickling: the model travels as the bytes of a model file

    def to_onnx(self, path, dtype=None):
        """Export the fitted estimator to an ONNX file whose output is predict_proba's
        (classifier) or predict's (regressor); returns the ModelProto (fastmlp.onnx_io)."""
        from .onnx_io import estimator_to_onnx

        return estimator_to_onnx(self, path, dtype)

    def __getstate__(self):
        model = self.model_ if self.__sklearn_is_fitted__() else None  # with coefs_'s edits
        state = dict(super().__getstate__())
        for name in ("_model", "_coefs", "_intercepts", "_training"):
            state.pop(name, None)
        if model is not None:
            state["_model_file"] = to_bytes(model)
        return state

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_model_file", None)
        super().__setstate__(state)
        if data is not None:
            self.model_ = from_bytes(data, device=self.device)


# the estimators' shared methods are named as a user calls them in the errors of a call
# ("estimator.fit() got an unexpected keyword argument ...", not "_BaseMLP.fit() ...")
for _name, _method in vars(_BaseMLP).items():
    if isinstance(_method, FunctionType) and not _name.startswith("_"):
        _method.__qualname__ = f"estimator.{_name}"
del _name, _method
