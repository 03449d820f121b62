"""The training loop every model shares (a part of model._Network): input checks,
train_step, fit and its epoch loop, snapshots for divergence."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _fast_fit
from ._concurrency import deferred_sigint
from ._metrics import _Metrics
from ._typing import Inputs
from ._validation import (check_fit_options, check_inputs, check_int, check_sample_weights,
                          check_targets, reads_directly)
from .layers import SOFTMAX_LOSSES
from .callbacks import (Callback, History, ProgressBar, _any_reads_gradients, check_callbacks,
                        fit_log_keys)
from .errors import DivergenceError
from .distributed import MPI
from .sparse import SparseRows, csr_run, issparse


#: a view uploaded to a GPU (see _rows_on) goes this many bytes of rows at a time
_UPLOAD_BYTES = 1 << 24


def _rows_on(k, X):
    """The checked input X on backend k, as rows for gather_rows: X itself on the host
    backends (no copy); one upload per fit on a GPU, a view (a memmap's column slice...)
    in blocks of rows, so the host never holds a copy of the whole."""
    if not isinstance(X, np.ndarray) or reads_directly(X) or k.name in ("cpu", "reference"):
        return k.asarray(X)
    out = k.empty(X.shape, X.dtype)
    rows = max(_UPLOAD_BYTES // max(X[0].nbytes, 1), 1)
    for start in range(0, X.shape[0], rows):
        k.write(out[start : start + rows], X[start : start + rows])
    return out


def _gather_rows(k, X, idx, out):
    """out[i] = X[idx[i]]: the backend's kernel, or for a view on the host (a memmap's
    column slice...) NumPy's indexing, which reads those rows only (and compiles nothing)."""
    if isinstance(X, np.ndarray) and not reads_directly(X):
        out[...] = X[idx]
    else:
        k.gather_rows(X, idx, out)


class _Training:
    """fit / train_step and the epoch loop around the step (model._Network's)."""

    def _check_X(self, X, name="X"):
        return check_inputs(X, self._input_widths, self._input_names, name, self.dtype)

    def _check_fit_data(self, X, y, name_X="X", name_y="y"):
        Xs = self._check_X(X, name_X)
        if self._loss_pending:  # no loss given: the first targets choose it (infer_loss)
            self._choose_loss(y, name_y)
        T, labels = check_targets(y, self.loss, self.n_outputs, Xs[0].shape[0], self.dtype, name_y)
        return Xs, T, labels

    def _sample_weights(self, sample_weight, class_weight, labels, n):
        return check_sample_weights(sample_weight, class_weight, labels, n, self.n_outputs, self.dtype)

    def _check_batch(self, X, y, sample_weight):
        """One batch for train_step / compute_gradients, checked: (inputs, targets, sample
        weights or None, sparse or not)."""
        Xs, T, labels = self._check_fit_data(X, y)
        w = self._sample_weights(sample_weight, None, labels, Xs[0].shape[0])
        return Xs, T, w, issparse(Xs[0])

    def _load_batch(self, batch):
        """The checked batch written into the buffers of its size (under the step lock):
        returns the buffers' views and, for sparse input, the CSR rows of the first layer."""
        Xs, T, w, sparse = batch
        n = Xs[0].shape[0]
        k = self._kernels
        v = self._buffers_for(n, T, w is not None, sparse).views(n)
        if not sparse:
            for Xv, X_j in zip(v.X, Xs):
                k.write(Xv, X_j)
        k.write(v.T, T)
        if w is not None:
            k.write(v.w, w)
        return v, (csr_run(k, Xs[0], 0, n) if sparse else None)

    def train_step(self, X: Inputs, y: ArrayLike,
                   sample_weight: Optional[ArrayLike] = None) -> float:
        """One explicit step (forward, loss, backward, update) on the batch (X, y).

        Returns the mean loss of the batch as a float.
        """
        batch = self._check_batch(X, y, sample_weight)
        with self._guard.training("train_step"), self._guard.step_lock:
            v, X0 = self._load_batch(batch)
            loss = self._step(v, None, X0, check_gradient=True)
        if not math.isfinite(loss):
            raise DivergenceError(
                f"training diverged: the loss became {loss}; the weights were not updated. "
                + self._divergence_advice()
            )
        return float(loss)

    def _divergence_advice(self):
        return (f"Lower the learning rate (optimizer={self.optimizer!r}), clip the gradients "
                "(clip_norm=...) or scale the inputs (e.g. pixels to [0, 1]).")

    def _snapshot(self):
        """Host copies of everything a training step changes: weights (with BatchNorm's
        running statistics), optimizer state and step count."""
        k = self._kernels
        with self._guard.step_lock:
            opt = {name: k.to_host(self._opt_state[name]) for name in self.optimizer.state_names}
            opt["step"] = self._opt_state["step"]
            return self.get_weights(), opt

    def _restore(self, snapshot):
        weights, opt = snapshot
        with self._guard.step_lock:
            for (_, arr), host in zip(self._weight_slots(), weights):
                self._kernels.write(arr, host)
            for name, value in opt.items():
                if name == "step":
                    self._opt_state[name] = value
                else:
                    self._kernels.write(self._opt_state[name], value)

    def _finite_parameters(self):
        return bool(np.isfinite(self._kernels.to_host(self._theta)).all())

    def fit(self, X: Inputs, y: ArrayLike, epochs: int = 1, batch_size: int = 32,
            validation_split: float = 0.0,
            validation_data: Union[tuple[Inputs, ArrayLike], list[Any], None] = None,
            shuffle: bool = True, callbacks: Optional[Sequence[Callback]] = None,
            verbose: int = 1, sample_weight: Optional[ArrayLike] = None,
            class_weight: Optional[Mapping[Any, float]] = None,
            on_divergence: Literal["raise", "warn"] = "raise",
            distributed: Union[str, MPI, None] = None,
            shard: Literal["auto", "local"] = "auto",
            log_every: Optional[int] = None) -> History:
        """Train for `epochs` passes over (X, y) in mini-batches; returns a History.

        X: an array, or for a model with several inputs a list of arrays (in input order) or
        a dict {input name: array}.
        validation_split takes the last fraction of the samples (before shuffling) as
        validation data, as Keras does; validation_data=(X_val, y_val) gives it directly.
        sample_weight (n,) and class_weight {class: weight} weight each sample's loss (they
        multiply); the loss is then sum(w * l) / batch, as in Keras.
        History keys: loss, accuracy (classification; binary_accuracy for several sigmoid
        outputs) or mae and r2 (mse), the same with val_ for validation data, and lr.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

        log_every: on CUDA, where the data and the loss stay on the device and each epoch
        reads its loss once, the batch-level callbacks (``on_batch_end``, the progress bar)
        get an empty ``logs``; ``log_every=N`` gives them ``{"loss": running mean of the
        epoch so far}`` after every N-th step (and the epoch's last), at the cost of one
        device-to-host read, which waits for the queued steps, per N steps (a loss that
        became NaN or inf is then caught at that step). Accuracy stays an epoch figure
        there. On the CPU the batch logs carry the loss and metrics after every step anyway.

        Divergence: when the loss becomes NaN or inf (or the weights stop being finite),
        training stops at once and the weights and optimizer state go back to where they
        were at the start of that epoch. on_divergence="raise" (default) then raises a
        fastmlp.DivergenceError (both a FloatingPointError and a ValueError); "warn" issues a RuntimeWarning instead and returns the history,
        with ``history.diverged = (epoch, step)`` marking where it happened.

        distributed="mpi": data-parallel training, one process of ``mpiexec -n P``;
        batch_size is per process (the global batch is P * batch_size), every process starts
        from rank 0's weights and follows rank 0's order. shard="auto": every process passes
        the same (X, y) and P processes with batch b take exactly the steps of one process
        with batch P * b; shard="local": each passes its own part. Metrics, validation,
        divergence and stopping are agreed; the progress bar and ModelCheckpoint run on rank
        0; every process returns the same History. See fastmlp.distributed.
        """
        if distributed is not None and log_every is not None:
            raise ValueError("log_every is not supported with distributed='mpi' yet (the "
                             "progress bar there shows the loss per epoch)")
        if distributed is not None:  # MPI: fastmlp/distributed.py runs this fit on every process
            from . import distributed as _distributed

            return _distributed.fit(self, distributed, shard, X, y, epochs=epochs, batch_size=batch_size,
                                    validation_split=validation_split, validation_data=validation_data,
                                    shuffle=shuffle, callbacks=callbacks, verbose=verbose,
                                    sample_weight=sample_weight, class_weight=class_weight,
                                    on_divergence=on_divergence)
        if shard != "auto":
            raise ValueError(f"shard={shard!r} needs distributed='mpi'")
        if log_every is not None:
            log_every = check_int(log_every, "log_every")
        epochs, batch_size, validation_split, callbacks, on_divergence = check_fit_options(
            epochs, batch_size, validation_split, shuffle, verbose, callbacks, on_divergence)
        pending = self._loss_pending
        Xs, T, labels = self._check_fit_data(X, y)
        if pending and verbose:  # said once, as the summary says it
            print(f"loss={self.loss!r}, {self.loss_reason}", flush=True)
        w = self._sample_weights(sample_weight, class_weight, labels, Xs[0].shape[0])
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            val = self._check_fit_data(*validation_data, name_X="validation_data X",
                                       name_y="validation_data y")
        elif validation_split:
            n_all = Xs[0].shape[0]
            n_val = int(round(n_all * validation_split))
            if n_val < 1 or n_val >= n_all:
                raise ValueError(
                    f"validation_split={validation_split} of {n_all} samples leaves "
                    f"{n_val} for validation and {n_all - n_val} for training; both need >= 1"
                )
            cut = n_all - n_val
            val = (tuple(X_j[cut:] for X_j in Xs), T[cut:], None if labels is None else labels[cut:])
            Xs, T, labels = tuple(X_j[:cut] for X_j in Xs), T[:cut], None if labels is None else labels[:cut]
            w = None if w is None else w[:cut]
        else:
            val = None
        with self._guard.training("fit"), deferred_sigint() as sigint:
            return self._train(Xs, T, labels, w, val, epochs, batch_size, shuffle, callbacks,
                               verbose, on_divergence, sigint, log_every)

    def _train(self, Xs, T, labels, w, val, epochs, batch_size, shuffle, callbacks, verbose,
               on_divergence, sigint, log_every=None):
        """fit's loop over epochs and steps, on checked data; `sigint` holds a Ctrl-C back
        until the step under way is whole."""
        dist = getattr(self, "_dist", None)  # MPI hooks (fastmlp.distributed.DataParallel) or None
        n = Xs[0].shape[0]
        batch = min(batch_size, n)
        steps = -(-n // batch)
        sparse = issparse(Xs[0])
        if dist is not None:  # MPI: agree on the setup, rank 0's weights, the global step count
            steps = dist.begin(self, n, batch, T, Xs, w)
        buffers = self._buffers_for(batch, T, w is not None, sparse)
        k = self._kernels
        # the training data on the backend (no copy on the CPU; one upload per fit on CUDA),
        # as rows for gather_rows (sparse: CSR rows for gather_csr_rows)
        Xk = (SparseRows(k, Xs[0], batch),) if sparse else tuple(_rows_on(k, X_j) for X_j in Xs)
        T2 = k.asarray(T if T.ndim == 2 else T.reshape(-1, 1))
        w2 = None if w is None else k.asarray(w.reshape(-1, 1))
        # accuracy compares the logits with T itself, except for one-hot/probability targets
        dense_labels = labels is not None and T.ndim == 2 and self.loss in SOFTMAX_LOSSES
        labels2 = k.asarray(labels.reshape(-1, 1)) if dense_labels else None
        metrics = _Metrics(self, T if labels is None else None)
        loss_total = k.zeros(1, np.float64) if self._resident else None
        order, rows = np.arange(n), np.arange(n)  # no new array per epoch
        fast = _fast_fit.plan(self, T, labels, dense_labels, callbacks, sparse, dist)
        # step by step, plain SGD's update folded into the backward pass where the model
        # allows it, and nothing reads the gradients (GradientMonitor) or sums them (MPI)
        fuse_sgd = (fast is None and dist is None and self._plain_sgd_fuses()
                    and not _any_reads_gradients(callbacks))
        if fast is not None:
            data = (Xk[0], T2, w2, None)

        history = History()
        cbs = [history] + callbacks + ([ProgressBar(verbose)] if verbose else [])
        self._fit_params = {"epochs": epochs, "steps": steps, "batch_size": batch, "samples": n}
        history.params = dict(self._fit_params)
        self.history = history  # as Keras: callbacks (GradientMonitor) reach it here
        if dist is not None:  # MPI: progress bar and checkpoints on rank 0 only
            cbs = dist.callbacks(self, cbs)
        check_callbacks(cbs, fit_log_keys(metrics, val is not None))  # before the first epoch
        self.stop_training = False
        for cb in cbs:
            cb.set_model(self)
            cb.on_train_begin()
        logs = {}
        for epoch in range(epochs):
            snapshot = self._snapshot()
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if shuffle:  # a fresh order each epoch: fit(2) + fit(2) == fit(4)
                np.copyto(order, rows)  # then shuffled in place: permutation(n)'s draws
                self._rng.shuffle(order)
            if dist is not None:  # MPI: rank 0's order (shard="auto") and learning rate
                order = dist.order_for_epoch(order)
            order_k = k.asarray(order)
            if fast is not None:
                data = data[:3] + (order_k,)
            lr = self.optimizer.lr
            loss_sum = 0.0
            if loss_total is not None:
                k.write(loss_total, np.zeros(1))
            metrics.reset()
            step = 0
            if fast is not None:  # the full batches in runs of compiled steps (_fast_fit.py)
                for step, loss_sum, bad in fast.epoch(data, buffers.views(batch), n // batch, metrics):
                    if bad is not None:
                        return self._diverged(history, snapshot, epoch, *bad, on_divergence)
                    sigint.check()
                    logs = {"loss": loss_sum / metrics.seen, **metrics.result()}
                    for cb in cbs:
                        cb.on_batch_end(step - 1, logs)
            for step in range(step, steps):  # step by step: the rest (a last, partial batch)
                for cb in cbs:
                    cb.on_batch_begin(step)
                start = step * batch
                idx = order_k[start : start + batch]
                if dist is not None:  # MPI: this process's part of the global batch
                    lo, hi = dist.part(step)
                    idx = order_k[lo:hi]
                v = buffers.views(idx.shape[0])
                X0 = Xk[0].gather(idx) if sparse else None
                if not sparse:
                    for X_k, Xv in zip(Xk, v.X):
                        _gather_rows(k, X_k, idx, Xv)
                k.gather_rows(T2, idx, v.T2d)
                if w2 is not None:
                    k.gather_rows(w2, idx, v.w2d)
                threads = contextlib.nullcontext() if fast is None else fast.blas_threads(v)
                with self._guard.step_lock, threads:
                    if dist is not None:
                        loss = dist.step(self, v, loss_total, X0)
                    else:
                        loss = self._step(v, loss_total, X0, self._fused_sgd_lr() if fuse_sgd else None)
                sigint.check()
                if loss is not None:  # host backends: every step's loss is checked
                    if not math.isfinite(loss):
                        return self._diverged(history, snapshot, epoch, step, loss, on_divergence)
                    loss_sum += loss * v.n if self.reduction == "mean" else loss / self._sum_factor(v.n) * v.n
                if labels2 is not None:
                    k.gather_rows(labels2, idx, v.labels2d)
                metrics.add(v.out, v.T if labels is None else v.labels if dense_labels else v.T0)
                if not self._resident:
                    logs = {"loss": loss_sum / max(metrics.seen, 1), **metrics.result()}
                elif log_every is not None and ((step + 1) % log_every == 0 or step == steps - 1):
                    running = float(k.to_host(loss_total)[0])  # the one read per log_every steps
                    if not math.isfinite(running):
                        return self._diverged(history, snapshot, epoch, step, running, on_divergence)
                    logs = {"loss": running / max(metrics.seen, 1)}
                else:
                    logs = {}
                for cb in cbs:
                    cb.on_batch_end(step, logs)
            if dist is not None:  # MPI: the epoch's loss and metrics summed over the processes
                loss_sum = dist.agree_epoch(self, loss_sum, loss_total, metrics)
            if loss_total is not None:  # the one read of the epoch's loss
                loss_sum = float(k.to_host(loss_total)[0])
                if not math.isfinite(loss_sum):
                    return self._diverged(history, snapshot, epoch, steps - 1, loss_sum, on_divergence)
            if not self._finite_parameters():
                return self._diverged(history, snapshot, epoch, steps - 1, "non-finite weights", on_divergence)
            logs = {"loss": loss_sum / metrics.seen, **metrics.result(final=True)}
            if val is not None:
                scores = self._evaluate_checked(*val) if dist is None else dist.evaluate(self, *val)
                for key, value in scores.items():
                    logs["val_" + key] = value
            logs["lr"] = lr
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if dist is not None:  # MPI: stop when any process asks; weights checked in debug mode
                self.stop_training = dist.end_epoch(self, self.stop_training)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end(logs)
        return history

    def _diverged(self, history, snapshot, epoch, step, what, on_divergence):
        self._restore(snapshot)
        self.stop_training = True
        history.diverged = (epoch, step)
        message = (f"training diverged at epoch {epoch + 1}, step {step + 1}: "
                   f"{'the loss became ' + str(what) if isinstance(what, float) else what}; the weights "
                   f"and optimizer state are back to the start of epoch {epoch + 1}. "
                   + self._divergence_advice())
        if on_divergence == "raise":
            raise DivergenceError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)  # fit's caller
        return history
