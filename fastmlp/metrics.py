"""Evaluating a classifier's predictions: the confusion matrix and a per-class report.

    from fastmlp import metrics
    C = metrics.confusion_matrix(y_test, model.predict(X_test))     # C[i, j]: true i, predicted j
    print(metrics.classification_report(y_test, model.predict(X_test)))
    metrics.plot_confusion_matrix(C, path="confusion.png")           # needs matplotlib

The same definitions and layout as scikit-learn's functions of the same names (a class with
no predictions has precision 0, one with no samples recall 0), without needing it.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from ._typing import PathLike

__all__ = ["confusion_matrix", "classification_report", "plot_confusion_matrix"]


def _labels_1d(y, name):
    if isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be a 1-D array of labels; got a string")
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to evaluate")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf; labels must be finite")
    return arr


def _check_pair(y_true, y_pred, labels):
    y_true = _labels_1d(y_true, "y_true")
    y_pred = _labels_1d(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length; got {y_true.shape[0]} "
                         f"and {y_pred.shape[0]}")
    if labels is None:
        labels = np.union1d(y_true, y_pred)
    else:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D list of labels; got {labels!r}")
        if np.unique(labels).size != labels.size:
            raise ValueError(f"labels must not repeat; got {labels.tolist()}")
    return y_true, y_pred, labels


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, labels: Optional[ArrayLike] = None,
                     normalize: Optional[Literal["true", "pred", "all"]] = None
                     ) -> np.ndarray:
    """C[i, j] = number of samples of true class labels[i] predicted as labels[j] (int64).

    labels: the classes, in the order of the rows and columns (default: every label seen in
    y_true or y_pred, sorted); samples with other labels are left out. normalize: None,
    "true" (rows sum to 1), "pred" (columns sum to 1) or "all" (float64 then).
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}")
    y_true, y_pred, labels = _check_pair(y_true, y_pred, labels)
    k = labels.size
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]

    def index(y):
        pos = np.clip(np.searchsorted(sorted_labels, y), 0, k - 1)
        found = sorted_labels[pos] == y
        return order[pos], found

    i, found_true = index(y_true)
    j, found_pred = index(y_pred)
    keep = found_true & found_pred
    C = np.zeros((k, k), np.int64)
    np.add.at(C, (i[keep], j[keep]), 1)
    if normalize is None:
        return C
    with np.errstate(divide="ignore", invalid="ignore"):
        total = {"true": C.sum(axis=1, keepdims=True), "pred": C.sum(axis=0, keepdims=True),
                 "all": C.sum()}[normalize]
        return np.nan_to_num(C / total)


def _scores(y_true, y_pred, labels):
    """Per class of `labels`: precision, recall, F1 and support, counting every sample
    (also those whose other label is not among `labels`)."""
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], np.float64)
    predicted = np.array([np.sum(y_pred == c) for c in labels])
    support = np.array([np.sum(y_true == c) for c in labels])
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return tp, predicted, precision, recall, f1, support


def classification_report(y_true: ArrayLike, y_pred: ArrayLike,
                          labels: Optional[ArrayLike] = None,
                          target_names: Optional[Sequence[Any]] = None, digits: int = 2,
                          output_dict: bool = False) -> Union[str, dict[str, Any]]:
    """Precision, recall, F1 and support of each class, with accuracy, macro and weighted
    averages: a text table as scikit-learn prints it, or a dict (output_dict=True)."""
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 0:
        raise ValueError(f"digits must be an integer >= 0; got {digits!r}")
    y_true, y_pred, labels = _check_pair(y_true, y_pred, labels)
    if target_names is None:
        names = [str(label) for label in labels]
    else:
        names = [str(name) for name in target_names]
        if len(names) != labels.size:
            raise ValueError(f"target_names must name each of the {labels.size} classes; "
                             f"got {len(names)} names")
    tp, predicted, precision, recall, f1, support = _scores(y_true, y_pred, labels)
    total = int(support.sum())
    rows = {name: {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)}
    # accuracy over every sample (micro average) when the labels cover every class seen
    all_seen = np.isin(np.union1d(y_true, y_pred), labels).all()
    averages = {}
    if all_seen:
        averages["accuracy"] = float(np.mean(y_true == y_pred))
    else:
        mp = tp.sum() / predicted.sum() if predicted.sum() else 0.0
        mr = tp.sum() / total if total else 0.0
        averages["micro avg"] = {"precision": float(mp), "recall": float(mr),
                                 "f1-score": float(2 * mp * mr / (mp + mr)) if mp + mr else 0.0,
                                 "support": total}
    per_class = {"precision": precision, "recall": recall, "f1-score": f1}
    for name, weights in (("macro avg", None), ("weighted avg", support)):
        no_weight = weights is not None and total == 0  # no sample of these classes
        averages[name] = {key: 0.0 if no_weight else float(np.average(v, weights=weights))
                          for key, v in per_class.items()}
        averages[name]["support"] = total
    if output_dict:
        return {**rows, **averages}

    width = max(len("weighted avg"), max(len(n) for n in names), digits)
    head = " " * (width + 1) + "".join(f" {h:>9}" for h in ("precision", "recall", "f1-score", "support"))
    lines = [head, ""]

    def row(name, r):
        return (f"{name:>{width}} " + "".join(f" {r[key]:>9.{digits}f}" for key in ("precision", "recall", "f1-score"))
                + f" {r['support']:>9}")

    lines += [row(name, r) for name, r in rows.items()]
    lines.append("")
    for name, value in averages.items():
        if name == "accuracy":
            lines.append(f"{name:>{width}} " + " " * 20 + f" {value:>9.{digits}f} {total:>9}")
        else:
            lines.append(row(name, value))
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(C: ArrayLike, labels: Optional[Sequence[Any]] = None,
                          path: Optional[PathLike] = None, normalize: bool = False,
                          title: str = "confusion matrix") -> Any:
    """Draw a confusion matrix (from confusion_matrix) as a heat map with the counts written
    in; normalize=True shows each row as fractions. Saves to `path` when given; returns the
    matplotlib Figure (the ``plot`` extra; pyplot is not used, no window opens)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_confusion_matrix needs matplotlib: pip install 'fastmlp[plot]'") from None
    C = np.asarray(C)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
        raise ValueError(f"C must be a square confusion matrix; got shape {C.shape}")
    if C.dtype.kind not in "iuf" or (C < 0).any():
        raise ValueError("C must hold counts >= 0 (as confusion_matrix returns)")
    k = C.shape[0]
    names = [str(i) for i in range(k)] if labels is None else [str(n) for n in labels]
    if len(names) != k:
        raise ValueError(f"labels must name each of the {k} classes; got {len(names)}")
    shown = C.astype(np.float64)
    if normalize:
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.nan_to_num(shown / shown.sum(axis=1, keepdims=True))
    fig = Figure(figsize=(1.0 + 0.55 * k, 0.6 + 0.5 * k), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(C[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > threshold else "black")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
