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
