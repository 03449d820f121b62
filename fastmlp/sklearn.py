"""scikit-learn estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

Drop-ins for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (scikit-learn
1.9): every public parameter with its default (plus ``device``, ``dtype`` and
``distributed``), every
fitted attribute, ``fit(X, y, sample_weight=None)``, ``partial_fit`` (stochastic solvers
only), metadata routing (``set_fit_request(sample_weight=True)``...), the same warnings
and errors. They pass ``sklearn.utils.estimator_checks.check_estimator``.

From the same ``random_state`` they start from scikit-learn's initial weights (its draws,
in its order) and shuffle the batches in its order, so ``solver="lbfgs"`` gives
scikit-learn's weights to rounding, and 'sgd' and 'adam' follow its loss curve (exactly
with ``alpha=0``; see the differences below). The arithmetic is fastmlp's kernels:

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
  detail (where the loss became non-finite).
- ``device``: "auto", "cpu", "cuda" or "reference"; ``dtype``: "auto" (float32 for float32
  X, float64 otherwise, as scikit-learn computes), "float32" or "float64".
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
  trained ``fastmlp.Sequential`` (save it with ``est.model_.save(path)``).

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
- The 'poisson' loss on CUDA computes exp in the model's dtype (float32 overflows above a
  log-mean of 88); the CPU computes it in float64.

Pickling stores the model as the bytes of a fastmlp model file (config, weights,
optimizer state), never compiled code or device arrays; unpickling rebuilds it on the
estimator's ``device``.
"""

import contextlib
import math
import numbers
import warnings

import numpy as np
from scipy.special import xlogy

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils import shuffle as sk_shuffle
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

from . import distributed as _distributed
from ._validation import check_targets
from .errors import DivergenceError
from .saving import from_bytes, to_bytes
from .kernels.codes import ACTIVATIONS
from .lbfgs import _minimize as _lbfgs_minimize
from .model import MLP
from .optim import SGD, Adam
from .sparse import SparseRows, check_sparse_X, issparse

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


#: below this many multiply-adds in a step's forward pass, one BLAS thread is faster: the
#: products of a 200-row batch are too small to split, and on a busy machine OpenBLAS's
#: spinning threads cost more than the product itself (measured on 2 busy cores: 8x slower
#: at 20-64-64-3, 3x slower at MNIST's 784-256-128-10, both at batch 200)
_SMALL_STEP = 64_000_000


def _blas_threads(model, batch):
    """A context that runs small steps on one BLAS thread (threadpoolctl, which comes with
    scikit-learn); larger ones keep the BLAS's own setting."""
    macs = batch * sum(a * b for a, b in zip(model.sizes[:-1], model.sizes[1:]))
    if model.device != "cpu" or macs >= _SMALL_STEP:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class _Epochs:
    """The training set on the model's backend (uploaded once per fit) and one iteration
    (epoch) of mini-batch steps over it, in the order given.

    With sample weights, each batch's weights are divided by their mean (so the batch loss
    is scikit-learn's weighted mean) and the weight decay by the batch's weight sum;
    without, the decay is divided by the batch's size (smaller for the last batch).

    Over MPI (`dist`, a fastmlp.distributed.DataParallel): `batch` is per process and a
    step's batch is the global one of P * batch samples; this process computes its part
    (``dist.part``), ``dist.step`` sums the gradients, and the weight decay, the weights'
    scaling and the reported loss are those of the global batches, so P processes take the
    steps one process takes with batch P * batch.
    """

    def __init__(self, model, X, T, w, batch, decay, constant=None, dist=None):
        k = model._kernels
        self.constant = constant  # per sample: a term of the reported loss, or None
        self.model, self.k, self.n, self.batch, self.decay = model, k, X.shape[0], batch, decay
        self.dist = dist
        if dist is not None:  # agree on the setup, start from rank 0's weights
            dist.begin(model, self.n, batch, T, X, w)
        self.sparse = issparse(X)
        self.X = SparseRows(k, X, batch) if self.sparse else k.asarray(X)
        self.T = k.asarray(T if T.ndim == 2 else T.reshape(-1, 1))
        self.w = w
        self.buffers = model._buffers_for(batch, T, w is not None, self.sparse)
        self.total = k.zeros(1, np.float64) if model._resident else None
        self.in_order = k.asarray(np.arange(self.n))
        step_batch = batch if dist is None else dist.global_batch  # the samples of one step
        self.starts = np.arange(0, self.n, step_batch)
        self.sizes = np.minimum(step_batch, self.n - self.starts)

    def _part(self, step):
        """The positions in the epoch's order this process computes at `step`."""
        if self.dist is None:
            start = int(self.starts[step])
            return start, start + int(self.sizes[step])
        return self.dist.part(step)

    def run(self, order):
        """One epoch; returns (mean loss over the samples, sum over batches of
        (batch size / n) / (batch weight sum): the factor of the L2 term in the loss, and
        the constant term of the loss, averaged as the batch losses are)."""
        model, k, opt, dist = self.model, self.k, self.model.optimizer, self.dist
        if dist is not None and order is not None:  # rank 0's (the same draws: a check)
            order = dist.order_for_epoch(order)
        idx_all = self.in_order if order is None else k.asarray(order)
        if self.w is None:
            sums = self.sizes.astype(np.float64)
        else:
            w = self.w if order is None else self.w[order]
            sums = np.add.reduceat(w, self.starts)
            scale = np.divide(self.sizes, sums, out=np.zeros_like(sums), where=sums > 0)
            w_epoch = k.asarray((w * np.repeat(scale, self.sizes)).astype(model.dtype).reshape(-1, 1))
        decays = np.divide(self.decay, sums, out=np.zeros_like(sums), where=sums > 0)
        if self.total is not None:
            k.write(self.total, np.zeros(1))
        loss_sum = 0.0
        for step in range(len(self.starts)):
            if opt.weight_decay != decays[step]:
                opt.weight_decay = float(decays[step])
            lo, hi = self._part(step)
            v = self.buffers.views(hi - lo)
            idx = idx_all[lo:hi]
            if self.sparse:
                X0 = self.X.gather(idx)
            else:
                X0 = None
                k.gather_rows(self.X, idx, v.A[0])
            k.gather_rows(self.T, idx, v.T2d)
            if self.w is not None:
                k.gather_rows(w_epoch, self.in_order[lo:hi], v.w2d)
            with model._guard.step_lock:  # readers in other threads see whole steps
                if dist is None:
                    loss = model._step(v, self.total, X0)
                else:  # MPI: the gradients of the processes' parts summed, then the update
                    loss = dist.step(model, v, self.total, X0)
            if loss is not None:  # host backends: every step's loss is checked
                if not math.isfinite(loss):  # over MPI: the same value on every process
                    raise DivergenceError(f"the loss became {loss} at step {step + 1}")
                loss_sum += loss * v.n
        if dist is not None:  # MPI: the loss summed over the processes
            loss_sum = dist.agree_epoch(model, loss_sum, self.total)
        if self.total is not None:  # the one read of the epoch's loss
            loss_sum = float(k.to_host(self.total)[0])
            if not math.isfinite(loss_sum):
                raise DivergenceError(f"the loss became {loss_sum}")
        l2_factor = float(np.sum(np.divide(self.sizes / self.n, sums, out=np.zeros_like(sums),
                                           where=sums > 0)))
        constant = 0.0
        if self.constant is not None:
            const = self.constant if order is None else self.constant[order]
            if self.w is not None:  # each batch's weighted mean, weighted by batch size
                const = const * np.repeat(scale, self.sizes) * w
            constant = float(const.sum() / self.n)
        return loss_sum / self.n, l2_factor, constant


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the epoch loop, pickling."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 device="auto", dtype="auto", distributed=None):
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
        if self.solver not in ("sgd", "adam", "lbfgs"):
            raise ValueError(f"solver must be 'lbfgs', 'sgd' or 'adam'; got {self.solver!r}")
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
            ("n_iter_no_change", self.n_iter_no_change,
             lambda v: (_is_int(v) and v >= 1) or (_is_real(v) and v == np.inf),
             "an int >= 1 or np.inf"),
            ("max_fun", self.max_fun, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
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
        self.model_ = self._new_model(self.model_.n_features, hidden, self.model_.dtype.name, 0)
        self.model_.set_weights(weights)

    # ------------------------------------------------------------------------------------
    # fitting

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self._check_params()
        if self.early_stopping and incremental and self.solver != "lbfgs":
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
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
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, T, w, dist)
            else:
                self._fit_stochastic(X, T, w, incremental, dist)
        except FloatingPointError as exc:  # fastmlp's DivergenceError, or NumPy's
            raise DivergenceError(
                "Solver produced non-finite parameter weights. The input data may contain large "
                f"values and need to be preprocessed. ({exc})") from None
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

    def _split(self, X, T, w):
        """The early-stopping split, as scikit-learn's: train_test_split with the estimator's
        random state, stratified for single-label classification."""
        stratify = T if self._stratify() else None
        arrays = (X, T) if w is None else (X, T, w)
        try:
            parts = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
        except ValueError as exc:
            if stratify is None or "least populated class" not in str(exc):
                raise
            counts = np.bincount(T, minlength=len(self.classes_))
            few = [self.classes_[i].item() for i in np.flatnonzero(counts < 2)]
            raise ValueError(
                f"early_stopping=True splits a stratified validation set (validation_fraction="
                f"{self.validation_fraction}), which needs at least 2 samples of every class; "
                f"these classes have fewer: {few}. Add samples or set early_stopping=False."
            ) from None
        X_train, X_val, T_train, T_val = parts[:4]
        w_train, w_val = (None, None) if w is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        return X_train, T_train, w_train, X_val, T_val, w_val

    def _fit_stochastic(self, X, T, w, incremental, dist=None):
        model = self.model_
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, T_train, w_train, X_val, T_val, w_val = self._split(X, T, w)
        else:
            X_train, T_train, w_train, X_val, T_val, w_val = X, T, w, None, None, None
        constant = self._constant_per_sample(T_train)
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch = int(np.clip(self.batch_size, 1, n))
        c = self._grad_scale()
        opt = model.optimizer
        if self.solver == "sgd":
            opt.lr = self._learning_rate / c
        self.n_iter_ = 0
        order = np.arange(n) if self.shuffle else None
        # MPI: an error on one process alone ends the job (the others would wait for it)
        together = contextlib.nullcontext() if dist is None else dist.abort_on_failure()
        try:
            with model._guard.training("fit"), together:
                # the training set goes onto the backend once per fit, not once per iteration
                epochs = _Epochs(model, X_train, T_train, w_train, batch,
                                 decay=c * float(self.alpha), constant=constant, dist=dist)
                with _blas_threads(model, batch):
                    self._iterate(epochs, order, early_stopping, X_val, T_val, w_val,
                                  incremental, c, dist)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:
            model.set_weights(self._best_weights)

    def _iterate(self, epochs, order, early_stopping, X_val, T_val, w_val, incremental, c,
                 dist=None):
        """The iterations of _fit_stochastic, with scikit-learn's stopping rules (over MPI:
        from the agreed loss and validation score, so every process stops at the same
        iteration; rank 0 prints)."""
        model, n, opt = self.model_, epochs.n, self.model_.optimizer
        say = print if dist is None or dist.r == 0 else (lambda *args: None)
        for _ in range(self.max_iter):
            if self.shuffle:  # scikit-learn's draws: the previous order, shuffled
                order = sk_shuffle(order, random_state=self._random_state)
            data_loss, l2_factor, constant = epochs.run(order)
            loss = self._sklearn_loss(data_loss) + constant
            if self.alpha:
                sq = sum(float(np.sum(np.square(W, dtype=np.float64)))
                         for W in model.get_weights()[0::2])
                loss += 0.5 * float(self.alpha) * sq * l2_factor
            self.n_iter_ += 1
            self.loss_ = loss
            self.t_ += n
            self.loss_curve_.append(loss)
            if self.verbose:
                say("Iteration %d, loss = %.8f" % (self.n_iter_, loss))
            self._update_no_improvement_count(early_stopping, X_val, T_val, w_val, dist, say)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._learning_rate = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                opt.lr = self._learning_rate / c
            stop = False
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
                        say(msg + " Setting learning rate to %f" % self._learning_rate)
                else:
                    if self.verbose:
                        say(msg + (" Learning rate too small." if self.learning_rate == "adaptive"
                                   and self.solver == "sgd" else "") + " Stopping.")
                    stop = True
            if dist is not None:  # MPI: stop together (and, in debug mode, check the weights)
                stop = dist.end_epoch(model, stop)
            if stop:
                break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                    "optimization hasn't converged yet." % self.max_iter, ConvergenceWarning)

    def _fit_lbfgs(self, X, T, w, dist=None):
        """Full-batch L-BFGS (fastmlp.lbfgs) on scikit-learn's objective: its loss (mean over
        the samples, weighted by sample_weight) + alpha / 2 * ||W||^2 / sum(sample_weight)."""
        model = self.model_
        n = X.shape[0]
        c = self._grad_scale()
        sw_sum = float(n if w is None else w.sum())
        w_norm = None if w is None else (w * (n / sw_sum)).astype(model.dtype)
        l2 = float(self.alpha) / sw_sum
        # MPI: an error on one process alone ends the job (the others would wait for it)
        together = contextlib.nullcontext() if dist is None else dist.abort_on_failure()
        with together:
            result, curve = _lbfgs_minimize(model, X, T, w_norm, l2=l2, scale=1.0 / c,
                                            max_iter=int(self.max_iter), max_fun=int(self.max_fun),
                                            tol=float(self.tol), verbose=bool(self.verbose),
                                            dist=dist)
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        # reported as scikit-learn reports its loss (its data term can differ from the
        # objective's by the number of outputs, see _sklearn_loss)
        self.loss_curve_ = [self._sklearn_loss(data * c) + self._loss_constant + (total - data)
                            for total, data in curve]
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else float(result.fun)

    def _update_no_improvement_count(self, early_stopping, X_val, T_val, w_val, dist=None,
                                     say=print):
        if early_stopping:
            score = self._validation_score(X_val, T_val, w_val, dist)
            self.validation_scores_.append(score)
            if self.verbose:
                say("Validation score: %f" % score)
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

    def _validation_score(self, X_val, T_val, w_val=None, dist=None):
        """The early-stopping score; over MPI each process predicts its consecutive part of
        the validation rows, every process gets all of them, and rank 0's score of the whole
        counts everywhere (the single-process score)."""
        if dist is None:
            out = self._validation_outputs(X_val)
        else:
            lo, hi = dist.rows(X_val.shape[0])
            parts = dist.allgather(self._validation_outputs(X_val[lo:hi]) if hi > lo else [])
            out = None if any(p is None for p in parts) else np.concatenate([p for p in parts if len(p)])
        score = np.nan if out is None else self._score_outputs(out, T_val, w_val)
        return score if dist is None else dist.main_value(score)

    def fit(self, X, y, sample_weight=None):
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

    def to_onnx(self, path, dtype=None):
        """Export the fitted estimator to an ONNX file whose output is predict_proba's
        (classifier) or predict's (regressor); returns the ModelProto (fastmlp.onnx_io)."""
        from .onnx_io import estimator_to_onnx

        return estimator_to_onnx(self, path, dtype)

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

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` (1.9), plus
    ``device`` ("auto", "cpu", "cuda", "reference"), ``dtype`` ("auto": float32 for
    float32 X, float64 otherwise; "float32"; "float64") and ``distributed`` (None, or
    "mpi": data-parallel training under ``mpiexec``, ``batch_size`` per process). See the
    module docstring for how each maps onto fastmlp and what still differs from
    scikit-learn.

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
        # every single-label problem, binary or multiclass (scikit-learn 1.9 stratifies binary
        # problems only: its test looks at the one-hot width)
        return not self._multilabel

    def _sklearn_loss(self, loss):
        return loss * self.n_outputs_ if self._multilabel else loss

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                              multi_output=True, accept_sparse=["csr", "csc"])
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

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
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
            y_arr = np.asarray(y) if not hasattr(y, "iloc") else y.to_numpy()
            if y_arr.ndim == 2 and y_arr.shape[1] > 1 and type_of_target(y_arr) == "multilabel-indicator":
                self._multilabel = True
                self.classes_ = np.arange(y_arr.shape[1])
                self._label_dtype = y_arr.dtype
            else:
                self._multilabel = False
                self.classes_ = classes
                self._label_dtype = np.asarray(classes).dtype
        return self._fit(X, y, sample_weight, incremental=True)

    def _validation_outputs(self, X_val):
        """The class probabilities of X_val, or None where they overflowed."""
        try:
            return self._proba(X_val)
        except FloatingPointError:  # outputs overflowed: scikit-learn scores NaN
            return None

    def _score_outputs(self, P, T_val, w_val=None):
        if self._multilabel:
            return accuracy_score(T_val.astype(np.int64), (P > 0.5).astype(np.int64),
                                  sample_weight=w_val)
        return accuracy_score(T_val, np.argmax(P, axis=1), sample_weight=w_val)

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

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 device="auto", dtype="auto", distributed=None):
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
        if hasattr(self, "model_") and not reset and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; the model was fitted with "
                             f"{self.n_outputs_}")
        self.n_outputs_ = n_outputs
        return X, y.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self, X, y, sample_weight=None):
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
        try:
            return r2_score(T_val, out, sample_weight=w_val)
        except ValueError:  # scikit-learn scores NaN
            return np.nan

    def predict(self, X):
        """Predicted values: shape (n_samples,) for one output, (n_samples, n_outputs) else
        (for loss='poisson', the predicted means exp(network output))."""
        X = self._check_X(X)
        out = self.model_.predict(X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}
