"""Saving and loading models (model.save, fastmlp.load; fastmlp/saving.py, io.py, _atomic.py):
round trips of MLPs and graph models, resuming training, devices, atomic writes (a save
killed midway included), and files that are truncated, forged or foreign (always a clear
ValueError, never code run)."""

import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import io as fio
from fastmlp import _atomic, saving
from _shared_graphs import GRAPH_IDS, GRAPHS, XA, Y3, concat_two_inputs, data_for
from helpers import assert_same_weights, blobs, mlp

D, K = 5, 3


def _blobs(n=64):
    return blobs(n, D, K)


def _model(optimizer=None, device="cpu", dtype="float32", seed=0, **kw):
    optimizer = optimizer if optimizer is not None else fastmlp.SGD(lr=0.05, momentum=0.9)
    return fastmlp.MLP([D, 8, 6, K], activation=["tanh", "relu"], optimizer=optimizer,
                       device=device, dtype=dtype, seed=seed, **kw)


def _same_weights(a, b):
    assert_same_weights(a.get_weights(), b.get_weights())


@pytest.fixture
def saved(tmp_path):
    """A small trained model saved to a file: (model, path, bytes of the file)."""
    X, y = _blobs()
    model = _model(optimizer=fastmlp.Adam(lr=0.01))
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path, path.read_bytes()


def _members(data):
    """{name: bytes} of the members of an .npz given as bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def _config(data):
    return json.loads(str(np.load(io.BytesIO(_members(data)["config.npy"]))))


def _with_config(data, config):
    members = _members(data)
    members["config.npy"] = _npy(np.array(json.dumps(config)))
    return _zip(members)


def _load_bytes(tmp_path, data, name="forged.npz"):
    path = tmp_path / name
    path.write_bytes(data)
    return fastmlp.load(path)


def _rewrite_graph_config(path, edit):
    """Change the JSON config of a saved model file."""
    with np.load(path) as f:
        members = {k: f[k] for k in f.files}
    config = json.loads(str(members["config"][()]))
    edit(config)
    members["config"] = np.array(json.dumps(config))
    np.savez(path, **members)


# ---------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("make", [
    lambda: _model(),
    lambda: _model(dtype="float64", optimizer=fastmlp.SGD(lr=0.1, nesterov=True, momentum=0.5)),
    lambda: _model(optimizer=fastmlp.AdamW(lr=0.01)),
    lambda: _model(optimizer=fastmlp.RMSprop(lr=0.01)),
    lambda: fastmlp.MLP([D, 8, K], dropout=0.25, batch_norm=True, device="cpu", seed=0,
                        optimizer=fastmlp.Adam(lr=0.01)),
    lambda: fastmlp.MLP([D, 4, 2], loss="mse", output="sigmoid", device="cpu", seed=0),
], ids=["sgd", "float64-nesterov", "adamw", "rmsprop", "dropout-batchnorm", "mse"])
def test_round_trip_keeps_everything(tmp_path, make):
    X, y = _blobs()
    model = make()
    target = y if model.loss == "cross_entropy" else np.stack([y == 0, y == 1], 1).astype(float)
    model.fit(X, target, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fastmlp.load(path)
    assert loaded.get_config() == model.get_config()
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    _same_weights(loaded, model)
    for name in model.optimizer.state_names:
        np.testing.assert_array_equal(loaded._opt_state[name], model._opt_state[name])
    assert loaded._opt_state["step"] == model._opt_state["step"] > 0
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_file_layout(saved):
    model, path, data = saved
    with np.load(path, allow_pickle=False) as npz:  # a plain .npz, no pickle needed
        names = set(npz.files)
        config = json.loads(str(npz["config"]))
        W1 = npz["W1"]
    assert config["format"] == "fastmlp-model" and config["format_version"] == 3
    assert config["fastmlp_version"] == fastmlp.__version__
    assert config["dtype"] == "float32" and config["loss"] == "cross_entropy"
    assert [l["type"] for l in config["layers"]] == ["Dense"] * 3
    assert config["layers"][0] == {"type": "Dense", "in_features": D, "out_features": 8,
                                            "activation": "tanh"}
    assert config["weights"] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert config["optimizer_state"] == ["optimizer_exp_avg", "optimizer_exp_avg_sq"]
    assert config["optimizer_step"] == model._opt_state["step"]
    assert names == {"config", *config["weights"], *config["optimizer_state"]}
    np.testing.assert_array_equal(W1, model.get_weights()[0])
    # every member stored uncompressed, so sizes can be checked against the file
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_arrays_follow_the_parameter_list_order(tmp_path):
    model = fastmlp.MLP([D, 8, K], batch_norm=True, device="cpu", seed=0)
    model.save(tmp_path / "bn.npz")
    config = _config((tmp_path / "bn.npz").read_bytes())
    assert config["weights"] == ["W1", "b1", "layers[1].gamma", "layers[1].beta",
                                 "layers[1].running_mean", "layers[1].running_var", "W2", "b2"]
    with np.load(tmp_path / "bn.npz") as npz:
        for name, ref in zip(config["weights"], model.get_weights()):
            np.testing.assert_array_equal(npz[name], ref)


def test_to_bytes_and_from_bytes(saved):
    model, _, _ = saved
    data = saving.to_bytes(model)
    copy = saving.from_bytes(data, device="cpu")
    _same_weights(copy, model)
    with pytest.raises(TypeError):
        saving.from_bytes("not bytes")


def test_loads_version_1_files(tmp_path):
    """Files written by the first format (flat config, W<i>/b<i>) still load."""
    X, y = _blobs()
    model = _model()
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    cfg = model.get_config()
    config = {"layers": [{k: v for k, v in l.items() if k != "type"} for l in cfg["layers"]],
              "loss": cfg["loss"], "optimizer": cfg["optimizer"], "dtype": cfg["dtype"],
              "seed": cfg["seed"], "format": "fastmlp-model", "format_version": 1,
              "fastmlp_version": "0.1.0", "optimizer_step": int(model._opt_state["step"]),
              "rng_state": model._rng.bit_generator.state}
    arrays = {"config": np.array(json.dumps(config))}
    for i, (W, b) in enumerate(zip(model.get_weights()[0::2], model.get_weights()[1::2])):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    arrays["optimizer_momentum_buffer"] = model._opt_state["momentum_buffer"]
    np.savez(tmp_path / "v1.npz", **arrays)
    loaded = fastmlp.load(tmp_path / "v1.npz")
    _same_weights(loaded, model)
    np.testing.assert_array_equal(loaded._opt_state["momentum_buffer"],
                                  model._opt_state["momentum_buffer"])
    a = model.fit(X, y, epochs=1, batch_size=16, verbose=0).history["loss"]
    b = loaded.fit(X, y, epochs=1, batch_size=16, verbose=0).history["loss"]
    assert a == b


@pytest.mark.parametrize("version", [2, 3])
def test_loads_files_with_the_older_member_names(tmp_path, version):
    """Files of format 2 and 3 written before the members took get_weights' labels
    (W0, b0, gamma1, running_mean1...: '<name><layer index>') still load, weights, state,
    optimizer state and all."""
    X, y = _blobs()
    model = fastmlp.MLP([D, 8, K], batch_norm=True, optimizer=fastmlp.Adam(lr=0.01), device="cpu",
                        seed=0)
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "new.npz")
    members = _members((tmp_path / "new.npz").read_bytes())
    config = _config((tmp_path / "new.npz").read_bytes())
    old = ["W0", "b0", "gamma1", "beta1", "running_mean1", "running_var1", "W2", "b2"]
    renamed = {"config.npy": _npy(np.array(json.dumps(dict(config, weights=old,
                                                             format_version=version))))}
    for new_name, old_name in zip(config["weights"], old):
        renamed[f"{old_name}.npy"] = members[f"{new_name}.npy"]
    for name in config["optimizer_state"]:
        renamed[f"{name}.npy"] = members[f"{name}.npy"]
    loaded = _load_bytes(tmp_path, _zip(renamed))
    _same_weights(loaded, model)
    for name in model.optimizer.state_names:
        np.testing.assert_array_equal(loaded._opt_state[name], model._opt_state[name])
    a = model.fit(X, y, epochs=1, batch_size=16, verbose=0).history["loss"]
    b = loaded.fit(X, y, epochs=1, batch_size=16, verbose=0).history["loss"]
    assert a == b


def test_compressed_npz_loads(saved, tmp_path):
    """A valid file re-packed with deflate (as np.savez_compressed would) still loads."""
    model, _, data = saved
    loaded = _load_bytes(tmp_path, _zip(_members(data), zipfile.ZIP_DEFLATED))
    _same_weights(loaded, model)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path, dtype):
    X, y = blobs()
    model = mlp(sizes=(4, 8, 6, 3), activation=["tanh", "elu"], dtype=dtype,
                   optimizer=fastmlp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4))
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastmlp.load(path)
    assert type(loaded).__name__ in ("Sequential", "MLP")
    assert loaded.device == "cpu"
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.sizes == model.sizes
    assert [l.activation for l in loaded.layers] == ["tanh", "elu", "identity"]
    assert loaded.loss == model.loss
    assert type(loaded.optimizer) is fastmlp.SGD
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.get_config() == model.get_config()
    assert_same_weights(loaded.get_weights(), model.get_weights())
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


def test_saved_file_loads_without_pickle(tmp_path):
    path = tmp_path / "model.npz"
    mlp().save(path)
    with np.load(path, allow_pickle=False) as data:
        assert "config" in data.files
        assert {"W1", "b1", "W2", "b2"} <= set(data.files)  # get_weights' labels
        np.testing.assert_array_equal(data["W1"], mlp().get_weights()[0])


@pytest.mark.parametrize("make", GRAPHS, ids=GRAPH_IDS)
def test_graph_save_load_round_trip(make, tmp_path):
    inputs, out = make()
    model = fastmlp.Model(inputs, out, seed=0, optimizer="adam")
    X = data_for(inputs)
    model.fit(X, Y3, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    assert isinstance(loaded, fastmlp.Model) and loaded._input_names == model._input_names
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.train_step(X, Y3) == model.train_step(X, Y3)


def test_format_2_files_still_load(tmp_path):
    model = fastmlp.MLP([6, 5, 3], seed=0)
    model.save(tmp_path / "m.npz")
    _rewrite_graph_config(tmp_path / "m.npz", lambda c: c.update(format_version=2))
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "m.npz").predict(XA), model.predict(XA))
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        assert "config.npy" in z.namelist()


# ---------------------------------------------------------------------------------------
# resuming training and devices


_OPTIMIZERS = [lambda: fastmlp.SGD(lr=0.05, momentum=0.9, nesterov=True),
               lambda: fastmlp.Adam(lr=0.01),
               lambda: fastmlp.RMSprop(lr=0.01, momentum=0.5)]


@pytest.mark.parametrize("make_opt", _OPTIMIZERS, ids=["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropout"])
def test_resume_is_bit_identical_to_a_straight_run(tmp_path, make_opt, dropout):
    """2 epochs, save, load, 2 more == 4 epochs straight, bit for bit (same seed; the
    optimizer state, step count and the generator behind the dropout masks come back)."""
    X, y = _blobs(n=80)
    straight = _model(optimizer=make_opt(), dropout=dropout)
    h = straight.fit(X, y, epochs=4, batch_size=16, shuffle=False, verbose=0)

    first = _model(optimizer=make_opt(), dropout=dropout)
    h1 = first.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    first.save(tmp_path / "half.npz")
    del first
    resumed = fastmlp.load(tmp_path / "half.npz", device="cpu")
    h2 = resumed.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)

    assert h1.history["loss"] + h2.history["loss"] == h.history["loss"]
    _same_weights(resumed, straight)


@pytest.mark.parametrize("make_opt", _OPTIMIZERS, ids=["sgd", "adam", "rmsprop"])
def test_resume_with_shuffling_continues_the_same_batches(tmp_path, make_opt):
    """With shuffle=True, a saved and reloaded model draws the same batches as the model
    that was never saved: fit(2); save; load; fit(2) == fit(2); fit(2)."""
    X, y = _blobs(n=80)
    kept = _model(optimizer=make_opt(), dropout=0.2)
    kept.fit(X, y, epochs=2, batch_size=16, verbose=0)
    kept.save(tmp_path / "half.npz")
    resumed = fastmlp.load(tmp_path / "half.npz", device="cpu")
    a = kept.fit(X, y, epochs=2, batch_size=16, verbose=0).history["loss"]
    b = resumed.fit(X, y, epochs=2, batch_size=16, verbose=0).history["loss"]
    assert a == b
    _same_weights(resumed, kept)


@pytest.mark.parametrize("src,dst", [("cpu", "reference"), ("reference", "cpu")])
def test_saved_on_one_device_loads_on_another(tmp_path, src, dst):
    X, y = _blobs()
    model = _model(device=src, dtype="float64", optimizer=fastmlp.Adam(lr=0.01))
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / "m.npz")
    other = fastmlp.load(tmp_path / "m.npz", device=dst)
    assert model.device == src and other.device == dst
    _same_weights(other, model)
    np.testing.assert_allclose(other.predict_proba(X), model.predict_proba(X), rtol=1e-12)
    # and training goes on the same way on the other device
    a = model.fit(X, y, epochs=1, batch_size=16, verbose=0).history["loss"][0]
    b = other.fit(X, y, epochs=1, batch_size=16, verbose=0).history["loss"][0]
    assert a == pytest.approx(b, rel=1e-10)
    for wa, wb in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-9, atol=1e-12)


def test_bad_device_is_about_the_device(saved):
    _, path, _ = saved
    with pytest.raises(ValueError, match="device"):
        fastmlp.load(path, device="tpu")


@pytest.mark.parametrize("make_opt", [
    lambda: fastmlp.SGD(lr=0.05, momentum=0.9),
    lambda: fastmlp.Adam(lr=0.01),
    lambda: fastmlp.AdamW(lr=0.01, weight_decay=0.1),
    lambda: fastmlp.Adam(lr=0.01, weight_decay=0.01, decoupled=False),
], ids=["sgd-momentum", "adam", "adamw", "adam-coupled"])
def test_save_load_restores_optimizer_state(tmp_path, make_opt):
    X, y = blobs()
    model = mlp(optimizer=make_opt())
    model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastmlp.load(path)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    # a copy with the same weights but a fresh optimizer state, for contrast
    fresh = mlp(optimizer=make_opt())
    fresh.set_weights(model.get_weights())

    model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    fresh.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(loaded.get_weights(), model.get_weights())
    assert not np.array_equal(fresh.get_weights()[0], model.get_weights()[0])


def test_save_load_then_train_step(tmp_path):
    X, y = blobs(n=16)
    model = mlp(optimizer=fastmlp.Adam(lr=0.01))
    model.train_step(X, y)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    assert loaded.train_step(X, y) == model.train_step(X, y)
    assert_same_weights(loaded.get_weights(), model.get_weights())


def test_load_on_reference_device(tmp_path):
    X, _ = blobs(n=10)
    model = mlp(dtype="float64")
    path = tmp_path / "model.npz"
    model.save(path)
    ref = fastmlp.load(path, device="reference")
    assert ref.device == "reference"
    np.testing.assert_allclose(ref.predict_proba(X), model.predict_proba(X), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# atomic writes


def test_crash_mid_save_leaves_the_old_file_whole(saved, monkeypatch):
    model, path, before = saved
    other = _model(seed=5)

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # e.g. the process is interrupted mid-write

    monkeypatch.setattr(fio.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]
    _same_weights(fastmlp.load(path), model)


def test_failed_rename_leaves_the_old_file_whole(saved, monkeypatch):
    _, path, before = saved

    def fail(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(_atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        _model(seed=3).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]


def test_save_fsyncs_the_file_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    _model().save(tmp_path / "m.npz")
    assert False in synced  # the temporary file, before the rename
    if os.name == "posix":
        assert synced[-1] is True  # then the folder, after it


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_permissions(tmp_path):
    path = tmp_path / "m.npz"
    old = os.umask(0o022)
    try:
        _model().save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # as open() would create it
    path.chmod(0o600)
    _model().save(path)  # overwriting keeps the file's permissions
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_leaves_no_temporary_files(tmp_path):
    model = mlp()
    path = tmp_path / "model.npz"
    model.save(path)
    model.save(path)  # overwriting is fine too
    model.save(str(tmp_path / "other.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "other.npz"]


def test_save_overwrites_atomically(tmp_path):
    X, _ = blobs(n=5)
    path = tmp_path / "model.npz"
    mlp(seed=0).save(path)
    second = mlp(seed=1)
    second.save(path)
    np.testing.assert_array_equal(fastmlp.load(path).predict_proba(X), second.predict_proba(X))


def test_failed_save_leaves_no_temporary_files(tmp_path):
    model = mlp()
    target = tmp_path / "model.npz"
    target.mkdir()  # renaming a file over a directory fails
    with pytest.raises(OSError):
        model.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    assert list(target.iterdir()) == []


_SAVER = """
import sys, numpy as np, fastmlp
path = sys.argv[1]
models = [fastmlp.MLP([1000, 1000, 10], seed=s, dtype="float64") for s in (1, 2)]
i = 0
print("ready", flush=True)
while True:
    models[i % 2].save(path)
    i += 1
"""


def test_a_save_killed_midway_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "model.npz"
    expected = [fastmlp.MLP([1000, 1000, 10], seed=s, dtype="float64").get_weights()[0] for s in (1, 2)]
    fastmlp.MLP([1000, 1000, 10], seed=1, dtype="float64").save(path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))  # somewhere in the middle of a save (each takes ~0.1 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        W = fastmlp.load(path).get_weights()[0]
        assert any(np.array_equal(W, e) for e in expected)


# ---------------------------------------------------------------------------------------
# bad files: always a ValueError, never code executed


def test_truncated_at_every_offset(saved, tmp_path):
    _, _, data = saved
    offsets = sorted(set(range(0, len(data), max(1, len(data) // 300)))
                     | set(range(0, 64)) | set(range(len(data) - 64, len(data))))
    path = tmp_path / "cut.npz"
    for n in offsets:
        path.write_bytes(data[:n])
        with pytest.raises(ValueError, match="not a valid fastmlp model file"):
            fastmlp.load(path)


def test_random_bytes_and_other_files(tmp_path):
    rng = np.random.default_rng(0)
    for i, data in enumerate([b"", rng.bytes(10), rng.bytes(5000), b"PK\x03\x04" + rng.bytes(500),
                              b"PK\x05\x06" + bytes(18), "hello, world".encode()]):
        with pytest.raises(ValueError, match="not a valid fastmlp model file"):
            _load_bytes(tmp_path, data, f"r{i}.npz")
    # an .npy (not an archive), a text file, a plain zip
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(ValueError):
        fastmlp.load(tmp_path / "a.npy")
    with pytest.raises(ValueError, match="member"):
        _load_bytes(tmp_path, _zip({"readme.txt": b"hi"}))


def test_zip_with_other_members(saved, tmp_path):
    _, _, data = saved
    members = _members(data)
    with pytest.raises(ValueError, match="evil.py"):
        _load_bytes(tmp_path, _zip({**members, "evil.py": b"import os"}))
    with pytest.raises(ValueError, match="extra"):
        _load_bytes(tmp_path, _zip({**members, "extra.npy": _npy(np.zeros(3))}))
    missing = dict(members)
    del missing["b2.npy"]
    with pytest.raises(ValueError, match="b2"):
        _load_bytes(tmp_path, _zip(missing))
    with pytest.raises(ValueError, match="config"):
        _load_bytes(tmp_path, _zip({k: v for k, v in members.items() if k != "config.npy"}))


class _Trap:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_arrays_are_refused_without_unpickling(saved, tmp_path):
    _, _, data = saved
    flag = tmp_path / "pwned"
    trap = np.array([_Trap(str(flag))], dtype=object)
    members = _members(data)
    for target in ("config.npy", "W1.npy", "optimizer_exp_avg.npy"):
        forged = dict(members)
        forged[target] = _npy(trap)
        with pytest.raises(ValueError, match="objects"):
            _load_bytes(tmp_path, _zip(forged))
    assert not flag.exists()
    # a pickle disguised as the file is refused too
    with pytest.raises(ValueError):
        _load_bytes(tmp_path, pickle.dumps(_Trap(str(flag))))
    assert not flag.exists()


def _config_cases():
    def layers(c, value):
        c["layers"] = value

    def layer0(key, value):
        def edit(c):
            c["layers"][0][key] = value
        return edit

    def drop(*keys):
        def edit(c):
            target = c
            for k in keys[:-1]:
                target = target[k]
            del target[keys[-1]]
        return edit

    def put(value, *keys):
        def edit(c):
            target = c
            for k in keys[:-1]:
                target = target[k]
            target[keys[-1]] = value
        return edit

    return {
        "format-tag": (put("keras", "format"), "format"),
        "version": (put(99, "format_version"), "version"),
        "version-text": (put("2", "format_version"), "version"),
        "layers-not-list": (lambda c: layers(c, "Dense"), "layers"),
        "layers-empty": (lambda c: layers(c, []), "layers"),
        "in-features-text": (layer0("in_features", "5"), "in_features"),
        "in-features-bool": (layer0("in_features", True), "in_features"),
        "in-features-negative": (layer0("in_features", -5), "in_features"),
        "in-features-wrong": (layer0("in_features", 7), "in_features"),
        "activation-unknown": (layer0("activation", "swish"), "swish"),
        "activation-list": (layer0("activation", ["relu"]), "activation"),
        "layer-type-unknown": (layer0("type", "Conv2d"), "Conv2d"),
        "layer-type-missing": (drop("layers", 0, "type"), "type"),
        "layer-extra-key": (layer0("bias", False), "bias"),
        "missing-layers": (drop("layers"), "layers"),
        "unknown-key": (put(True, "use_magic"), "use_magic"),
        "missing-loss": (drop("loss"), "loss"),
        "loss-unknown": (put("hinge", "loss"), "hinge"),
        "missing-dtype": (drop("dtype"), "dtype"),
        "dtype-bad": (put("int8", "dtype"), "dtype"),
        "missing-optimizer": (drop("optimizer"), "optimizer"),
        "optimizer-unknown": (put("Lion", "optimizer", "name"), "Lion"),
        "optimizer-bad-lr": (put(-1, "optimizer", "config", "lr"), "lr"),
        "optimizer-extra-key": (put(1, "optimizer", "config", "foo"), "foo"),
        "missing-weights": (drop("weights"), "weights"),
        "weights-not-names": (put([1, 2], "weights"), "weights"),
        "weights-too-few": (put(["W1", "b1"], "weights"), "weights"),
        "weights-swapped": (put(["b1", "W1", "W2", "b2", "W3", "b3"], "weights"), "shape"),
        "optimizer-state-names": (put(["optimizer_exp_avg"], "optimizer_state"), "optimizer_exp_avg_sq"),
        "step-negative": (put(-3, "optimizer_step"), "optimizer_step"),
        "step-float": (put(1.5, "optimizer_step"), "optimizer_step"),
        "rng-state": (put({"bit_generator": "MT19937"}, "rng_state"), "rng_state"),
        "seed-text": (put("zero", "seed"), "seed"),
        "not-an-object": (lambda c: c.clear() or c.update({"format": "fastmlp-model"}), "version"),
    }


@pytest.mark.parametrize("case", list(_config_cases()))
def test_forged_config(saved, tmp_path, case):
    _, _, data = saved
    edit, words = _config_cases()[case]
    config = _config(data)
    edit(config)
    with pytest.raises(ValueError, match="not a valid fastmlp model file") as info:
        _load_bytes(tmp_path, _with_config(data, config))
    assert words in str(info.value)


def test_config_not_json_or_not_text(saved, tmp_path):
    _, _, data = saved
    members = _members(data)
    for bad in (np.array("{not json"), np.array("[1, 2]"), np.array('{"format": NaN}'),
                np.array("[" * 100000 + "]" * 100000), np.arange(3.0), np.array(["a", "b"])):
        forged = dict(members)
        forged["config.npy"] = _npy(bad)
        with pytest.raises(ValueError, match="not a valid fastmlp model file"):
            _load_bytes(tmp_path, _zip(forged))


def test_wrong_shapes_dtypes_and_values(saved, tmp_path):
    _, _, data = saved
    members = _members(data)
    W0 = np.load(io.BytesIO(members["W1.npy"]))
    cases = {
        "transposed": ("W1.npy", W0.T.copy(), "shape"),
        "nan": ("W1.npy", np.where(np.arange(W0.size).reshape(W0.shape) == 3, np.nan, W0), "finite"),
        "inf-bias": ("b2.npy", np.full(6, np.inf, np.float32), "finite"),
        "ints": ("W1.npy", W0.astype(np.int32), "dtype"),
        "text": ("W1.npy", np.array(["x"] * W0.size).reshape(W0.shape), "dtype"),
        "structured": ("W1.npy", np.zeros(W0.shape, [("a", "f4")]), "dtype"),
        "state-shape": ("optimizer_exp_avg.npy", np.zeros(3, np.float32), "shape"),
        "state-nan": ("optimizer_exp_avg_sq.npy", None, "NaN"),
    }
    for name, (member, arr, words) in cases.items():
        if arr is None:
            arr = np.load(io.BytesIO(members[member]))
            arr[0] = np.nan
        forged = dict(members)
        forged[member] = _npy(arr)
        with pytest.raises(ValueError, match="not a valid fastmlp model file") as info:
            _load_bytes(tmp_path, _zip(forged), f"{name}.npz")
        assert words in str(info.value), name


def _npy_with_header(shape, dtype="<f4", payload=b""):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def test_huge_declared_shapes_are_refused_before_allocating(saved, tmp_path):
    _, _, data = saved
    members = _members(data)
    # an array header declaring 4 TB, with a few bytes behind it
    for shape in [(10**12,), (2**40, 2**40), (8, 10**15)]:
        forged = dict(members)
        forged["W1.npy"] = _npy_with_header(shape, payload=b"\0" * 64)
        with pytest.raises(ValueError, match="declares shape"):
            _load_bytes(tmp_path, _zip(forged))
    # a config declaring a layer of 10^10 weights, with small arrays behind it
    config = _config(data)
    config["layers"][0]["in_features"] = 10**9
    config["layers"][0]["out_features"] = 10
    with pytest.raises(ValueError, match="declare"):
        _load_bytes(tmp_path, _with_config(data, config))


def test_member_sizes_that_lie(saved, tmp_path):
    """A zip whose directory claims more uncompressed bytes than deflate can produce."""
    _, _, data = saved
    members = _members(data)
    blob = _zip(members, zipfile.ZIP_DEFLATED)
    # patch the central directory's uncompressed size of the first member to 2 GB
    cd = blob.rfind(b"PK\x01\x02", 0, blob.rfind(b"PK\x05\x06"))
    first = blob.find(b"PK\x01\x02")
    assert 0 <= first <= cd
    forged = bytearray(blob)
    forged[first + 24:first + 28] = (2**31).to_bytes(4, "little")
    with pytest.raises(ValueError, match="not a valid fastmlp model file"):
        _load_bytes(tmp_path, bytes(forged))


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastmlp.load(tmp_path / "nope.npz")


def test_load_text_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("this is not a model\n" * 10)
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


def test_load_npz_without_config(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, W0=np.zeros((8, 4)), b0=np.zeros(8))
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


def test_load_npy_file(tmp_path):
    path = tmp_path / "model.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


def test_load_pickled_npz_refused(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, config=np.array([{"format": "fastmlp-model"}], dtype=object))
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


def _rewrite_members(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if key == "config":
            config = json.loads(str(arrays["config"]))
            config.update(value)
            arrays["config"] = np.array(json.dumps(config))
        elif value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


@pytest.mark.parametrize("change", [
    {"config": {"format": "something-else"}},
    {"config": {"format_version": 99}},
    {"config": {"loss": "hinge"}},
    {"config": {"dtype": "int8"}},
    {"W2": None},
    {"W1": np.zeros((4, 8), np.float32)},
    {"b1": np.full(8, np.nan, np.float32)},
    {"optimizer_momentum_buffer": np.zeros(5, np.float32)},
    {"config": np.array("{not json")},
], ids=["format", "version", "loss", "dtype", "missing-W2", "W1-shape", "nan-bias", "opt-state", "json"])
def test_load_corrupt_model_file(tmp_path, change):
    path = tmp_path / "model.npz"
    mlp().save(path)
    if "config" in change and isinstance(change["config"], np.ndarray):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["config"] = change["config"]
        np.savez(path, **arrays)
    else:
        _rewrite_members(path, **change)
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


@pytest.mark.parametrize("config", ["[1, 2]", "null", '"text"', "3"])
def test_load_config_that_is_not_a_json_object(tmp_path, config):
    path = tmp_path / "model.npz"
    mlp().save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["config"] = np.array(config)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"not a (readable|valid) fastmlp model file"):
        fastmlp.load(path)


def test_save_path_without_npz_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\bpath\b.*\.npz"):
        mlp().save(tmp_path / "model.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["graph"]["nodes"][2].update(inputs=["nowhere"]), "dangling or cyclic"),
    (lambda c: c["graph"]["nodes"][2].update(inputs=[c["graph"]["nodes"][3]["name"]]), "dangling or cyclic"),
    (lambda c: c["layers"][0].update(type="Lambda"), "unknown type 'Lambda'"),
    (lambda c: c["graph"]["nodes"][-1].update(width=99), "width"),
    (lambda c: c["graph"]["nodes"][2].update(layer=77), "names the layer 77"),
    (lambda c: c["graph"]["nodes"][0].update(width=10**9), "declare|width|in_features"),
    (lambda c: c["graph"].update(output="ghost"), "'ghost'"),
    (lambda c: c["graph"]["nodes"].append({"name": "z", "layer": 0, "inputs": [], "width": 3, "code": 1}),
     "must be an object with keys"),
])
def test_loading_validates_the_graph(tmp_path, edit, match):
    inputs, out = concat_two_inputs()
    fastmlp.Model(inputs, out, seed=0).save(tmp_path / "m.npz")
    _rewrite_graph_config(tmp_path / "m.npz", edit)
    with pytest.raises(ValueError, match=match):
        fastmlp.load(tmp_path / "m.npz")
