"""evaluate's result reads as a dict and unpacks as Keras' list: a tutorial's
``loss, acc = model.evaluate(...)`` gets the numbers, never the names."""

import json
import pickle

import numpy as np
import pytest

import fastmlp as fm
from helpers import blobs


@pytest.fixture(scope="module")
def trained():
    X, y = blobs(n=90, d=4, k=3)
    model = fm.MLP([4, 8, 3], optimizer=fm.Adam(lr=0.05), seed=0)
    model.fit(X, y, epochs=5, batch_size=16, verbose=0)
    return model, X, y


def test_unpacking_gives_the_loss_then_the_metrics(trained):
    model, X, y = trained
    result = model.evaluate(X, y)
    loss, accuracy = result
    assert isinstance(loss, float) and isinstance(accuracy, float)
    assert loss == result["loss"] and accuracy == result["accuracy"]
    assert accuracy == pytest.approx(np.mean(model.predict(X) == y))
    assert list(result) == [loss, accuracy] and list(result.keys()) == ["loss", "accuracy"]
    assert result[0] == loss and result[-1] == accuracy
    (mse_loss, mae, r2) = fm.MLP([4, 5, 1], loss="mse", seed=0).evaluate(X, y.astype(float))
    assert all(isinstance(v, float) for v in (mse_loss, mae, r2))


def test_it_reads_by_name_and_converts_to_a_dict(trained):
    model, X, y = trained
    result = model.evaluate(X, y)
    assert "loss" in result and "val_loss" not in result and result.get("val_loss") is None
    assert dict(result) == {"loss": result["loss"], "accuracy": result["accuracy"]}
    assert {**result} == dict(result.items()) == result  # equal to the dict it names
    assert json.loads(json.dumps(dict(result))) == dict(result)
    assert json.loads(json.dumps(result)) == list(result)  # as Keras' list
    again = pickle.loads(pickle.dumps(result))
    assert type(again) is type(result) and again == result and again.keys() == result.keys()
    assert repr(result).startswith("Evaluation(loss=")
    with pytest.raises(KeyError, match="evaluate gave"):
        result["acc"]


def test_generic_sequence_code_sees_the_numbers(trained):
    """pytest.approx, NumPy and zip see the values, as for Keras' list: nothing that
    iterates over the result gets the names."""
    model, X, y = trained
    result = model.evaluate(X, y)
    assert result == pytest.approx(model.evaluate(X, y))
    np.testing.assert_array_equal(np.asarray(result), [result["loss"], result["accuracy"]])
    assert dict(zip(["l", "a"], result)) == {"l": result["loss"], "a": result["accuracy"]}


def test_return_dict_and_verbose(trained, capsys):
    model, X, y = trained
    plain = model.evaluate(X, y, return_dict=True)
    assert type(plain) is dict and list(plain) == ["loss", "accuracy"]
    model.evaluate(X, y, verbose=1)
    line = capsys.readouterr().out.strip()
    assert line.startswith("loss: ") and " - accuracy: " in line
    with pytest.raises(TypeError, match="return_dict must be True or False"):
        model.evaluate(X, y, return_dict="yes")
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        model.evaluate(X, y, verbose=3)


def test_an_ensemble_evaluates_the_same_way(trained):
    _, X, y = trained
    members = [fm.MLP([4, 8, 3], seed=s) for s in (1, 2)]
    for m in members:
        m.fit(X, y, epochs=3, verbose=0)
    loss, accuracy = fm.Ensemble(members).evaluate(X, y)
    assert isinstance(loss, float) and 0 <= accuracy <= 1
    assert type(fm.Ensemble(members).evaluate(X, y, return_dict=True)) is dict
