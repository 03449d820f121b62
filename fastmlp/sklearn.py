"""scikit-learn estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

They follow scikit-learn's estimator conventions (``get_params``/``set_params``, ``fit``
returns self, fitted attributes ending in ``_``, ``clone``, pickling, ``Pipeline``,
``GridSearchCV``) and pass ``sklearn.utils.estimator_checks.check_estimator``. Their
parameters are those of ``sklearn.neural_network.MLPClassifier``/``MLPRegressor`` where
they mean the same thing, plus ``device`` and ``dtype``; training runs on fastmlp's
kernels, one ``model.fit(..., epochs=1)`` per iteration, with scikit-learn's stopping rules
(``tol``, ``n_iter_no_change``, ``early_stopping``) applied between iterations.

scikit-learn is an optional dependency (``pip install 'fastmlp[sklearn]'``): ``import
fastmlp`` works without it, and only these estimators need it.

How the parameters map onto fastmlp
-----------------------------------
- ``activation``: scikit-learn's names (identity, logistic, tanh, relu) or fastmlp's
  (sigmoid = logistic, leaky_relu, elu, gelu, softplus) for every hidden layer.
- Outputs as in scikit-learn: softmax (cross-entropy) for multiclass problems, one
  logistic unit for binary ones, one logistic unit per label for multilabel indicator
  targets, identity (squared error) for regression, any number of outputs.
- ``solver``: 'sgd' is ``fastmlp.SGD`` (``momentum``, ``nesterovs_momentum``; with
  ``learning_rate`` 'constant', 'invscaling' or 'adaptive' and ``power_t`` as in
  scikit-learn), 'adam' is ``fastmlp.Adam`` (``beta_1``, ``beta_2``, ``epsilon``). 'lbfgs'
  is not available.
- ``alpha`` (L2 penalty): scikit-learn minimises ``loss + alpha * ||W||^2 / (2 * batch)``,
  whose gradient adds ``alpha * W / batch``. fastmlp applies it as coupled weight decay
  ``alpha / batch_size`` (scaled like the loss, see below; ``decoupled=False`` for Adam), so
  the update is scikit-learn's, with one difference: fastmlp decays the biases too, where
  scikit-learn leaves them unpenalised.
- Losses: fastmlp's are means over the batch *and the outputs*; scikit-learn's gradients
  are means over the batch only (and its squared error is halved). The estimators rescale
  the SGD learning rate, the weight decay and Adam's epsilon by that constant factor so
  that the updates equal scikit-learn's, and ``loss_curve_`` reports scikit-learn's loss
  (half the squared error for regression; summed over labels for multilabel problems),
  with the L2 term added.
- Momentum follows PyTorch's formulation (the buffer accumulates gradients; the current
  learning rate scales the step). With a constant learning rate that is exactly
  scikit-learn's update; with 'invscaling' or 'adaptive' the past steps are rescaled when
  the rate changes, where scikit-learn keeps them at the rate they were taken with.
- ``batch_size``: 'auto' is ``min(200, n_samples)``; larger values are clipped with a
  warning, as in scikit-learn.
- A non-incremental ``fit`` with ``warm_start=True`` keeps the weights and starts a fresh
  optimizer (as scikit-learn does); ``partial_fit`` keeps the optimizer state too.
- Initialisation is fastmlp's (He normal before relu-like activations, Glorot uniform
  otherwise), seeded from ``random_state``.
- ``distributed``: None, or "mpi" to train data-parallel as one process of ``mpiexec -n
  P`` (see ``fastmlp.distributed``; every process passes the same X, y; ``batch_size`` is
  per process, the L2 penalty and the iteration count follow the global batch P *
  batch_size; the early-stopping score is rank 0's).
- ``device``: "auto", "cpu" or "reference"; ``dtype``: "auto" (float32 for float32 X,
  float64 otherwise: float32 input stays float32 all the way through), "float32" or
  "float64".
- Attributes as scikit-learn's: ``classes_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
  ``validation_scores_``, ``best_validation_score_``, ``n_iter_``, ``t_``,
  ``n_features_in_``, ``coefs_`` (a list of (n_in, n_out) arrays, i.e. W.T),
  ``intercepts_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``; and ``model_``, the
  trained ``fastmlp.Sequential`` (save it with ``est.model_.save(path)``).
- Sparse input is not supported (a TypeError says so); ``sample_weight`` is not either.

Pickling stores the model as the bytes of a fastmlp model file (config, weights,
optimizer state), never compiled code or device arrays; unpickling rebuilds it on the
estimator's ``device``. All of ``check_estimator``'s checks pass; none is skipped.
"""

import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastmlp.MLPClassifier and fastmlp.MLPRegressor need scikit-learn: "
        "pip install 'fastmlp[sklearn]' (or pip install scikit-learn)"
    ) from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from . import distributed as _distributed
from .io import from_bytes, to_bytes
from .kernels.codes import ACTIVATIONS
from .model import MLP
from .optim import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

_SKLEARN_ACTIVATIONS = {"logistic": "sigmoid"}
_DEVICES = ("auto", "cpu", "reference", "cuda")


def _fastmlp_activation(name):
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


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the epoch loop, pickling."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, device="auto",
                 dtype="auto", distributed=None):
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
        self.device = device
        self.dtype = dtype
        self.distributed = distributed

    # ------------------------------------------------------------------------------------
    # parameters

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if _is_int(sizes):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints; got "
                            f"{self.hidden_layer_sizes!r}") from None
        if not all(_is_int(s) for s in sizes):
            raise TypeError(f"hidden_layer_sizes must hold ints; got {self.hidden_layer_sizes!r}")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _check_params(self):
        """Check every parameter (scikit-learn style: in fit, not in __init__)."""
        _fastmlp_activation(self.activation)
        if self.solver not in ("sgd", "adam"):
            extra = " (fastmlp has no L-BFGS solver)" if self.solver == "lbfgs" else ""
            raise ValueError(f"solver must be 'sgd' or 'adam'; got {self.solver!r}{extra}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError("learning_rate must be 'constant', 'invscaling' or 'adaptive'; got "
                             f"{self.learning_rate!r}")
        checks = [
            ("alpha", self.alpha, lambda v: _is_real(v) and 0 <= v < np.inf, "a number >= 0"),
            ("learning_rate_init", self.learning_rate_init, lambda v: _is_real(v) and 0 < v < np.inf,
             "a number > 0"),
            ("power_t", self.power_t, lambda v: _is_real(v) and 0 <= v < np.inf, "a number >= 0"),
            ("max_iter", self.max_iter, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
            ("tol", self.tol, lambda v: _is_real(v) and 0 <= v < np.inf, "a number >= 0"),
            ("momentum", self.momentum, lambda v: _is_real(v) and 0 <= v < 1,
             "a number in [0, 1)"),
            ("validation_fraction", self.validation_fraction,
             lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
            ("beta_1", self.beta_1, lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
            ("beta_2", self.beta_2, lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
            ("epsilon", self.epsilon, lambda v: _is_real(v) and 0 < v < np.inf, "a number > 0"),
            ("n_iter_no_change", self.n_iter_no_change, lambda v: _is_int(v) and v >= 1,
             "an int >= 1"),
        ]
        for name, value, ok, what in checks:
            if not ok(value):
                raise ValueError(f"{name} must be {what}; got {value!r}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if not (isinstance(self.verbose, (bool, np.bool_)) or (_is_int(self.verbose) and self.verbose >= 0)):
            raise ValueError(f"verbose must be True/False or an int >= 0; got {self.verbose!r}")
        if not (self.batch_size == "auto" or _is_int(self.batch_size)):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1; got {self.batch_size!r}")
        if _is_int(self.batch_size) and self.batch_size < 1:
            raise ValueError(f"batch_size must be 'auto' or an int >= 1; got {self.batch_size!r}")
        if not isinstance(self.device, str) or self.device.strip().lower() not in _DEVICES:
            raise ValueError(f"device must be one of {list(_DEVICES)}; got {self.device!r}")
        if not (isinstance(self.dtype, str) and self.dtype == "auto"):
            try:
                ok = np.dtype(self.dtype) in (np.dtype(np.float32), np.dtype(np.float64))
            except TypeError:
                ok = False
            if not ok or self.dtype is None:
                raise ValueError(f"dtype must be 'auto', 'float32' or 'float64'; got {self.dtype!r}")
        if self.distributed is not None:
            _distributed.strategy(self.distributed)  # "mpi" or fastmlp.distributed.MPI(...)
        return self._hidden_sizes()

    # ------------------------------------------------------------------------------------
    # the model

    def _grad_scale(self):
        """fastmlp's loss gradient divided by scikit-learn's (constant for a given problem)."""
        return 1.0

    def _model_dtype(self, X):
        if isinstance(self.dtype, str) and self.dtype == "auto":
            return "float32" if X.dtype == np.float32 else "float64"
        return np.dtype(self.dtype).name

    def _new_model(self, n_features, hidden, dtype, seed):
        c = self._grad_scale()
        if self.solver == "sgd":
            optimizer = SGD(lr=self.learning_rate_init / c, momentum=float(self.momentum),
                            nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        else:
            optimizer = Adam(lr=self.learning_rate_init, beta1=float(self.beta_1),
                             beta2=float(self.beta_2), eps=float(self.epsilon) * c,
                             decoupled=False)
        return MLP([n_features, *hidden, self.n_outputs_],
                   activation=_fastmlp_activation(self.activation), output="identity",
                   loss=self._loss_name(), optimizer=optimizer, device=self.device,
                   dtype=dtype, seed=seed)

    def _initialize(self, X, hidden):
        """First fit: fresh model and training records (as scikit-learn's _initialize)."""
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._out_activation()
        self.model_ = self._new_model(X.shape[1], hidden, self._model_dtype(X), seed)
        self.n_iter_ = 0
        self.t_ = 0
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
        """A non-incremental fit starts a fresh optimizer (as scikit-learn): same weights."""
        weights = self.model_.get_weights()
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        self.model_ = self._new_model(self.model_.n_features, hidden, self.model_.dtype.name, seed)
        self.model_.set_weights(weights)

    # ------------------------------------------------------------------------------------
    # fitting

    def _fit(self, X, y, incremental):
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, T = self._validate_input(X, y, incremental, reset=first_pass)
        self._random_state = check_random_state(self.random_state)
        if self.distributed is not None:  # MPI: every process draws what rank 0 draws
            self._random_state = _distributed.agreed_random_state(self.random_state, self._random_state)
        if first_pass:
            self._initialize(X, hidden)
            self._learning_rate = float(self.learning_rate_init)
        else:
            self._check_architecture(hidden)
            if not incremental:
                self._restart_optimizer(hidden)
                self._learning_rate = float(self.learning_rate_init)
        model = self.model_
        X = np.ascontiguousarray(X, dtype=model.dtype)
        T = np.ascontiguousarray(T)
        self._fit_stochastic(X, T, incremental)
        return self

    def _fit_stochastic(self, X, T, incremental):
        model = self.model_
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = T if self._stratify() else None
            X_train, X_val, T_train, T_val = train_test_split(
                X, T, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
        else:
            X_train, T_train, X_val, T_val = X, T, None, None
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch = int(np.clip(self.batch_size, 1, n))
        # with distributed="mpi", batch_size is per process: the steps take P * batch samples
        processes = 1 if self.distributed is None else _distributed.size()
        n_batches = -(-n // (batch * processes))
        c = self._grad_scale()
        opt = model.optimizer
        opt.weight_decay = c * float(self.alpha) / min(batch * processes, n)
        if self.solver == "sgd":
            opt.lr = self._learning_rate / c

        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                history = model.fit(X_train, T_train, epochs=1, batch_size=batch,
                                    shuffle=bool(self.shuffle), verbose=0,
                                    distributed=self.distributed)
                loss = self._sklearn_loss(history.history["loss"][-1])
                if self.alpha:
                    sq = sum(float(np.sum(np.square(W, dtype=np.float64)))
                             for W in model.get_weights()[0::2])
                    loss += 0.5 * float(self.alpha) * sq * n_batches / n
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += n
                self.loss_curve_.append(loss)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, loss))
                self._update_no_improvement_count(early_stopping, X_val, T_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._learning_rate = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                    opt.lr = self._learning_rate / c
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self.solver == "sgd" and self.learning_rate == "adaptive" \
                            and self._learning_rate > 1e-6:
                        self._learning_rate /= 5.0
                        opt.lr = self._learning_rate / c
                        self._no_improvement_count = 0
                        if self.verbose:
                            print(msg + " Setting learning rate to %f" % self._learning_rate)
                    else:
                        if self.verbose:
                            print(msg + (" Learning rate too small." if self.learning_rate == "adaptive"
                                         and self.solver == "sgd" else "") + " Stopping.")
                        break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        except FloatingPointError as exc:
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                f"large values and need to be preprocessed. ({exc})"
            ) from None
        if early_stopping:
            model.set_weights(self._best_weights)

    def _update_no_improvement_count(self, early_stopping, X_val, T_val):
        if early_stopping:
            score = self._validation_score(X_val, T_val)
            if self.distributed is not None:  # MPI: rank 0's score decides everywhere
                score = _distributed.broadcast(score)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.model_.get_weights()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def fit(self, X, y):
        """Fit the model to data matrix X and targets y; returns self.

        Trains for up to ``max_iter`` iterations (epochs), stopping early as scikit-learn's
        MLP does; warns with a ConvergenceWarning when ``max_iter`` is reached first.
        """
        return self._fit(X, y, incremental=False)

    # ------------------------------------------------------------------------------------
    # prediction helpers

    def _check_X(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                              accept_sparse=False)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    @property
    def coefs_(self):
        """The weight matrices, a list of (n_in, n_out) arrays (scikit-learn's layout: W.T)."""
        check_is_fitted(self)
        return [np.ascontiguousarray(W.T) for W in self.model_.get_weights()[0::2]]

    @coefs_.setter
    def coefs_(self, coefs):
        check_is_fitted(self)
        weights = self.model_.get_weights()
        weights[0::2] = [np.asarray(W).T for W in coefs]
        self.model_.set_weights(weights)

    @property
    def intercepts_(self):
        """The bias vectors, one per layer."""
        check_is_fitted(self)
        return self.model_.get_weights()[1::2]

    @intercepts_.setter
    def intercepts_(self, intercepts):
        check_is_fitted(self)
        weights = self.model_.get_weights()
        weights[1::2] = [np.asarray(b) for b in intercepts]
        self.model_.set_weights(weights)

    # ------------------------------------------------------------------------------------
    # pickling: the model travels as the bytes of a model file

    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            state["_model_file"] = to_bytes(model)
        return state

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_model_file", None)
        super().__setstate__(state)
        if data is not None:
            self.model_ = from_bytes(data, device=self.device)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier on fastmlp's kernels, with scikit-learn's API.

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` (without 'lbfgs',
    ``max_fun``), plus ``device`` ("auto", "cpu", "reference") and ``dtype`` ("auto":
    float32 for float32 X, float64 otherwise; "float32"; "float64"). See the module
    docstring for how each maps onto fastmlp.

    Labels may be any labels scikit-learn accepts (ints, strings...): ``classes_`` holds
    them sorted; a multilabel indicator matrix (n_samples, n_labels) trains one logistic
    output per label. Binary problems use one logistic output (``out_activation_`` is
    'logistic'), multiclass ones a softmax ('softmax').

    Examples
    --------
    >>> from fastmlp import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
    >>> clf.fit(X, y).score(X_test, y_test)          # doctest: +SKIP
    """

    def _loss_name(self):
        return "cross_entropy" if self.out_activation_ == "softmax" else "binary_cross_entropy"

    def _out_activation(self):
        return "logistic" if self._multilabel or len(self.classes_) == 2 else "softmax"

    def _grad_scale(self):
        # multilabel: fastmlp's binary cross-entropy is a mean over labels too
        return 1.0 / self.n_outputs_ if self._multilabel else 1.0

    def _stratify(self):
        return self.n_outputs_ == 1  # as scikit-learn: only binary problems are stratified

    def _sklearn_loss(self, loss):
        return loss * self.n_outputs_ if self._multilabel else loss

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                              multi_output=True, accept_sparse=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y) == "multilabel-indicator"
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._multilabel = multilabel
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
            else:
                self.classes_ = unique_labels(y)
            self._label_dtype = y.dtype
        else:
            if multilabel != self._multilabel:
                raise ValueError("the targets changed between multilabel and single-label since "
                                 "the last fit")
            if multilabel:
                if y.shape[1] != len(self.classes_):
                    raise ValueError(f"y has {y.shape[1]} labels; the model was fitted with "
                                     f"{len(self.classes_)}")
            else:
                classes = unique_labels(y)
                if self.warm_start and not incremental:
                    if set(classes) != set(self.classes_):
                        raise ValueError(
                            "warm_start can only be used where `y` has the same classes as in "
                            f"the previous call to fit. Previously got {self.classes_}, `y` has "
                            f"{classes}")
                elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                    raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                     f"has {self.classes_}. 'y' has {classes}.")
        if multilabel:
            self.n_outputs_ = y.shape[1]
            return X, y.astype(np.float64 if X.dtype == np.float64 else np.float32)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {self.classes_[0]!r} (1 class)")
        self.n_outputs_ = 1 if len(self.classes_) == 2 else len(self.classes_)
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def partial_fit(self, X, y, classes=None):
        """One iteration (epoch) over (X, y); `classes` (all the labels) on the first call."""
        if classes is not None:
            classes = unique_labels(classes)
            if hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        elif not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not hasattr(self, "classes_"):
            y_arr = np.asarray(y) if not hasattr(y, "iloc") else y.to_numpy()
            if y_arr.ndim == 2 and y_arr.shape[1] > 1 and type_of_target(y_arr) == "multilabel-indicator":
                self._multilabel = True
                self.classes_ = np.arange(y_arr.shape[1])
                self._label_dtype = y_arr.dtype
            else:
                self._multilabel = False
                self.classes_ = classes
                self._label_dtype = np.asarray(classes).dtype
        return self._fit(X, y, incremental=True)

    def _validation_score(self, X_val, T_val):
        P = self._proba(X_val)
        if self._multilabel:
            return accuracy_score(T_val.astype(np.int64), (P > 0.5).astype(np.int64))
        return accuracy_score(T_val, np.argmax(P, axis=1))

    def _proba(self, X):
        P = self.model_.predict_proba(X)
        if not self._multilabel and self.n_outputs_ == 1:
            p = P[:, 0]
            return np.column_stack([1 - p, p])
        return P

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order
        (for multilabel targets: each label's probability, shape (n_samples, n_labels))."""
        return self._proba(self._check_X(X))

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)

    def predict(self, X):
        """Predicted labels (from ``classes_``); a 0/1 matrix for multilabel targets."""
        P = self.predict_proba(X)
        if self._multilabel:
            dtype = self._label_dtype if self._label_dtype.kind in "iub" else np.int64
            return (P > 0.5).astype(dtype)
        return self.classes_[np.argmax(P, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (squared error) on fastmlp's kernels, with
    scikit-learn's API.

    Parameters are those of ``sklearn.neural_network.MLPRegressor`` (squared error only;
    without 'lbfgs', ``max_fun``), plus ``device`` and ``dtype``; see the module docstring.
    y may have one column (predictions of shape (n_samples,)) or several (multi-output).

    Examples
    --------
    >>> from fastmlp import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=100, random_state=0)
    >>> reg.fit(X, y).score(X_test, y_test)          # doctest: +SKIP
    """

    def _loss_name(self):
        return "mse"

    def _out_activation(self):
        return "identity"

    def _grad_scale(self):
        # fastmlp's mse: mean over outputs of (z - t)^2; scikit-learn's gradient: (z - t)
        return 2.0 / self.n_outputs_

    def _stratify(self):
        return False

    def _sklearn_loss(self, loss):
        return loss / 2  # scikit-learn's squared error is halved

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                              multi_output=True, y_numeric=True, accept_sparse=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if hasattr(self, "model_") and not reset and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; the model was fitted with "
                             f"{self.n_outputs_}")
        self.n_outputs_ = n_outputs
        return X, y.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)

    def partial_fit(self, X, y):
        """One iteration (epoch) over (X, y), continuing from the current weights."""
        return self._fit(X, y, incremental=True)

    def _validation_score(self, X_val, T_val):
        return r2_score(T_val, self.model_.predict(X_val))

    def predict(self, X):
        """Predicted values: shape (n_samples,) for one output, (n_samples, n_outputs) else."""
        X = self._check_X(X)
        out = self.model_.predict(X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}
