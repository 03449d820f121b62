"""scikit-learn estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

Drop-ins for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (scikit-learn
1.9): every public parameter with its default (plus ``device``, ``dtype`` and
``distributed``), every
fitted attribute, ``fit(X, y, sample_weight=None)``, ``partial_fit`` (stochastic solvers
only), metadata routing (``set_fit_request(sample_weight=True)``...), the same warnings
and errors. They pass ``sklearn.utils.estimator_checks.check_estimator``.

From the same ``random_state`` they start from scikit-learn's initial weights (its draws,
in its order) and shuffle the batches in its order, so ``solver="lbfgs"`` gives
scikit-learn's weights to rounding (unless its line search meets a class probability below
2e-16, see the loss below), and 'sgd' and 'adam' follow its loss curve (exactly with
``alpha=0``; see the differences below). The arithmetic is fastmlp's kernels:

- 'sgd' and 'adam': the training set is put on the backend once per ``fit`` (not once per
  iteration), batches are gathered there, each step is the model's kernel sequence, and
  scikit-learn's stopping rules (``tol``, ``n_iter_no_change``, which may be ``np.inf``,
  ``early_stopping``) run between iterations. Small steps run on one BLAS thread.
- 'lbfgs': ``fastmlp.lbfgs`` -- the full-batch loss and gradient by the model's kernels
  over row chunks (memory does not grow with the data), steps by SciPy's L-BFGS-B with
  ``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``; ``n_iter_``, ``loss_``, the
  ConvergenceWarning as scikit-learn's. ``loss_curve_`` (one value per L-BFGS iteration)
  is an addition: scikit-learn sets none for lbfgs. ``t_`` stays 0, as in scikit-learn.

scikit-learn is an optional dependency (``pip install 'fastmlp[sklearn]'``, which brings
SciPy): ``import fastmlp`` works without it, and only these estimators need it.

How the parameters map onto fastmlp
-----------------------------------
- ``activation``: scikit-learn's names (identity, logistic, tanh, relu) or fastmlp's
  (sigmoid = logistic, leaky_relu, elu, gelu, softplus) for every hidden layer.
- Outputs as in scikit-learn: softmax (cross-entropy) for multiclass problems, one
  logistic unit for binary ones, one logistic unit per label for multilabel indicator
  targets, identity (squared error) or exp (``loss="poisson"``: half Poisson deviance,
  log link; fastmlp's ``loss="poisson"``) for regression, any number of outputs.
- ``solver``: 'sgd' is ``fastmlp.SGD`` (``momentum``, ``nesterovs_momentum``; with
  ``learning_rate`` 'constant', 'invscaling' or 'adaptive' and ``power_t`` as in
  scikit-learn), 'adam' is ``fastmlp.Adam`` (``beta_1``, ``beta_2``, ``epsilon``),
  'lbfgs' is ``fastmlp.fit_lbfgs``'s machinery (``max_fun``).
- ``sample_weight``: as scikit-learn >= 1.7: each batch's loss is the weighted mean and its
  L2 term is divided by the batch's weight sum; with ``early_stopping`` the weights are
  split with the data and weight the validation score.
- Losses: fastmlp's are means over the batch *and the outputs*; scikit-learn's gradients
  are means over the batch only (and its squared error is halved). The estimators rescale
  the SGD learning rate, the weight decay and Adam's epsilon by that constant factor so
  that the updates equal scikit-learn's, and ``loss_curve_`` reports scikit-learn's loss
  (half the squared error for regression; summed over labels for multilabel problems; the
  Poisson deviance with its constant term), with the L2 term added.
- ``batch_size``: 'auto' is ``min(200, n_samples)``; larger values are clipped with a
  warning, as in scikit-learn.
- A non-incremental ``fit`` with ``warm_start=True`` keeps the weights and starts a fresh
  optimizer (as scikit-learn does); ``partial_fit`` keeps the optimizer state too.
- Sparse X (SciPy matrices and arrays, any format): kept sparse, the first layer
  multiplies the CSR rows directly (see ``fastmlp.sparse``).
- A diverging fit raises ``fastmlp.DivergenceError``, a ValueError (scikit-learn's "Solver
  produced non-finite parameter weights...") and a FloatingPointError, with fastmlp's
  detail (where the loss became non-finite). With ``early_stopping=True`` it raises
  nothing, as in scikit-learn: the remaining iterations record a NaN loss and the
  validation score of NaN outputs (NaN for a regressor; for a classifier the score of the
  labels scikit-learn predicts for them, the first class), their steps skipped, and the
  fit ends on the best weights seen.
- ``device``: "auto", "cpu", "cuda" or "reference"; ``dtype``: "auto" (float32 for float32
  X with 'sgd' or 'adam', float64 otherwise, as scikit-learn computes: its lbfgs trains
  float64 weights), "float32" or "float64". Predictions come in the dtype of X's with the
  weights' (float64 X into a float32 model gives float64), as scikit-learn's.
- ``distributed``: None, "mpi" or ``fastmlp.distributed.MPI(...)``: the fit is one process
  of a data-parallel job (``mpiexec -n P python train.py``; see ``fastmlp.distributed``).
  Every process passes the same X, y (and sample_weight). ``batch_size`` is per process:
  a step takes a global batch of P * batch_size samples, each process computing the
  gradient of its consecutive slice, summed by one Allreduce. The random state is rank
  0's (an int ``random_state`` is shared as it is; otherwise rank 0 draws a seed), so
  the initial weights, the early-stopping split and every iteration's order are rank 0's;
  the weight decay and the sample weights' scaling are those of the global batch; the
  loss, ``loss_curve_``, ``n_iter_``, ``t_``, the validation score (each process predicts
  a part of the validation set, rank 0's score of the whole counts) and the stopping
  rules agree on every process. With an int ``random_state``, P processes with
  ``batch_size=b`` give the weights and loss curve of one process with ``batch_size=P*b``
  (to rounding). A divergence on any process raises the same DivergenceError on all; a
  failure of one process ends the job (MPI_Abort). Sparse X works as on one process. Rank
  0 alone prints (``verbose``). 'lbfgs': each process computes the loss and gradient of
  its part of the rows and rank 0 runs SciPy's L-BFGS-B (``fastmlp.lbfgs``), so P
  processes give one process's fit (to rounding).
- Attributes as scikit-learn's: ``classes_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
  ``validation_scores_``, ``best_validation_score_``, ``n_iter_``, ``t_``,
  ``n_features_in_``, ``coefs_`` (a list of (n_in, n_out) arrays, i.e. W.T),
  ``intercepts_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``; and ``model_``, the
  trained ``fastmlp.Sequential`` (save it with ``est.model_.save(path)``). ``coefs_`` and
  ``intercepts_`` are lists as scikit-learn's: an edit of an array in place, of an item
  (``est.coefs_[0] = W``) or of the whole list changes the network where it is used next
  (on any device), and training updates the arrays in place; neither can be set before a
  fit.

The numerical differences that remain, and why
----------------------------------------------
- 'sgd'/'adam' with ``alpha > 0`` also decay the biases (by ``alpha * b / batch``), where
  scikit-learn penalises the weights only: fastmlp's optimizer kernels apply one weight
  decay to the flat parameter vector in one pass, and a per-parameter mask would cost a
  second pass per step. lbfgs penalises the weights only (its L2 term is computed on the
  host), as scikit-learn.
- The L2 term that ``loss_curve_`` adds for 'sgd'/'adam' is computed once per iteration
  from the weights at its end; scikit-learn adds each batch's, with the weights of that
  batch (the curve differs in the last digits when ``alpha > 0``; the updates do not).
- Momentum follows PyTorch's formulation (the buffer accumulates gradients; the current
  learning rate scales the step). With a constant learning rate that is exactly
  scikit-learn's update; with 'invscaling' or 'adaptive' the past steps are rescaled when
  the rate changes, where scikit-learn keeps them at the rate they were taken with:
  fastmlp's SGD kernel is torch.optim.SGD's, shared with the core API.
- Adam adds epsilon to sqrt(v_hat) after the bias correction (PyTorch), scikit-learn to
  sqrt(v) inside its corrected step size: the updates differ by O(epsilon) (relative
  differences of 1e-5 to 1e-3 after a few iterations).
- ``early_stopping`` splits multiclass problems stratified too; scikit-learn 1.9
  stratifies binary ones only (its test reads the width of its one-hot targets), so a
  multiclass validation set differs from scikit-learn's. A class with fewer than 2
  samples then raises a ValueError naming it by the user's label.
- Multi-output squared-error regression with 'lbfgs': scikit-learn's line search sees its
  loss averaged over the outputs but a gradient summed over them; fastmlp minimises the
  summed loss with its own gradient (a consistent pair), so the two take different paths.
- A classifier's ``loss_curve_`` is the exact cross-entropy of the logits; scikit-learn's
  log loss clips the probabilities to [eps, 1 - eps] (at most 36 a sample in float64).
  They differ only where a probability falls below 2e-16. 'sgd' and 'adam' take the same
  updates (both use the gradient of the unclipped loss); lbfgs's line search reads the
  loss, so there the two can take different steps.
- Negative ``sample_weight`` raises a ValueError (scikit-learn trains on it, maximising
  those samples' loss); a warm start or ``partial_fit`` after ``hidden_layer_sizes`` or
  ``activation`` changed raises one too (scikit-learn goes on with the old network).
- The 'poisson' loss on CUDA computes exp in the model's dtype (float32 overflows above a
  log-mean of 88); the CPU computes it in float64.

Pickling stores the model as the bytes of a fastmlp model file (config, weights,
optimizer state), never compiled code or device arrays; unpickling rebuilds it on the
estimator's ``device``.

Where the code lives: this module holds the two public estimators; ``_sklearn_base.py``
what they share (parameters, the model, ``fit``, pickling), ``_sklearn_solvers.py`` the
training loops (the epoch runner ``_Epochs``, scikit-learn's stopping rules, L-BFGS),
``_sklearn_params.py`` the parameter checks, ``_sklearn_compat.py`` the scikit-learn imports.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from ._sklearn_compat import (ClassifierMixin, RegressorMixin, _validate_data, accuracy_score,
                              available_if, check_classification_targets, column_or_1d,
                              r2_score, type_of_target, unique_labels, xlogy)
from ._sklearn_base import _BaseMLP, _Est
from ._typing import Device, Inputs
from .distributed import MPI
from .sparse import issparse
from ._sklearn_solvers import _Epochs  # noqa: F401 - the epoch runner (fastmlp.distributed's docs)

__all__ = ["MLPClassifier", "MLPRegressor"]


def _as_inputs(out, X):
    """The outputs in the dtype scikit-learn's would have: that of X's dtype with the
    weights' (float64 X into a float32 model gives float64, as NumPy's products there)."""
    return out.astype(np.result_type(X.dtype, out.dtype), copy=False)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier on fastmlp's kernels, with scikit-learn's API.

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` (1.9), plus
    ``device`` ("auto", "cpu", "cuda", "reference"), ``dtype`` ("auto": float32 for
    float32 X with 'sgd'/'adam', float64 otherwise; "float32"; "float64") and
    ``distributed`` (None, or "mpi": data-parallel training under ``mpiexec``,
    ``batch_size`` per process). See the
    module docstring for how each maps onto fastmlp and what still differs from
    scikit-learn.

    Labels may be any labels scikit-learn accepts (ints, strings...): ``classes_`` holds
    them sorted; a multilabel indicator matrix (n_samples, n_labels) trains one logistic
    output per label. Binary problems use one logistic output (``out_activation_`` is
    'logistic'), multiclass ones a softmax ('softmax'). As in scikit-learn, y of one class
    trains too: one logistic output whose targets are all 0, ``predict`` gives that class,
    ``predict_proba`` scikit-learn's two columns [1 - p, p].

    Examples
    --------
    >>> from fastmlp import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
    >>> clf.fit(X, y).score(X_test, y_test)          # doctest: +SKIP
    """

    #: as scikit-learn's MLPClassifier (an attribute, not a parameter): its loss
    loss = "log_loss"

    def _loss_name(self):
        return "cross_entropy" if self.out_activation_ == "softmax" else "binary_cross_entropy"

    def _out_activation(self):
        return "logistic" if self._multilabel or len(self.classes_) <= 2 else "softmax"

    def _grad_scale(self):
        # multilabel: fastmlp's binary cross-entropy is a mean over labels too
        return 1.0 / self.n_outputs_ if self._multilabel else 1.0

    def _stratify(self):
        # every single-label problem, binary or multiclass (scikit-learn 1.9 stratifies binary
        # problems only: its test looks at the one-hot width)
        return not self._multilabel

    def _sklearn_loss(self, loss):
        return loss * self.n_outputs_ if self._multilabel else loss

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                              multi_output=True, accept_sparse=["csr", "csc"])
        if y.ndim == 2 and y.shape[1] == 1 and not issparse(y):
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind == "multiclass-multioutput":
            raise ValueError("Multioutput target data is not supported with label binarization "
                             "(y has several columns of class labels; a multilabel y is a 0/1 "
                             "indicator matrix)")
        multilabel = kind == "multilabel-indicator"
        sparse_y = issparse(y)
        if sparse_y:  # a multilabel indicator matrix (predict then gives a CSR matrix too)
            y = y.toarray()
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._multilabel = multilabel
            self._sparse_y = sparse_y
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
            else:
                self.classes_ = unique_labels(y)
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
        # one class (scikit-learn's LabelBinarizer: every target 0) or two: one logistic output
        self.n_outputs_ = 1 if len(self.classes_) <= 2 else len(self.classes_)
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self: _Est, X: Inputs, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                    classes: Optional[ArrayLike] = None) -> _Est:
        """One iteration (epoch) over (X, y); `classes` (all the labels) on the first call.

        Only for the stochastic solvers ('sgd', 'adam'), as in scikit-learn."""
        if classes is not None:
            classes = unique_labels(classes)
            if hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        elif not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not hasattr(self, "classes_"):
            self._sparse_y = issparse(y)
            y_arr = (y.toarray() if issparse(y) else np.asarray(y) if not hasattr(y, "iloc")
                     else y.to_numpy())
            if (y_arr.ndim == 2 and y_arr.shape[1] > 1
                    and type_of_target(y_arr) == "multilabel-indicator"):
                self._multilabel = True
                self.classes_ = np.arange(y_arr.shape[1])
            else:
                self._multilabel = False
                self.classes_ = classes
        return self._fit(X, y, sample_weight, incremental=True)

    def _validation_outputs(self, X_val):
        """The class probabilities of X_val; NaN where the outputs overflowed (or the
        weights diverged): scikit-learn then scores the labels its predict gives for NaN
        outputs, the first class (the argmax of NaN) or no label of a multilabel problem,
        which _score_outputs gives for NaN too."""
        try:
            return self._proba(X_val)
        except FloatingPointError:
            width = self.n_outputs_ if self._multilabel else max(len(self.classes_), 2)
            return np.full((X_val.shape[0], width), np.nan)

    def _score_outputs(self, P, T_val, w_val=None):
        if self._multilabel:
            return accuracy_score(T_val.astype(np.int64), (P > 0.5).astype(np.int64),
                                  sample_weight=w_val)
        return accuracy_score(T_val, self._class_index(P), sample_weight=w_val)

    def _class_index(self, P):
        """Each row's predicted position in ``classes_``: the most probable column, or 0 for
        a problem of one class (whose ``predict_proba`` has scikit-learn's two columns)."""
        if len(self.classes_) == 1:
            return np.zeros(P.shape[0], np.int64)
        return np.argmax(P, axis=1)

    def _proba(self, X):
        P = _as_inputs(self.model_.predict_proba(X), X)
        if not self._multilabel and self.n_outputs_ == 1:
            p = P[:, 0]
            return np.column_stack([1 - p, p])
        return P

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order
        (for multilabel targets: each label's probability, shape (n_samples, n_labels))."""
        return self._proba(self._check_X(X))

    def predict_log_proba(self, X: Inputs) -> np.ndarray:
        """log(predict_proba(X))."""
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)

    def predict(self, X: Inputs) -> np.ndarray:
        """Predicted labels (from ``classes_``); a 0/1 matrix for multilabel targets."""
        P = self.predict_proba(X)
        if self._multilabel:  # int64, as scikit-learn's (a CSR matrix when y was sparse)
            labels = (P > 0.5).astype(np.int64)
            if getattr(self, "_sparse_y", False):
                from scipy import sparse

                return sparse.csr_matrix(labels)
            return labels
        return self.classes_[self._class_index(P)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor on fastmlp's kernels, with scikit-learn's API.

    Parameters are those of ``sklearn.neural_network.MLPRegressor`` -- ``loss``
    'squared_error' or 'poisson' (log link: the network outputs log-means, predictions
    are their exp, ``out_activation_`` is 'exp'; y must be >= 0), the solvers 'lbfgs',
    'sgd' and 'adam' -- plus ``device``, ``dtype`` and ``distributed`` (None, or "mpi":
    data-parallel training under ``mpiexec``, ``batch_size`` per process); see the module
    docstring.
    y may have one column (predictions of shape (n_samples,)) or several (multi-output).

    Examples
    --------
    >>> from fastmlp import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=100, random_state=0)
    >>> reg.fit(X, y).score(X_test, y_test)          # doctest: +SKIP
    """

    def __init__(self, loss: Literal["squared_error", "poisson"] = "squared_error",
                 hidden_layer_sizes: Union[int, Sequence[int]] = (100,),
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
        # the list repeats _BaseMLP's: scikit-learn's get_params reads each class's own signature
        self.loss = loss
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, device=device, dtype=dtype, distributed=distributed)

    def _check_params(self):
        if not isinstance(self.loss, str) or self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"loss must be 'squared_error' or 'poisson'; got {self.loss!r}")
        return super()._check_params()

    def _poisson(self):
        return self.loss == "poisson"

    def _loss_name(self):
        return "poisson" if self._poisson() else "mse"

    def _out_activation(self):
        return "exp" if self._poisson() else "identity"

    def _grad_scale(self):
        # fastmlp's losses are means over the outputs too. mse: (z - t)^2, gradient 2 (z - t);
        # poisson: exp(z) - t z, gradient exp(z) - t. scikit-learn's gradients: z - t and
        # exp(z) - t per output
        return 1.0 / self.n_outputs_ if self._poisson() else 2.0 / self.n_outputs_

    def _stratify(self):
        return False

    def _sklearn_loss(self, loss):
        if self._poisson():  # summed over the outputs, as scikit-learn's
            return loss * self.n_outputs_
        return loss / 2  # scikit-learn's squared error is halved

    def _constant_per_sample(self, T):
        """scikit-learn's half Poisson deviance has the term xlogy(y, y) - y, which does not
        depend on the weights (fastmlp's loss, as PyTorch's, leaves it out)."""
        if not self._poisson():
            return None
        T2 = np.asarray(T, np.float64).reshape(T.shape[0], -1)
        return (xlogy(T2, T2) - T2).sum(axis=1)

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                              multi_output=True, y_numeric=True, accept_sparse=["csr", "csc"])
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if self.__sklearn_is_fitted__() and not reset and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; the model was fitted with "
                             f"{self.n_outputs_}")
        self.n_outputs_ = n_outputs
        return X, y.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self: _Est, X: Inputs, y: ArrayLike,
                    sample_weight: Optional[ArrayLike] = None) -> _Est:
        """One iteration (epoch) over (X, y), continuing from the current weights (only for
        the stochastic solvers 'sgd' and 'adam', as in scikit-learn)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validation_outputs(self, X_val):
        """The predictions for X_val, or None where they overflowed."""
        try:
            out = self.model_.predict(X_val)
        except FloatingPointError:  # outputs overflowed: scikit-learn scores NaN
            return None
        return out if np.isfinite(out).all() else None

    def _score_outputs(self, out, T_val, w_val=None):
        # finite outputs (else _validation_outputs gave None: NaN, as scikit-learn scores);
        # r2_score's own errors (e.g. validation weights all 0) are raised, as there
        return r2_score(T_val, out, sample_weight=w_val)

    def predict(self, X: Inputs) -> np.ndarray:
        """Predicted values: shape (n_samples,) for one output, (n_samples, n_outputs) else
        (for loss='poisson', the predicted means exp(network output))."""
        X = self._check_X(X)
        out = _as_inputs(self.model_.predict(X), X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.target_tags.positive_only = self.loss == "poisson"  # counts or rates: y >= 0
        tags.input_tags.sparse = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}
