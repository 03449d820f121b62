"""How the estimators train: 'sgd' and 'adam' by epochs of mini-batch steps on the model's
backend (``_Epochs``, with scikit-learn's stopping rules around it), 'lbfgs' by
``fastmlp.lbfgs``. ``_Solvers`` holds the estimators' side of it (a base of
``fastmlp.sklearn``'s estimators: it reads their parameters and writes their fitted
attributes)."""

import contextlib
import math
import warnings

import numpy as np
from types import SimpleNamespace

from ._sklearn_compat import (ConvergenceWarning, _check_optimize_result,
                              train_test_split)
from . import _fast_fit
from .errors import DivergenceError
from .lbfgs import _minimize as _lbfgs_minimize
from .sparse import SparseRows, issparse


#: below this many multiply-adds in a step's forward pass, one BLAS thread: such products
#: are too small to split, and on a busy machine OpenBLAS's spinning threads cost more than
#: the product itself (2 busy cores: 8x slower at 20-64-64-3, batch 200, 1.1 M). Larger
#: steps keep the BLAS's threads: on 2 quiet cores MNIST's 784-256-128-10 at batch 200
#: (47 M) trains 1.65x faster in float64 and 2.0x in float32 than on one thread, while
#: 20-64-64-3 gains under 10 % (2026-12-06, AVX-512 kernels)
_SMALL_STEP = 4_000_000


def _blas_threads(model, batch):
    """A context that runs small steps on one BLAS thread (fastmlp's own setter of NumPy's
    OpenBLAS, which fit's runs on two threads share; else threadpoolctl, which comes with
    scikit-learn); larger ones keep the BLAS's own setting."""
    macs = batch * sum(a * b for a, b in zip(model.sizes[:-1], model.sizes[1:]))
    if model.device != "cpu" or macs >= _SMALL_STEP:
        return contextlib.nullcontext()
    from .kernels import blas

    if blas.one_thread().works:
        return blas.one_thread()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _shuffled(order, random_state):
    """scikit-learn's ``shuffle(order, random_state=random_state)``, the same draws from the
    same RandomState (its ``resample``: a RandomState.shuffle of arange(n), then indexing)
    without its argument checks, which cost 0.3 ms an iteration (10 % of a small fit)."""
    idx = np.arange(order.shape[0])
    random_state.shuffle(idx)
    return order[idx]


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
        # the full batches in runs of compiled steps where the model qualifies (_fast_fit.py)
        self.fast = _fast_fit.plan(model, T, None, False, [], self.sparse, dist, metric="none")

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
        step = 0
        if self.fast is not None:  # the same steps, many per compiled call (_fast_fit.py)
            if self.w is None:
                w_rows = None
            else:  # each sample's scaled weight at its row: gathered by idx as X is
                w_rows = np.empty_like(w_epoch)
                w_rows[idx_all] = w_epoch
            data, v = (self.X, self.T, w_rows, idx_all), self.buffers.views(self.batch)
            tally = SimpleNamespace(seen=0, correct=0)
            for step, loss_sum, bad in self.fast.epoch(data, v, self.n // self.batch, tally, decays):
                if bad is not None:
                    raise DivergenceError(f"the loss became {bad[1]} at step {bad[0] + 1}")
            if step:
                opt.weight_decay = float(decays[step - 1])
        for step in range(step, len(self.starts)):
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


class _Solvers:
    """The fitting loops of MLPClassifier and MLPRegressor: the early-stopping split, the
    stochastic iterations with scikit-learn's stopping rules, and L-BFGS."""

    def _split(self, X, T, w):
        """The early-stopping split, as scikit-learn's: train_test_split with the estimator's
        random state, stratified for single-label classification."""
        stratify = T if self._stratify() else None
        arrays = (X, T) if w is None else (X, T, w)
        try:
            parts = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
        except ValueError as exc:
            if stratify is not None and "greater or equal to the number of classes" in str(exc):
                raise ValueError(
                    f"The validation set is too small. Increase 'validation_fraction' or the size "
                    f"of your dataset: early_stopping=True splits a stratified validation set, "
                    f"which needs a sample of each of the {len(self.classes_)} classes, and "
                    f"validation_fraction={self.validation_fraction} of {X.shape[0]} samples is "
                    f"fewer ({exc})") from None
            if stratify is None or "least populated class" not in str(exc):
                raise
            # T: each sample's position in classes_ (multiclass), or a column of 0/1 (binary)
            counts = np.bincount(np.asarray(T).reshape(-1).astype(np.int64),
                                 minlength=len(self.classes_))
            few = [self.classes_[i].item() for i in np.flatnonzero(counts < 2)]
            least = int(counts.min())
            raise ValueError(
                f"The least populated classes in y have only {least} "
                f"member{'s' if least != 1 else ''}, which is too few: early_stopping=True "
                f"splits a stratified validation set (validation_fraction="
                f"{self.validation_fraction}), which needs at least 2 samples of every class. "
                f"Classes with too few members are: {few}. Add samples or set "
                "early_stopping=False."
            ) from None
        X_train, X_val, T_train, T_val = parts[:4]
        w_train, w_val = (None, None) if w is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        return X_train, T_train, w_train, X_val, T_val, w_val

    def _fit_stochastic(self, X, T, w, incremental, dist=None):
        model = self.model_
        if not hasattr(self, "_no_improvement_count"):  # warm start after lbfgs
            self._init_stochastic_records()
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
        diverged = False
        for _ in range(self.max_iter):
            if self.shuffle:  # scikit-learn's draws: the previous order, shuffled
                order = _shuffled(order, self._random_state)
            if not diverged:
                try:
                    data_loss, l2_factor, constant = epochs.run(order)
                except DivergenceError:
                    if not early_stopping:
                        raise
                    # as scikit-learn: with early stopping a diverged fit goes on (its
                    # weights NaN, each loss NaN, each validation score that of NaN
                    # outputs) and ends on the best weights seen; the steps are skipped
                    diverged = True
                    model._kernels.write(model._theta, np.full(model._theta.shape, np.nan,
                                                               model.dtype))
            if diverged:
                loss = math.nan
            else:
                loss = self._sklearn_loss(data_loss) + constant
                if self.alpha:
                    with np.errstate(over="ignore"):  # weights near divergence: the term is inf
                        sq = sum(float(np.sum(np.square(W, dtype=np.float64)))
                                 for W in model.get_weights()[0::2])
                    loss += 0.5 * float(self.alpha) * sq * l2_factor
            self.n_iter_ += 1
            loss = np.float64(loss)  # NumPy's float, as scikit-learn's records
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
        self.loss_curve_ = [np.float64(self._sklearn_loss(data * c) + self._loss_constant
                                       + (total - data)) for total, data in curve]
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else np.float64(result.fun)

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
