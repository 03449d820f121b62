"""Models to files and back: ``model.save(path)``, ``fastmlp.load(path)``.

A model becomes (config, arrays) here (``to_config``) and comes back from them here
(``from_config``: the layers, the graph, the optimizer, the weights, the optimizer state and
the random generator's state); ``io.py`` turns (config, arrays) into the bytes of a file
and back, knowing nothing about models; ``_atomic.py`` replaces a file whole.

The arrays are named as ``get_weights`` labels them (``W1``, ``b1``, ``layers[1].gamma``...),
the optimizer's state ``optimizer_<name>``. Files of format versions 1 to 3 written with the
older names (``W0``, ``gamma1``...) load unchanged: the config lists its member names.
"""

import io
import os

import numpy as np

from . import io as fio
from ._atomic import atomic_write
from ._validation import check_finite
from .io import _expect, _Invalid, _check_json_scalars, _is_int


# ----------------------------------------------------------------------------------------
# a model -> (config, arrays)


def _weight_names(model, n_weights):
    """The file's member names for model.get_weights(): its labels, unless they could clash
    with the file's own names ('config', 'optimizer_...') or each other."""
    names = [label for label, _ in model._weight_slots()]
    if len(names) != n_weights or len(set(names)) != len(names) or "config" in names \
            or any(n.startswith("optimizer_") or "/" in n or ".." in n for n in names):
        names = [f"param{k}" for k in range(n_weights)]
    return names


def to_config(model):
    """(config, weights, optimizer_state) of `model`: its JSON-able description (see io.py)
    and two lists of (member name, host array), of one whole training step."""
    to_host = getattr(model._kernels, "to_host", np.asarray)
    with model._guard.step_lock:  # weights and optimizer state of one whole training step
        config = dict(model.get_config())
        if "graph" not in config:
            config["layers"] = [dict(layer.get_config(), type=type(layer).__name__)
                                for layer in model.layers]
            config["layer_names"] = [layer.name for layer in model.layers]  # get_layer after load
        config.pop("device", None)
        weights = model.get_weights()
        config["optimizer_step"] = int(model._opt_state["step"])
        config["rng_state"] = model._rng.bit_generator.state
        own = model._own_optimizer_state()  # this model's parameters only, in file layout
        optimizer_state = [(f"optimizer_{name}", own[name]) for name in model.optimizer.state_names]
    return config, list(zip(_weight_names(model, len(weights)), weights)), optimizer_state


def _write(f, model):
    fio.write(f, *to_config(model))


def save(model, path):
    """Write `model` (config, weights, optimizer state) to `path` (.npz), atomically."""
    path = os.fspath(path)
    if not isinstance(path, str) or not path.endswith(".npz"):
        raise ValueError(f"path must end in .npz; got {path!r}")
    atomic_write(path, lambda f: _write(f, model))


def to_bytes(model):
    """The bytes of the model file `model.save` would write (used for pickling)."""
    buf = io.BytesIO()
    _write(buf, model)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# (config, arrays) -> a model


def _layer_classes():
    """Layer type name -> class, for the types the model accepts."""
    from . import layers as layers_module
    from . import model as model_module

    classes = {}
    for module in (layers_module, model_module):
        registry = getattr(module, "LAYERS", None)
        if isinstance(registry, dict):
            classes.update(registry)
    classes["Dense"] = model_module.Dense  # the class Sequential checks against
    return classes


def _declared_parameters(layer_configs):
    """Parameters implied by the sizes in the layer configs (to bound what we allocate)."""
    total = 0
    for cfg in layer_configs:
        n_in, n_out = cfg.get("in_features"), cfg.get("out_features")
        if _is_int(n_in, 1) and _is_int(n_out, 1):
            total += n_in * n_out + (0 if cfg.get("use_bias") is False else n_out)
        features = cfg.get("features")
        if _is_int(features, 1):
            total += 4 * features
    return total


def _layers(layer_cfgs, stored):
    """The layers of the config, after checking that their sizes fit the `stored` values."""
    _expect(isinstance(layer_cfgs, list) and layer_cfgs,
            "config 'layers' must be a non-empty list")
    for i, cfg in enumerate(layer_cfgs):
        _expect(isinstance(cfg, dict), f"config layers[{i}] must be an object")
        _expect(isinstance(cfg.get("type"), str), f"config layers[{i}] has no layer 'type'")
        _check_json_scalars(cfg, f"config layers[{i}]")
    # bound what building the model allocates by the values actually in the file
    declared = _declared_parameters(layer_cfgs)
    _expect(declared <= stored,
            f"its layers declare {declared} parameters but its weight arrays hold {stored} values")
    classes = _layer_classes()
    layers = []
    for i, cfg in enumerate(layer_cfgs):
        kind = cfg["type"]
        cls = classes.get(kind)
        _expect(cls is not None, f"config layers[{i}] has the unknown type {kind!r} "
                                 f"(known: {sorted(classes)})")
        kwargs = {k: v for k, v in cfg.items() if k != "type"}
        try:
            layers.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise _Invalid(f"config layers[{i}] ({kind}) is invalid: {exc}") from None
    return layers


def _optimizer(opt):
    from .optim import OPTIMIZERS

    _expect(isinstance(opt, dict) and isinstance(opt.get("name"), str)
            and isinstance(opt.get("config", {}), dict),
            "config 'optimizer' must be {'name': ..., 'config': {...}}")
    opt_cls = OPTIMIZERS.get(opt["name"].lower())
    _expect(opt_cls is not None, f"unknown optimizer {opt['name']!r} (known: {sorted(OPTIMIZERS)})")
    _check_json_scalars(opt.get("config", {}), "config optimizer")
    try:
        return opt_cls(**opt.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"config optimizer is invalid: {exc}") from None


def _check_members(members, names, expected):
    """Each member's declared shape (header only, no data read yet) against the array the
    model needs."""
    for name, ref in zip(names, expected):
        shape = members.shape(name)
        _expect(shape == ref.shape,
                f"the array {name!r} declares shape {shape}; the model built from the config "
                f"needs {ref.shape}")


def from_config(config, arrays, device):
    """The model `config` describes (as io.read returns it), with its weights, optimizer
    state and random generator's state from `arrays` (io.Members, or a dict {name: array}),
    on `device`. Every array's declared shape is compared with what the model needs before
    any array is read, and the arrays are then read one at a time into the model."""
    from .model import Sequential

    members = fio.Members.of(arrays)
    model_cfg = config["model"]
    names, opt_names = config["weights"], config["optimizer_state"]
    _expect(model_cfg.get("loss", "") is None or isinstance(model_cfg.get("loss"), str),
            "config 'loss' is missing or not a name (or null: chosen at the first fit)")
    dtype_name = model_cfg.get("dtype")
    _expect(dtype_name in ("float32", "float64"),
            f"config 'dtype' must be 'float32' or 'float64'; got {dtype_name!r}")
    for name in names:
        _expect(name in members, f"the array {name!r} is missing")
    # the values the file declares are bounded by its size (io.read): so is the model
    layers = _layers(model_cfg.get("layers"), sum(members.size(n) for n in names))
    optimizer = _optimizer(model_cfg.get("optimizer"))
    model_cfg = dict(model_cfg)
    layer_names = model_cfg.pop("layer_names", None)
    if layer_names is not None:
        _expect(isinstance(layer_names, list) and len(layer_names) == len(layers)
                and all(isinstance(n, str) and n.strip() for n in layer_names),
                "config 'layer_names' must list one non-empty name per layer")
        for layer, name in zip(layers, layer_names):
            layer.name = name
    kwargs = {k: v for k, v in model_cfg.items() if k not in ("layers", "optimizer", "device", "graph")}
    _check_json_scalars(kwargs, "config model")
    try:
        if "graph" in model_cfg:
            from .graph import Model, model_graph_from_config

            inputs, output = model_graph_from_config(layers, model_cfg["graph"])
            model = Model(inputs, output, optimizer=optimizer, device=device, **kwargs)
        else:
            model = Sequential(layers, optimizer=optimizer, device=device, **kwargs)
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"config model is invalid: {exc}") from None

    slots = model._weight_slots()
    _expect(len(names) == len(slots),
            f"config 'weights' names {len(names)} arrays; the model has {len(slots)}")
    _check_members(members, names, [arr for _, arr in slots])
    state_names = [f"optimizer_{n}" for n in model.optimizer.state_names]
    if config["format_version"] != 1:
        _expect(opt_names == state_names,
                f"config 'optimizer_state' is {opt_names}; {type(optimizer).__name__} needs "
                f"{state_names}")
    for name in state_names:
        _expect(name in members, f"the array {name!r} is missing")
    _check_members(members, state_names,
                   [model._opt_state[n] for n in model.optimizer.state_names])

    write = getattr(model._kernels, "write", None)
    for name, (where, target) in zip(names, slots):  # one array at a time beside the model
        arr = members.read(name)
        try:
            check_finite(arr, f"the array {name!r} ({where})", model.dtype)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        arr = np.ascontiguousarray(arr, model.dtype)
        if write is None:
            target[...] = arr
        else:
            write(target, arr)
        del arr
    for name, state_name in zip(state_names, model.optimizer.state_names):
        target = model._opt_state[state_name]
        arr = members.read(name)
        _expect(bool(np.isfinite(arr).all()), f"the array {name!r} holds NaN or inf")
        if write is None:
            target[...] = arr
        else:
            write(target, np.ascontiguousarray(arr, dtype=target.dtype))
        del arr
    step = config.get("optimizer_step", 0)
    _expect(_is_int(step), f"config 'optimizer_step' must be an integer >= 0; got {step!r}")
    model._opt_state["step"] = step
    if "rng_state" in config:
        try:
            model._rng.bit_generator.state = config["rng_state"]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise _Invalid(f"config 'rng_state' is invalid ({exc!r})") from None
    return model


def read_model(f, file_size, device, label, prefix=""):
    """The model in the model file `f` of `file_size` bytes (any seekable binary file), on
    `device`; a bad file raises a ValueError "<prefix><label> is not a valid fastmlp model
    file: <what is wrong>"."""
    with fio.file_errors(label, prefix=prefix):
        return from_config(*fio.read(f, file_size), device)



def load(path, device="auto"):
    """Load a model saved with ``model.save(path)`` on `device`, ready to predict or train.

    The weights, the optimizer state (moments, step count) and the random generator's
    state come back, so ``fit`` continues exactly where the saved model stopped. A model
    saved on one device loads on any other (``device="cpu"``, ``"cuda"``, ``"reference"``...).

    Raises FileNotFoundError for a missing file and ValueError for one that is not a valid
    fastmlp model file (truncated, forged, another format).
    """
    from .kernels import backend

    backend(device)  # a bad device name fails here, not as a complaint about the file
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return read_model(f, size, device, repr(path))


def from_bytes(data, device="auto"):
    """A model from the bytes of a model file (as `to_bytes` gives them)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes; got {type(data).__name__}")
    from .kernels import backend

    backend(device)
    data = bytes(data)
    return read_model(io.BytesIO(data), len(data), device, "the data")


__all__ = ["save", "load", "to_bytes", "from_bytes", "to_config", "from_config", "read_model"]
