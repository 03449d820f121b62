"""Model files: an .npz archive holding a JSON config, the weights and the optimizer state.

Format (``format_version`` 3)
-----------------------------
The archive is an ordinary NumPy ``.npz`` (a zip of ``.npy`` members, uncompressed):

``config``
    a 0-d unicode array holding one JSON object: ``model.get_config()`` (each layer's
    ``layer.get_config()`` with a ``"type"`` key, the class name) and this module's keys::

        {"layers": [{"type": "Dense", "in_features": 784, "out_features": 256,
                     "activation": "relu"}, ...],
         "loss": "cross_entropy", "label_smoothing": 0.0,
         "optimizer": {"name": "SGD", "config": {"lr": 0.1, ...}},
         "dtype": "float32", "seed": 0,
         "format": "fastmlp-model", "format_version": 3, "fastmlp_version": "0.1.0",
         "weights": ["W0", "b0", "W1", "b1", ...],
         "optimizer_state": ["optimizer_momentum_buffer"],
         "optimizer_step": 1200,
         "rng_state": {...}}

    Every key of the model's config other than ``layers`` and ``optimizer`` goes back to
    the model's constructor. ``weights`` names the members holding ``model.get_weights()``,
    in that order (each layer's parameters, then its state, named ``<name><layer index>``);
    ``optimizer_state`` the members holding the optimizer's state arrays, in the order of
    ``optimizer.state_names``. ``rng_state`` is the state of the model's random generator,
    so that training resumes with the same shuffling and dropout masks.
``W0``, ``b0``, ... and ``optimizer_<name>``
    the arrays named in the config.

A graph ``Model`` adds ``"graph": {"inputs": [names], "output": name, "nodes": [{"name",
"layer" (index into ``layers``, null for an Input), "inputs": [node names], "width"}, ...]}``
(nodes in topological order) and each layer's ``"name"``; loading rebuilds the graph by
calling the layers on the nodes in that order, so an edge to a node not defined before it
(dangling or cyclic), an unknown layer type or index, or a width the layers do not compute
is a ``ValueError``. Files of format 2 (Sequential models, no ``graph``) load unchanged.

Files written by the first format (``format_version`` 1: Dense layers without a ``type``,
``W<i>``/``b<i>`` members, no ``weights`` list) still load.

Safety
------
Loading never executes code and never trusts a size it has not checked: the archive is
read member by member (no pickle, ``allow_pickle=False`` semantics), each ``.npy`` header is
checked (numeric dtype, no objects, declared size equal to the bytes actually stored)
before its data is read, and the config is checked key by key. A truncated, forged or
foreign file raises a ``ValueError`` that says what is wrong; a missing file raises
``FileNotFoundError``.

Saving is atomic: the archive is written to a temporary file in the target's folder,
flushed and fsync'ed, renamed over the target, and the folder is fsync'ed where the
platform allows. A crash mid-save leaves the old file whole.
"""

import io
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT = "fastmlp-model"
FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)

#: largest config member accepted (bytes of the .npy member)
_MAX_CONFIG_BYTES = 16 << 20
#: deflate cannot expand data more than ~1032:1; a member declaring more is forged
_MAX_DEFLATE_RATIO = 1100
#: config keys written by this module (the rest of a version-1 config is the model's)
_META_KEYS = ("format", "format_version", "fastmlp_version", "optimizer_step", "rng_state",
              "weights", "optimizer_state")


class _Invalid(ValueError):
    """A problem with a file's content (turned into a ValueError naming the file)."""


# ----------------------------------------------------------------------------------------
# writing


def _layer_param_names(model, n_weights):
    """Member names for model.get_weights(): '<name><layer index>' for each layer's
    parameters then its state (e.g. W0, b0, gamma1, beta1, running_mean1, running_var1)."""
    names = []
    for i, layer in enumerate(model.layers):
        params = getattr(layer, "param_shapes", None)
        state = getattr(layer, "state_shapes", None)
        keys = (list(params()) if callable(params) else ["W", "b"]) + \
            (list(state()) if callable(state) else [])
        names += [f"{key}{i}" for key in keys]
    if len(names) != n_weights or len(set(names)) != len(names) or "config" in names \
            or any(n.startswith("optimizer_") for n in names):
        names = [f"param{k}" for k in range(n_weights)]
    return names


def model_config(model):
    """The JSON-able description of `model` that the file's config holds (see module doc)."""
    from . import __version__

    config = dict(model.get_config())
    if "graph" not in config:
        config["layers"] = [dict(layer.get_config(), type=type(layer).__name__)
                            for layer in model.layers]
        config["layer_names"] = [layer.name for layer in model.layers]  # get_layer after load
    config.pop("device", None)
    clash = set(config) & set(_META_KEYS)
    if clash:  # pragma: no cover - a model config must not use the file's own keys
        raise RuntimeError(f"model config keys {sorted(clash)} clash with the file format's")
    weights = model.get_weights()
    names = _layer_param_names(model, len(weights))
    config.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": __version__,
        "weights": names,
        "optimizer_state": [f"optimizer_{name}" for name in model.optimizer.state_names],
        "optimizer_step": int(model._opt_state["step"]),
        "rng_state": model._rng.bit_generator.state,
    })
    return config, dict(zip(names, weights))


def _write_npz(f, model):
    to_host = getattr(model._kernels, "to_host", np.asarray)
    with model._guard.step_lock:  # weights and optimizer state of one whole training step
        config, arrays = model_config(model)
        optimizer_state = {f"optimizer_{name}": to_host(model._opt_state[name])
                           for name in model.optimizer.state_names}
    text = json.dumps(config, allow_nan=False)
    members = {"config": np.array(text)}
    members.update(arrays)
    members.update(optimizer_state)
    np.savez(f, **members)


def _file_mode(path):
    """Permissions for the new file: the old file's, or what open() would give (umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_folder(folder):
    """Make the rename durable: fsync the folder (POSIX; silently skipped where impossible)."""
    flags = getattr(os, "O_DIRECTORY", 0) | os.O_RDONLY
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file beside `path`, fsync it, rename it over `path`.

    On any error (or interruption) the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def save_model(model, path):
    """Write `model` (config, weights, optimizer state) to `path` (.npz), atomically."""
    path = os.fspath(path)
    if not isinstance(path, str) or not path.endswith(".npz"):
        raise ValueError(f"path must end in .npz; got {path!r}")
    atomic_write(path, lambda f: _write_npz(f, model))


def to_bytes(model):
    """The bytes of the model file `model.save` would write (used for pickling)."""
    buf = io.BytesIO()
    _write_npz(buf, model)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# reading: the archive


class _Archive:
    """The members of an .npz, checked before anything is read."""

    def __init__(self, f, file_size):
        try:
            self.zip = zipfile.ZipFile(f)
        except zipfile.BadZipFile as exc:
            raise _Invalid(f"not an .npz (zip) archive ({exc})") from None
        self.infos = {}
        total = 0
        for info in self.zip.infolist():
            name = info.filename
            if not name.endswith(".npy") or name.startswith("/") or ".." in name:
                raise _Invalid(f"it holds the member {name!r}, which is not a NumPy array")
            key = name[:-4]
            if key in self.infos:
                raise _Invalid(f"it holds the member {name!r} twice")
            if info.flag_bits & 0x1:
                raise _Invalid(f"member {name!r} is encrypted")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise _Invalid(f"member {name!r} has inconsistent sizes")
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
                    raise _Invalid(
                        f"member {name!r} declares {info.file_size} bytes, more than "
                        f"{info.compress_size} compressed bytes can hold"
                    )
            else:
                raise _Invalid(f"member {name!r} uses an unsupported compression "
                               f"(method {info.compress_type})")
            total += info.compress_size
            self.infos[key] = info
        if total > file_size:
            raise _Invalid(f"its members declare {total} bytes but the file has {file_size}")

    def keys(self):
        return set(self.infos)

    def header(self, key):
        """(shape, fortran_order, dtype, header_length) of member `key`, checked."""
        info = self.infos.get(key)
        if info is None:
            raise _Invalid(f"the array {key!r} is missing")
        with self.zip.open(info) as f:
            return self._read_header(f, key, info)

    @staticmethod
    def _read_header(f, key, info):
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # pragma: no cover - read_magic only returns the versions above
                raise ValueError(f"unknown .npy version {version}")
        except ValueError as exc:
            raise _Invalid(f"the array {key!r} has a bad .npy header ({exc})") from None
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise _Invalid(f"the array {key!r} holds Python objects (dtype {dtype}); "
                           "model files hold numbers only")
        if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufU":
            raise _Invalid(f"the array {key!r} has the unsupported dtype {dtype}")
        header_len = f.tell()
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - header_len:
            raise _Invalid(
                f"the array {key!r} declares shape {shape} ({nbytes} bytes of {dtype}) but "
                f"the file holds {info.file_size - header_len} bytes of data for it"
            )
        return shape, fortran, dtype, header_len

    def array(self, key, kinds, max_bytes=None):
        """Member `key` as an array whose dtype kind is in `kinds`, checked then read."""
        info = self.infos.get(key)
        if info is None:
            raise _Invalid(f"the array {key!r} is missing")
        with self.zip.open(info) as f:
            shape, fortran, dtype, header_len = self._read_header(f, key, info)
            if dtype.kind not in kinds:
                raise _Invalid(f"the array {key!r} has dtype {dtype}; expected "
                               + {"f": "floats", "U": "text"}.get(kinds, kinds))
            nbytes = math.prod(shape) * dtype.itemsize
            if max_bytes is not None and nbytes > max_bytes:
                raise _Invalid(f"the array {key!r} is too large ({nbytes} bytes)")
            data = f.read(nbytes)
        if len(data) != nbytes:
            raise _Invalid(f"the array {key!r} is truncated")
        arr = np.frombuffer(data, dtype=dtype)
        arr = arr.reshape(shape, order="F" if fortran else "C")
        return np.array(arr)  # writable, owned, native order


# ----------------------------------------------------------------------------------------
# reading: the config


def _reject_constant(name):
    raise _Invalid(f"the config holds the non-finite number {name}")


def _is_int(value, minimum=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _expect(cond, message):
    if not cond:
        raise _Invalid(message)


def _check_json_scalars(mapping, where):
    for key, value in mapping.items():
        _expect(isinstance(key, str), f"{where} has a non-text key")
        _expect(value is None or isinstance(value, (str, bool, int, float)),
                f"{where}[{key!r}] must be a number, text, true/false or null; "
                f"got {type(value).__name__}")


def _parse_config(text):
    try:
        config = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"its config is not valid JSON ({exc})") from None
    except RecursionError:
        raise _Invalid("its config is nested too deeply") from None
    _expect(isinstance(config, dict), "its config is not a JSON object")
    _expect(config.get("format") == FORMAT,
            f"it is not a fastmlp model (format tag {config.get('format')!r}, "
            f"expected {FORMAT!r})")
    version = config.get("format_version")
    _expect(_is_int(version) and version in _READABLE_VERSIONS,
            f"unsupported format version {version!r}; this fastmlp reads versions "
            f"{list(_READABLE_VERSIONS)} (a newer fastmlp may have written it)")
    model_cfg = {k: v for k, v in config.items() if k not in _META_KEYS}
    if version == 1:  # Dense layers without a type; W<i>/b<i> members
        layers = model_cfg.get("layers")
        _expect(isinstance(layers, list), "config 'layers' must be a list")
        model_cfg["layers"] = [dict(c, type="Dense") if isinstance(c, dict) else c for c in layers]
        config = dict(config, weights=[f"{p}{i}" for i in range(len(layers)) for p in ("W", "b")])
    config["model"] = model_cfg
    return config


def _layer_classes():
    """Layer type name -> class, for the types the model accepts."""
    from . import model as model_module

    classes = {}
    try:
        from . import layers as layers_module
    except Exception:  # noqa: BLE001 - an optional module; Dense alone still loads
        layers_module = None
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


def _build(config, archive, device):
    from .model import Sequential
    from .optim import OPTIMIZERS

    model_cfg = config.get("model")
    _expect(isinstance(model_cfg, dict), "config 'model' must be an object")
    layer_cfgs = model_cfg.get("layers")
    _expect(isinstance(layer_cfgs, list) and layer_cfgs,
            "config 'layers' must be a non-empty list")
    for i, cfg in enumerate(layer_cfgs):
        _expect(isinstance(cfg, dict), f"config layers[{i}] must be an object")
        _expect(isinstance(cfg.get("type"), str), f"config layers[{i}] has no layer 'type'")
        _check_json_scalars(cfg, f"config layers[{i}]")
    names = config.get("weights")
    _expect(isinstance(names, list) and all(isinstance(n, str) for n in names),
            "config 'weights' must be a list of array names")
    opt_names = config.get("optimizer_state", [])
    _expect(isinstance(opt_names, list) and all(isinstance(n, str) for n in opt_names),
            "config 'optimizer_state' must be a list of array names")
    unknown = archive.keys() - {"config", *names, *opt_names}
    if config.get("format_version") == 1:
        unknown = {k for k in unknown if not k.startswith("optimizer_")}
    _expect(not unknown, f"it holds arrays the config does not name: {sorted(unknown)}")

    _expect(isinstance(model_cfg.get("loss"), str), "config 'loss' is missing or not a name")
    # bound what building the model allocates by the bytes actually in the file
    dtype_name = model_cfg.get("dtype")
    _expect(dtype_name in ("float32", "float64"),
            f"config 'dtype' must be 'float32' or 'float64'; got {dtype_name!r}")
    stored = 0
    for name in names:
        shape, _, dtype, _ = archive.header(name)
        stored += math.prod(shape)
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

    opt = model_cfg.get("optimizer")
    _expect(isinstance(opt, dict) and isinstance(opt.get("name"), str)
            and isinstance(opt.get("config", {}), dict),
            "config 'optimizer' must be {'name': ..., 'config': {...}}")
    opt_cls = OPTIMIZERS.get(opt["name"].lower())
    _expect(opt_cls is not None, f"unknown optimizer {opt['name']!r} (known: {sorted(OPTIMIZERS)})")
    _check_json_scalars(opt.get("config", {}), "config optimizer")
    try:
        optimizer = opt_cls(**opt.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"config optimizer is invalid: {exc}") from None

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
            from .graph import Model

            inputs, output = _build_graph(layers, model_cfg["graph"])
            model = Model(inputs, output, optimizer=optimizer, device=device, **kwargs)
        else:
            model = Sequential(layers, optimizer=optimizer, device=device, **kwargs)
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"config model is invalid: {exc}") from None

    expected = model.get_weights()
    _expect(len(names) == len(expected),
            f"config 'weights' names {len(names)} arrays; the model has {len(expected)}")
    weights = []
    for name, ref in zip(names, expected):
        arr = archive.array(name, "f")
        _expect(arr.shape == ref.shape,
                f"the array {name!r} has shape {arr.shape}; the model needs {ref.shape}")
        weights.append(arr)
    try:
        model.set_weights(weights)
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"its weights are invalid: {exc}") from None

    state_names = [f"optimizer_{n}" for n in model.optimizer.state_names]
    if config.get("format_version") != 1:
        _expect(opt_names == state_names,
                f"config 'optimizer_state' is {opt_names}; {type(optimizer).__name__} needs "
                f"{state_names}")
    for name, state_name in zip(state_names, model.optimizer.state_names):
        target = model._opt_state[state_name]
        arr = archive.array(name, "f")
        _expect(arr.shape == target.shape,
                f"the array {name!r} has shape {arr.shape}; the model needs {target.shape}")
        _expect(bool(np.isfinite(arr).all()), f"the array {name!r} holds NaN or inf")
        write = getattr(model._kernels, "write", None)
        if write is None:
            target[...] = arr
        else:
            write(target, np.ascontiguousarray(arr, dtype=target.dtype))
    step = config.get("optimizer_step", 0)
    _expect(_is_int(step), f"config 'optimizer_step' must be an integer >= 0; got {step!r}")
    model._opt_state["step"] = step
    if "rng_state" in config:
        try:
            model._rng.bit_generator.state = config["rng_state"]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise _Invalid(f"config 'rng_state' is invalid ({exc!r})") from None
    return model


def _build_graph(layers, graph):
    """The Input nodes and the output node of a stored graph (format 3), rebuilt by calling
    the layers on the nodes in the stored order. Every edge must name a node defined before
    it (so no dangling or cyclic edges), every width must be what the layers compute."""
    from .graph import Input, Node

    _expect(isinstance(graph, dict), "config 'graph' must be an object")
    nodes, input_names, output = graph.get("nodes"), graph.get("inputs"), graph.get("output")
    _expect(isinstance(nodes, list) and nodes, "config graph 'nodes' must be a non-empty list")
    _expect(isinstance(input_names, list) and input_names and all(isinstance(n, str) for n in input_names),
            "config graph 'inputs' must be a list of node names")
    _expect(isinstance(output, str), "config graph 'output' must be a node name")
    built = {}
    for k, nd in enumerate(nodes):
        where = f"config graph nodes[{k}]"
        _expect(isinstance(nd, dict) and set(nd) == {"name", "layer", "inputs", "width"},
                f"{where} must be an object with keys name, layer, inputs, width")
        name, layer, ins, width = nd["name"], nd["layer"], nd["inputs"], nd["width"]
        _expect(isinstance(name, str) and name and name not in built,
                f"{where} has a missing or repeated name {name!r}")
        _expect(_is_int(width, 1), f"{where} ({name!r}) has the invalid width {width!r}")
        _expect(isinstance(ins, list) and all(isinstance(n, str) for n in ins),
                f"{where} ({name!r}): 'inputs' must be a list of node names")
        if layer is None:
            _expect(not ins, f"{where}: the Input {name!r} cannot have inputs")
            node = Input(width, name=name)
        else:
            _expect(_is_int(layer) and layer < len(layers),
                    f"{where} ({name!r}) names the layer {layer!r}; there are {len(layers)}")
            for n in ins:
                _expect(n in built, f"{where} ({name!r}) takes the node {n!r}, which is not defined "
                                    "before it (a dangling or cyclic edge)")
            args = [built[n] for n in ins]
            try:
                node = layers[layer](args[0] if len(args) == 1 and layers[layer].n_inputs == 1 else args)
            except (TypeError, ValueError) as exc:
                raise _Invalid(f"{where} ({name!r}) is invalid: {exc}") from None
            _expect(node.width == width, f"{where} ({name!r}) has width {node.width} from its layer; "
                                         f"the file says {width}")
            node = Node(node.layer, node.inputs, node.width, name)
        built[name] = node
    for n in input_names:
        _expect(n in built and built[n].is_input, f"config graph 'inputs' names {n!r}, which is not an Input node")
    _expect(output in built, f"config graph 'output' names {output!r}, which is not a node")
    return [built[n] for n in input_names], built[output]


_FORMAT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                  EOFError, struct.error, zlib.error, zipfile.BadZipFile, UnicodeDecodeError,
                  NotImplementedError, RecursionError, OSError)


def _read(f, file_size, device, label):
    try:
        archive = _Archive(f, file_size)
        _expect("config" in archive.keys(),
                "it holds no 'config' array (not a fastmlp model file)")
        text = archive.array("config", "U", max_bytes=_MAX_CONFIG_BYTES)
        _expect(text.shape == (), f"its config has shape {text.shape}; expected a single text")
        config = _parse_config(str(text[()]))
        return _build(config, archive, device)
    except _Invalid as exc:
        raise ValueError(f"{label} is not a valid fastmlp model file: {exc}") from None
    except _FORMAT_ERRORS as exc:
        raise ValueError(f"{label} is not a valid fastmlp model file: "
                         f"{type(exc).__name__}: {exc}") from None


def load(path, device="auto"):
    """Load a model saved with ``model.save(path)`` on `device`, ready to predict or train.

    The weights, the optimizer state (moments, step count) and the random generator's
    state come back, so ``fit`` continues exactly where the saved model stopped. A model
    saved on one device loads on any other (``device="cpu"``, ``"reference"``...).

    Raises FileNotFoundError for a missing file and ValueError for one that is not a valid
    fastmlp model file (truncated, forged, another format).
    """
    from .kernels import backend

    backend(device)  # a bad device name fails here, not as a complaint about the file
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return _read(f, size, device, repr(path))


def from_bytes(data, device="auto"):
    """A model from the bytes of a model file (as `to_bytes` gives them)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes; got {type(data).__name__}")
    from .kernels import backend

    backend(device)
    data = bytes(data)
    return _read(io.BytesIO(data), len(data), device, "the data")


__all__ = ["load", "save_model", "to_bytes", "from_bytes", "atomic_write", "model_config"]
