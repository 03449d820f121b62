"""Model files: .npz holding a JSON config, the weights and the optimizer state.

Loaded with ``allow_pickle=False`` (a file can never execute code) and written atomically:
a temporary file in the same folder, flushed to disk, then renamed over the target, so a
crash mid-save leaves the old file whole.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1


def save_model(model, path):
    from . import __version__

    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"path must end in .npz; got {path!r}")
    config = model.get_config()
    config.update(format=FORMAT, format_version=FORMAT_VERSION, fastmlp_version=__version__,
                  optimizer_step=int(model._opt_state["step"]),
                  rng_state=model._rng.bit_generator.state)
    arrays = {"config": np.array(json.dumps(config))}
    for i, (W, b) in enumerate(zip(model.W, model.b)):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    for name in model.optimizer.state_names:
        arrays[f"optimizer_{name}"] = model._opt_state[name]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path, device="auto"):
    """Load a model saved with ``model.save(path)``, on `device`, ready to predict or train on."""
    from .model import Dense, Sequential
    from .optim import OPTIMIZERS

    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds a single {type(data).__name__}, not an .npz archive")
        with data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path!r} is not a readable fastmlp model file: {exc}") from None
    try:
        config = json.loads(str(arrays["config"]))
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError("not a fastmlp model (format tag missing)")
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {config.get('format_version')!r}")
        layers = [Dense(c["in_features"], c["out_features"], c["activation"]) for c in config["layers"]]
        opt = config["optimizer"]
        optimizer = OPTIMIZERS[opt["name"].lower()](**opt["config"])
        model = Sequential(layers, loss=config["loss"], optimizer=optimizer, device=device,
                           dtype=config["dtype"], seed=config.get("seed"))
        weights = []
        for i in range(len(layers)):
            weights += [arrays[f"W{i}"], arrays[f"b{i}"]]
        model.set_weights(weights)
        for name in optimizer.state_names:
            state = arrays[f"optimizer_{name}"]
            if state.shape != model._opt_state[name].shape:
                raise ValueError(f"optimizer state {name!r} has shape {state.shape}")
            model._opt_state[name][...] = state
        model._opt_state["step"] = int(config.get("optimizer_step", 0))
        if "rng_state" in config:
            model._rng.bit_generator.state = config["rng_state"]
    except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r} is not a valid fastmlp model file: {exc!r}") from None
    return model
