"""Core models pickle, deep-copy and joblib-dump through the pickle-free archive save writes,
and come back equal: same class, weights, optimizer state and predictions."""

import copy
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastmlp as fm
from helpers import blobs

X, y = blobs(n=80, d=5, k=3)


def _models():
    mlp = fm.MLP([5, 8, 3], optimizer="adam", seed=0)
    x = fm.Input(5)
    h = fm.Dense(8, activation="relu")(x)
    graph = fm.Model(x, fm.Dense(3)(fm.Add()([h, fm.Dense(8, activation="tanh")(h)])),
                     optimizer=fm.SGD(lr=0.1, momentum=0.9), seed=1)
    seq = fm.Sequential([fm.Dense(5, 6, "relu"), fm.BatchNorm(6), fm.Dense(6, 3)],
                        loss="cross_entropy", seed=2)
    for m in (mlp, graph, seq):
        m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    return {"mlp": mlp, "graph": graph, "sequential": seq}


MODELS = _models()


def _dumps_loads(how, model):
    if how == "pickle":
        return pickle.loads(pickle.dumps(model))
    if how == "deepcopy":
        return copy.deepcopy(model)
    joblib = pytest.importorskip("joblib")
    buf = io.BytesIO()
    joblib.dump(model, buf)
    buf.seek(0)
    return joblib.load(buf)


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "joblib"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_a_round_trip_gives_an_equal_model_with_weights_of_its_own(kind, how):
    model = MODELS[kind]
    back = _dumps_loads(how, model)
    assert type(back) is type(model) and back.loss == model.loss
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    # training resumes the same (optimizer state and random generator came along)
    twin = _dumps_loads(how, model)
    back.fit(X, y, epochs=1, batch_size=16, verbose=0)
    twin.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(twin.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(back.get_weights(), model.get_weights()))


def test_the_pickle_holds_no_code_and_loads_in_a_fresh_process(tmp_path):
    data = pickle.dumps(MODELS["mlp"])
    (tmp_path / "m.pkl").write_bytes(data)
    np.save(tmp_path / "X.npy", X)
    code = ("import pickle, numpy as np\n"
            f"m = pickle.load(open({str(tmp_path / 'm.pkl')!r}, 'rb'))\n"
            f"np.save({str(tmp_path / 'p.npy')!r}, m.predict_proba(np.load({str(tmp_path / 'X.npy')!r})))\n"
            "print(type(m).__name__, m.device)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["MLP", "cpu"]
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), MODELS["mlp"].predict_proba(X))


def test_a_model_pickled_for_a_missing_device_comes_back_on_auto(monkeypatch):
    from fastmlp import _network

    model = MODELS["mlp"]
    reduce_fn, (data, device, cls) = model.__reduce__()
    back = reduce_fn(data, "cuda", cls)  # as if pickled on a GPU machine
    assert back.device == fm.kernels.backend("auto").name
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert reduce_fn is _network._unpickle
