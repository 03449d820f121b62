"""fastmlp.metrics against scikit-learn's functions of the same names, and bad input."""

import numpy as np
import pytest

from fastmlp import metrics

skm = pytest.importorskip("sklearn.metrics")


def _cases():
    rng = np.random.default_rng(0)
    for k, n in ((2, 1), (3, 17), (10, 997)):
        yield rng.integers(0, k, n), rng.integers(0, k, n)
    words = np.array(["cat", "dog", "bird"])
    yield words[rng.integers(0, 3, 50)], words[rng.integers(0, 2, 50)]  # 'bird' never predicted
    # a class only predicted, never true (scikit-learn 1.9 prints its supports as floats
    # here, "2.0": only the numbers are compared)
    yield np.array([0, 0, 1]), np.array([2, 2, 2])


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: f"n{len(c[0]) if hasattr(c, '__len__') else ''}")
def test_same_as_scikit_learn(case):
    y_true, y_pred = case
    assert np.array_equal(metrics.confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred))
    for normalize in ("true", "pred", "all"):
        np.testing.assert_allclose(metrics.confusion_matrix(y_true, y_pred, normalize=normalize),
                                   skm.confusion_matrix(y_true, y_pred, normalize=normalize))
    for digits in (2, 4) if np.isin(y_pred, y_true).all() else ():
        assert metrics.classification_report(y_true, y_pred, digits=digits) == \
            skm.classification_report(y_true, y_pred, digits=digits, zero_division=0)
    ours = metrics.classification_report(y_true, y_pred, output_dict=True)
    theirs = skm.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        if isinstance(value, dict):
            assert value == pytest.approx(ours[key])
        else:
            assert ours[key] == pytest.approx(value)


def test_labels_and_target_names_as_in_scikit_learn():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    labels = [3, 1, 4]  # a subset in a chosen order: the others are left out (micro avg)
    assert np.array_equal(metrics.confusion_matrix(y_true, y_pred, labels=labels),
                          skm.confusion_matrix(y_true, y_pred, labels=labels))
    names = ["three", "one", "four"]
    assert metrics.classification_report(y_true, y_pred, labels=labels, target_names=names) == \
        skm.classification_report(y_true, y_pred, labels=labels, target_names=names, zero_division=0)


def test_bad_input():
    with pytest.raises(ValueError, match="same length; got 3 and 2"):
        metrics.confusion_matrix([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="y_true must be a 1-D array"):
        metrics.confusion_matrix([[0, 1]], [0, 1])
    with pytest.raises(ValueError, match="y_true is empty"):
        metrics.confusion_matrix([], [])
    with pytest.raises(TypeError, match="y_true must be a 1-D array of labels; got a string"):
        metrics.confusion_matrix("abc", [0, 1, 2])
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.confusion_matrix([0.0, np.nan], [0, 1])
    with pytest.raises(ValueError, match="labels must not repeat"):
        metrics.confusion_matrix([0, 1], [0, 1], labels=[0, 0])
    with pytest.raises(ValueError, match="normalize must be"):
        metrics.confusion_matrix([0, 1], [0, 1], normalize="rows")
    with pytest.raises(ValueError, match="target_names must name each of the 2 classes; got 3"):
        metrics.classification_report([0, 1], [0, 1], target_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="digits must be an integer"):
        metrics.classification_report([0, 1], [0, 1], digits=-1)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    C = metrics.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1])
    fig = metrics.plot_confusion_matrix(C, labels=["a", "b", "c"], path=tmp_path / "c.png", normalize=True)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 9 and "0.50" in texts
    with pytest.raises(ValueError, match="square confusion matrix"):
        metrics.plot_confusion_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="labels must name each of the 3 classes"):
        metrics.plot_confusion_matrix(C, labels=["a"])
