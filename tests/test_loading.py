"""fastmlp.load reads every fastmlp file by its format tag: a model file, an ensemble file."""

import numpy as np
import pytest

import fastmlp as fm
from helpers import blobs


def _members(X, y, n=2):
    members = [fm.MLP([4, 6, 3], seed=i) for i in range(n)]
    for m in members:
        m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    return members


def test_load_reads_an_ensemble_file_as_ensemble_load_does(tmp_path):
    X, y = blobs(n=60, d=4, k=3)
    ens = fm.Ensemble(_members(X, y), voting="soft")
    ens.save(tmp_path / "e.npz")
    back = fm.load(tmp_path / "e.npz", device="cpu")
    assert isinstance(back, fm.Ensemble) and back.voting == "soft"
    np.testing.assert_array_equal(back.predict_proba(X), ens.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X),
                                  fm.Ensemble.load(tmp_path / "e.npz").predict(X))


def test_load_still_reads_model_files_and_names_what_is_wrong(tmp_path):
    X, y = blobs(n=60, d=4, k=3)
    model = _members(X, y, 1)[0]
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(fm.load(tmp_path / "m.npz").predict(X), model.predict(X))
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a valid fastmlp model file.*not a zip"):
        fm.load(tmp_path / "t.npz")
    with pytest.raises(FileNotFoundError):
        fm.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="device"):
        fm.load(tmp_path / "m.npz", device="tpu")


def test_an_ensemble_of_members_never_trained_warns_when_it_predicts(tmp_path, recwarn):
    import warnings

    X, y = blobs(n=60, d=4, k=3)
    idle = fm.Ensemble([fm.MLP([4, 6, 3], seed=i) for i in range(2)])
    for predict in (idle.predict, idle.predict_proba, lambda X: idle.evaluate(X, y)):
        with pytest.warns(UserWarning, match=r"members \[0, 1\] of 2 were never trained"):
            predict(X)
    half = fm.Ensemble([_members(X, y, 1)[0], fm.MLP([4, 6, 3], seed=5)])
    with pytest.warns(UserWarning, match=r"members \[1\] of 2"):
        half.predict(X)
    trained = fm.Ensemble(_members(X, y))  # trained members predict without fit, silently
    trained.save(tmp_path / "e.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained.predict(X)
        fm.load(tmp_path / "e.npz").predict(X)  # loaded weights count as trained
        fm.MLP([4, 6, 3], seed=0).predict(X)  # a core model predicts on its initial weights
        given = fm.MLP([4, 6, 3], seed=7)
        given.set_weights([w + 1 for w in given.get_weights()])
        fm.Ensemble([given, _members(X, y, 1)[0]]).predict(X)
