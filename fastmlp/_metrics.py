"""The running metrics of an epoch (and of evaluate): accuracy for classification,
binary_accuracy for multi-label outputs, MAE and R^2 for regression."""

import numpy as np


class Evaluation(tuple):
    """What ``evaluate`` returns: Keras' list (the loss, then the metrics in the order fit
    logs them) whose values can also be read by name:

        result = model.evaluate(X, y)      # Evaluation(loss=0.08, accuracy=0.97)
        loss, accuracy = result            # unpacked as Keras' list: the numbers
        result["accuracy"]                 # by name; result.keys(), .items(), dict(result)

    A sequence of numbers, never of names: unpacking, iterating, ``pytest.approx`` and
    ``np.asarray`` see the values. ``"loss" in result`` asks for a name; ``dict(result)``
    and ``{**result}`` give the dict; ``evaluate(return_dict=True)`` gives it directly."""

    def __new__(cls, scores):
        self = super().__new__(cls, [float(v) for v in scores.values()])
        self._names = tuple(scores)
        return self

    def keys(self):
        return list(self._names)

    def values(self):
        return list(tuple.__iter__(self))

    def items(self):
        return list(zip(self.keys(), self.values()))

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self.keys().index(key))
            except ValueError:
                raise KeyError(f"{key!r}: evaluate gave {self.keys()}") from None
        return tuple.__getitem__(self, key)

    def get(self, key, default=None):
        return self[key] if key in self.keys() else default

    def __contains__(self, key):
        return key in self.keys() if isinstance(key, str) else tuple.__contains__(self, key)

    def __eq__(self, other):
        if isinstance(other, dict):
            return dict(self.items()) == other
        return tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self):
        return "Evaluation(" + ", ".join(f"{k}={v!r}" for k, v in self.items()) + ")"

    def __reduce__(self):
        return (type(self), (dict(self.items()),))

    def format(self):
        """One line: ``loss: 0.0812 - accuracy: 0.9700``."""
        return " - ".join(f"{name}: {value:.4f}" for name, value in self.items())


def evaluation(scores, return_dict=False, verbose=0):
    """`scores` (a dict: loss first, then the metrics) as evaluate returns it, printed as
    one line when `verbose`."""
    if not isinstance(return_dict, (bool, np.bool_)):
        raise TypeError(f"return_dict must be True or False; got {return_dict!r}")
    result = Evaluation(scores)
    if verbose:
        print(result.format(), flush=True)
    return dict(result.items()) if return_dict else result


class _Metrics:
    """Running metrics of an epoch.

    accuracy: right rows for cross_entropy and for one sigmoid output; binary_accuracy (Keras'
    name): the fraction of right labels, (Z > 0) == T, for K > 1 sigmoid outputs; R^2 is
    sklearn's r2_score (uniform average over outputs): 1 - SS_res / SS_tot, with SS_tot of the
    targets of the whole set (passed as T) and SS_res summed batch by batch. On CUDA the sums
    stay on the device until the epoch's end (``result(final=True)``).
    """

    def __init__(self, model, T=None):
        self.k = model._kernels
        self.resident = model._resident
        self.classification = model.loss in ("cross_entropy", "kl_divergence", "binary_cross_entropy")
        self.poisson = model.loss == "poisson"  # its loss is the metric (outputs are logs)
        self.multilabel = model.loss == "binary_cross_entropy" and model.n_outputs > 1
        self.key = "binary_accuracy" if self.multilabel else "accuracy"
        self.per_row = 1 if not self.multilabel else model.n_outputs
        if self.poisson:
            pass
        elif not self.classification:
            T64 = np.asarray(T, np.float64).reshape(T.shape[0], -1)
            self.n_total = T64.shape[0]
            self.ss_tot = ((T64 - T64.mean(axis=0)) ** 2).sum(axis=0)
            self.abs_err = self.k.zeros(T64.shape[1], np.float64)
            self.sq_err = self.k.zeros(T64.shape[1], np.float64)
        elif self.resident:
            self.correct_total = self.k.zeros(1, np.int64)
        self.reset()

    def reset(self):
        self.seen = 0
        self.correct = 0
        if self.poisson:
            pass
        elif not self.classification:
            self.k.write(self.abs_err, np.zeros(self.abs_err.shape))
            self.k.write(self.sq_err, np.zeros(self.sq_err.shape))
        elif self.resident:
            self.k.write(self.correct_total, np.zeros(1, np.int64))

    def add(self, Z, target):
        """Z: the batch's outputs; target: class labels (accuracy), the 0/1 targets
        (binary_accuracy) or the targets (regression)."""
        self.seen += Z.shape[0]
        if self.poisson:
            pass
        elif self.classification:
            count = self.k.count_binary_correct if self.multilabel else self.k.count_correct
            if self.resident:
                count(Z, target, total=self.correct_total)
            else:
                self.correct += count(Z, target)
        else:
            self.k.regression_sums(Z, target, self.abs_err, self.sq_err)

    def result(self, final=False):
        if (self.resident and not final) or self.poisson:
            return {}
        if self.classification:
            correct = int(self.k.to_host(self.correct_total)[0]) if self.resident else self.correct
            return {self.key: correct / (self.seen * self.per_row)}
        abs_err = self.k.to_host(self.abs_err) if final else self.abs_err
        sq_err = self.k.to_host(self.sq_err) if final else self.sq_err
        ss_tot = self.ss_tot * (self.seen / self.n_total)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - sq_err / ss_tot, np.where(sq_err == 0, 1.0, 0.0))
        return {"mae": float(abs_err.sum() / (self.seen * abs_err.size)), "r2": float(r2.mean())}
