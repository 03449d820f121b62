"""Model ensembles: several models trained on the same task, their predictions combined.

``Ensemble(members, voting="hard")`` takes the majority vote of the members' class labels
(ties broken by the mean probability of the tied classes); ``voting="soft"`` takes the class
of the highest mean probability. Regression members (loss mse) are averaged.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from . import io as fio
from ._atomic import atomic_write
from ._metrics import Evaluation, evaluation
from ._typing import Device, Inputs, PathLike
from ._validation import check_choice, check_int, check_verbose
from .callbacks import History
from .kernels import backend
from .model import _Network
from .saving import read_model, to_bytes


#: the format tag and version of the ensemble file (``Ensemble.save``)
ENSEMBLE_FORMAT = "fastmlp-ensemble"
_FORMAT_VERSION = 1


class Ensemble:
    """An ensemble of fastmlp models (Sequential, MLP or graph Models) of one task.

    members: a list of two or more models with the same inputs, outputs and loss. voting:
    "hard" (majority vote) or "soft" (mean probability). bootstrap=True trains each member
    on a bootstrap sample of the training set (drawn with `seed`), bagging as in
    scikit-learn. fit trains every member in turn (each with its own initial weights, seed
    and data order); predict, predict_proba, evaluate, save and load work as for one model.
    """

    def __init__(self, members: Sequence[_Network], voting: Literal["hard", "soft"] = "hard",
                 bootstrap: bool = False, seed: Optional[int] = None) -> None:
        if not isinstance(members, (list, tuple)) or len(members) < 2:
            raise TypeError(f"members must be a list of two or more fastmlp models; got {members!r}")
        for i, m in enumerate(members):
            if not isinstance(m, _Network):
                raise TypeError(f"members[{i}] must be a fastmlp model (Sequential, MLP, Model); got {m!r}")
        first = members[0]
        for i, m in enumerate(members[1:], 1):
            if (m.loss, m.n_outputs, m._input_widths) != (first.loss, first.n_outputs, first._input_widths):
                raise ValueError(
                    f"members[{i}] does not match members[0]: loss {m.loss!r} vs {first.loss!r}, "
                    f"outputs {m.n_outputs} vs {first.n_outputs}, inputs {m._input_widths} vs {first._input_widths}"
                )
        if len({id(m) for m in members}) != len(members):
            raise ValueError("members lists the same model twice")
        self.members = list(members)
        self.voting = check_choice(voting, "voting", ("hard", "soft"))
        if not isinstance(bootstrap, (bool, np.bool_)):
            raise TypeError(f"bootstrap must be True or False; got {bootstrap!r}")
        self.bootstrap = bool(bootstrap)
        self.seed = None if seed is None else check_int(seed, "seed", minimum=0)
        self._rng = np.random.default_rng(seed)
        self.loss = first.loss

    @property
    def n_outputs(self) -> int:
        return self.members[0].n_outputs

    def fit(self, X: Inputs, y: ArrayLike, **fit_kwargs: Any) -> list[History]:
        """Train each member with ``member.fit(X, y, **fit_kwargs)`` (on a bootstrap sample
        when bootstrap=True); returns the list of their histories."""
        Xs, _, _ = self.members[0]._check_fit_data(X, y)
        y = np.asarray(y)
        n = Xs[0].shape[0]
        histories = []
        for m in self.members:
            if self.bootstrap:
                idx = self._rng.integers(0, n, n)
                Xb = [X_j[idx] for X_j in Xs]
                histories.append(m.fit(Xb[0] if len(Xb) == 1 else Xb, y[idx], **fit_kwargs))
            else:
                histories.append(m.fit(X, y, **fit_kwargs))
        return histories

    def _warn_untrained(self):
        """A warning when some members were never trained (their weights are still those
        their initialisation drew): an ensemble of them predicts noise. Members trained,
        loaded or given weights predict without a word, as a model does without fit."""
        idle = [i for i, m in enumerate(self.members) if m._still_initial()]
        if idle:
            warnings.warn(f"Ensemble: members {idle} of {len(self.members)} were never trained "
                          "(their weights are still the initial random ones); call "
                          "ensemble.fit(X, y) or train the members first", UserWarning,
                          stacklevel=3)

    def predict_proba(self, X: Inputs, batch_size: int = 1024) -> np.ndarray:
        """The members' mean probability (softmax / sigmoid outputs)."""
        self._warn_untrained()
        return self._predict_proba(X, batch_size)

    def _predict_proba(self, X, batch_size):
        return np.mean([m.predict_proba(X, batch_size) for m in self.members], axis=0)

    def predict(self, X: Inputs, batch_size: int = 1024) -> np.ndarray:
        """Class labels by majority vote (hard; ties broken by the mean probability) or by
        the highest mean probability (soft); the mean output for regression."""
        self._warn_untrained()
        return self._predict(X, batch_size)

    def _predict(self, X, batch_size):
        if self.loss == "mse":
            return np.mean([m.predict(X, batch_size) for m in self.members], axis=0)
        P = self._predict_proba(X, batch_size)
        if self.loss == "binary_cross_entropy":  # per label: one output unit or multi-label
            if self.voting == "soft":
                pred = (P > 0.5).astype(np.int64)
            else:
                votes = np.mean([m.predict(X, batch_size).reshape(P.shape) for m in self.members], axis=0)
                pred = np.where(votes == 0.5, P > 0.5, votes > 0.5).astype(np.int64)
            return pred[:, 0] if self.n_outputs == 1 else pred
        if self.voting == "soft":
            return P.argmax(axis=1).astype(np.int64)
        votes = np.zeros_like(P, dtype=np.int64)
        for m in self.members:
            votes[np.arange(P.shape[0]), m.predict(X, batch_size)] += 1
        tied = votes == votes.max(axis=1, keepdims=True)
        return np.where(tied, P, -np.inf).argmax(axis=1).astype(np.int64)

    def evaluate(self, X: Inputs, y: ArrayLike, batch_size: int = 1024, verbose: int = 0,
                 return_dict: bool = False) -> Union[Evaluation, dict[str, float]]:
        """The mean loss of the ensemble's probabilities (the mean output for mse) and the
        accuracy of predict (or "mae", "r2" for regression), as a model's evaluate gives
        them (Keras' list, readable by name; ``return_dict=True``: a plain dict)."""
        verbose = check_verbose(verbose)
        self._warn_untrained()
        return evaluation(self._evaluate(X, y, batch_size), return_dict, verbose)

    def _evaluate(self, X, y, batch_size):
        first = self.members[0]
        Xs, T, labels = first._check_fit_data(X, y)
        X = Xs[0] if len(Xs) == 1 else list(Xs)
        if self.loss == "mse":
            Z = np.mean([m._outputs(X, batch_size) for m in self.members], axis=0).astype(np.float64)
            T2 = np.asarray(T, np.float64).reshape(Z.shape)
            ss_tot = ((T2 - T2.mean(axis=0)) ** 2).sum(axis=0)
            ss_res = ((T2 - Z) ** 2).sum(axis=0)
            r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 1.0 * (ss_res == 0))
            return {"loss": float(((Z - T2) ** 2).mean()), "mae": float(np.abs(Z - T2).mean()),
                    "r2": float(r2.mean())}
        P = np.clip(self._predict_proba(X, batch_size).astype(np.float64), 1e-12, 1 - 1e-12)
        pred = self._predict(X, batch_size)
        if self.loss == "cross_entropy":
            Q = np.eye(P.shape[1])[T] if T.ndim == 1 else T
            loss = float(-(Q * np.log(P)).sum(axis=1).mean())
            return {"loss": loss, "accuracy": float((pred == labels).mean())}
        T2 = np.asarray(T, np.float64).reshape(P.shape)
        loss = float(-(T2 * np.log(P) + (1 - T2) * np.log(1 - P)).mean())
        key = "accuracy" if self.n_outputs == 1 else "binary_accuracy"
        return {"loss": loss, key: float((pred.reshape(P.shape) == (T2 > 0.5)).mean())}

    def save(self, path: PathLike) -> None:
        """One .npz holding the ensemble's settings and each member's model file (as bytes),
        written atomically; ``Ensemble.load`` or ``fastmlp.load`` reads it back."""
        config = {"format": ENSEMBLE_FORMAT, "format_version": _FORMAT_VERSION,
                  "voting": self.voting,
                  "bootstrap": self.bootstrap, "seed": self.seed, "members": len(self.members)}
        members = {f"member{i}": np.frombuffer(to_bytes(m), np.uint8) for i, m in enumerate(self.members)}

        def write(f):
            np.savez(f, config=np.array(json.dumps(config)), **members)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: PathLike, device: Device = "auto") -> Ensemble:
        """Read an ensemble saved by ``save``. The file is read as ``fastmlp.load`` reads a
        model file (no pickle, every size checked before anything is read) and so is each
        member's model file, read in place from the ensemble file. A missing file raises
        FileNotFoundError; a bad one a ValueError naming the file (and the member)."""
        backend(device)  # a bad device name fails here, not as a complaint about the file
        path = os.fspath(path)
        with open(path, "rb") as f:
            with fio.file_errors(repr(path), "fastmlp ensemble file",
                                 prefix="cannot load the ensemble: "):
                archive = fio._Archive(f, os.fstat(f.fileno()).st_size)
                config = fio.read_config(archive, "ensemble file")
                fio._expect(config.get("format") == ENSEMBLE_FORMAT,
                            f"it is not a fastmlp ensemble (format tag {config.get('format')!r}, "
                            f"expected {ENSEMBLE_FORMAT!r})")
                fio._expect(config.get("format_version") == _FORMAT_VERSION,
                            "unsupported ensemble format version "
                            f"{config.get('format_version')!r}; this fastmlp reads version "
                            f"{_FORMAT_VERSION}")
                count = config.get("members")
                fio._expect(fio._is_int(count, 2) and count < len(archive.keys()),
                            f"config 'members' must be a whole number >= 2, one per member "
                            f"array ({len(archive.keys()) - 1} in the file); got {count!r}")
                names = [f"member{i}" for i in range(count)]
                fio._expect(archive.keys() == {"config", *names},
                            f"it holds the arrays {sorted(archive.keys())}; its config names "
                            f"'config' and {count} members ({names[0]} to {names[-1]})")
                windows = [archive.window(name) for name in names]
            members = []
            for name, (window, size) in zip(names, windows):  # each read in place, checked
                with window:
                    members.append(read_model(window, size, device, f"{path!r} (member {name!r})",
                                              prefix="cannot load the ensemble: "))
        try:
            return cls(members, voting=config.get("voting", "hard"),
                       bootstrap=config.get("bootstrap", False), seed=config.get("seed"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot load the ensemble: {path!r} is not a valid fastmlp "
                             f"ensemble file: {exc}") from None

    def __repr__(self):
        return f"Ensemble({len(self.members)} members, voting={self.voting!r}, bootstrap={self.bootstrap})"
