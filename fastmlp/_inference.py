"""Inference every model shares (a part of model._Network): predict, predict_proba,
evaluate, in buffers of their own so that many threads may call them at once."""

from __future__ import annotations

import math
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from . import kernels as _kernels
from ._buffers import _Buffers
from ._concurrency import BufferPool
from ._metrics import Evaluation, _Metrics, evaluation
from ._typing import Inputs
from ._validation import check_int, check_verbose
from .kernels.codes import activation_code
from .layers import SOFTMAX_LOSSES
from .sparse import csr_run, issparse


class _Inference:
    """predict / predict_proba / evaluate (model._Network's)."""

    # ------------------------------------------------------------------------------------
    # inference

    def _forward_batches(self, Xs, batch_size, use):
        """Run the inputs Xs through the network in batches of batch_size, calling
        use(start, stop, Z) with each batch's outputs Z. Each call works in buffers of its
        own, taken from the model's pool and given back, and on the weights of one whole
        training step (see _concurrency), so any number of threads may run this at once on
        one model. The CUDA backend runs one model's inference calls one at a time."""
        n = Xs[0].shape[0]
        cap = min(batch_size, n)
        sparse = issparse(Xs[0])
        direct = not sparse and self._reads_rows_in_place(Xs)
        buf = self._predict_pool.take(lambda capacity: _Buffers(self, capacity, sparse=sparse), cap,
                                      sparse and self._sparse_first_layer)
        serial = self._guard.step_lock if self.device == "cuda" else nullcontext()
        try:
            with self._guard.reading(self._copy_parameters) as params, serial:
                for start in range(0, n, cap):
                    v = buf.views(min(cap, n - start))
                    X0 = csr_run(self._kernels, Xs[0], start, start + v.n) if sparse else None
                    if direct:  # the first product reads the batch's rows where they are
                        rows = Xs[0][start : start + v.n]
                        v = SimpleNamespace(**{**vars(v), "X": (rows,), "A": (rows, *v.A[1:]),
                                               "D": (rows, *v.D[1:])})
                    elif not sparse:
                        for Xv, X_j in zip(v.X, Xs):
                            self._kernels.write(Xv, X_j[start : start + v.n])
                    self._forward(v, False, X0, params)
                    use(start, start + v.n, v.out)
        finally:
            BufferPool.give(buf)

    def _reads_rows_in_place(self, Xs):
        """Whether inference may multiply X's rows as they are, without copying each batch
        into its buffer first: a Dense stack on the CPU (its layer loop in one compiled call)
        and one input, C-contiguous, aligned, writeable (as Numba types the buffers) and of
        the model's dtype. 10000 x 784 float32 rows at batch 1024: 3 ms of a 28 ms predict."""
        X = Xs[0]
        return (len(Xs) == 1 and self._kernels.name == "cpu" and getattr(self, "_dense_only", False)
                and X.dtype == self.dtype and X.ndim == 2 and X.flags.c_contiguous
                and X.flags.aligned and X.flags.writeable)

    def _outputs(self, X, batch_size):
        Xs = self._check_X(X)
        batch_size = check_int(batch_size, "batch_size")
        out = np.empty((Xs[0].shape[0], self.n_outputs), self.dtype)

        def copy_out(start, stop, Z):
            out[start:stop] = self._kernels.to_host(Z)

        self._forward_batches(Xs, batch_size, copy_out)
        self._check_overflow(out, "the network's outputs")
        return out

    def _check_overflow(self, out, what, detail=""):
        """FloatingPointError naming the first sample whose row of `out` is not finite."""
        if not np.isfinite(out).all():
            row = int(np.argwhere(~np.isfinite(out))[0][0])
            raise FloatingPointError(
                f"{what} overflowed (first at sample {row}) in {self.dtype.name}:{detail} the "
                "inputs are far outside the range the model was trained on, or the weights are "
                "too large")

    def predict(self, X: Inputs, batch_size: int = 1024,
                output: Optional[str] = None) -> np.ndarray:
        """Class labels (int64) for classification (a 0/1 matrix for several sigmoid
        outputs); outputs for regression ((n,) for one output).

        output: a layer's name: that layer's outputs (n, width) instead, after its
        activation (the features a hidden layer has learnt; for the output layer its raw
        outputs, the logits where softmax/sigmoid is fused into the loss)."""
        if output is not None:
            layer = self.get_layer(output)
            if layer is self._output_layer:
                return self._outputs(X, batch_size)
            sub = self._submodel(layer)  # a graph Model: dense input
            if issparse(X):  # (a graph Model's own _check_X refuses sparse X)
                # a Sequential's hidden outputs from sparse rows: checked as the model checks
                # them, then each batch of rows densified in turn (never the whole matrix)
                batch_size = check_int(batch_size, "batch_size")
                X = self._check_X(X)[0]
                return np.concatenate([sub._outputs(X[i : i + batch_size].toarray(), batch_size)
                                       for i in range(0, X.shape[0], batch_size)])
            return sub._outputs(X, batch_size)
        Z = self._outputs(X, batch_size)
        if self.loss in SOFTMAX_LOSSES:
            return Z.argmax(axis=1).astype(np.int64)
        if self.loss == "binary_cross_entropy":
            pred = (Z > 0).astype(np.int64)
            return pred[:, 0] if self.n_outputs == 1 else pred
        if self.loss == "poisson":  # the log link's inverse: the predicted mean
            with np.errstate(over="ignore"):
                Z = np.exp(Z, out=Z)
            self._check_overflow(Z, "the predicted means exp(output)",
                                 f" the network outputs a log-mean above "
                                 f"{math.log(np.finfo(self.dtype).max):.4g} there;")
        return Z[:, 0] if self.n_outputs == 1 else Z

    def predict_proba(self, X: Inputs, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities: softmax for cross_entropy, sigmoid for binary_cross_entropy."""
        if self.loss in ("mse", "poisson"):
            raise ValueError("predict_proba needs a classification loss; this model uses "
                             f"loss={self.loss!r} (use predict)")
        Z = self._outputs(X, batch_size)
        P = np.empty_like(Z)
        if self.loss in SOFTMAX_LOSSES:
            _kernels.backend("cpu").softmax(Z, P)
        else:
            _kernels.backend("cpu").activate(Z, activation_code("sigmoid"), P)
        return P

    def evaluate(self, X: Inputs, y: ArrayLike, batch_size: int = 1024,
                 sample_weight: Optional[ArrayLike] = None, verbose: int = 0,
                 return_dict: bool = False) -> Union[Evaluation, dict[str, float]]:
        """The mean loss and the metrics: "accuracy" (classification; "binary_accuracy" for
        several sigmoid outputs) or "mae" and "r2" (mse), as an ``Evaluation``: Keras' list
        (``loss, acc = result``: loss first, then the metrics) that reads by name too
        (``result["accuracy"]``, ``dict(result)``). ``return_dict=True`` gives a plain dict; ``verbose=1``
        prints the line ``loss: ... - accuracy: ...``."""
        batch_size = check_int(batch_size, "batch_size")
        verbose = check_verbose(verbose)
        Xs, T, labels = self._check_fit_data(X, y)
        w = self._sample_weights(sample_weight, None, labels, Xs[0].shape[0])
        return evaluation(self._evaluate_checked(Xs, T, labels, batch_size, w), return_dict,
                          verbose)

    def _evaluate_checked(self, Xs, T, labels, batch_size=1024, w=None):
        loss_sum, metrics = self._evaluate_sums(Xs, T, labels, batch_size, w)
        return {"loss": loss_sum / Xs[0].shape[0], **metrics.result(final=True)}

    def _evaluate_sums(self, Xs, T, labels, batch_size=1024, w=None):
        """The loss summed over the samples and the running metrics (fastmlp.distributed
        adds both up over the processes)."""
        k = self._kernels
        dZ = k.empty((min(batch_size, Xs[0].shape[0]), self.n_outputs), self.dtype)
        metrics = _Metrics(self, T if labels is None else None)
        loss_sum = [0.0]

        def add_batch(start, stop, Z):
            wb = None if w is None else k.asarray(w[start:stop])
            loss_sum[0] += self._loss_kernel(Z, k.asarray(T[start:stop]), dZ[: stop - start], wb) * (stop - start)
            metrics.add(Z, k.asarray(T[start:stop] if labels is None else labels[start:stop]))

        self._forward_batches(Xs, batch_size, add_batch)
        return loss_sum[0], metrics
