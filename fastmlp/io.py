"""Model files: an .npz archive holding a JSON config, the weights and the optimizer state.

This module converts between a file and (config, arrays) and knows nothing about models:
``write(f, config, weights, optimizer_state)`` and ``read(f, file_size)``. Turning a model
into a config and back is fastmlp/saving.py's (``model.save``, ``fastmlp.load``).

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
         "weights": ["W1", "b1", "W2", "b2", ...],
         "optimizer_state": ["optimizer_momentum_buffer"],
         "optimizer_step": 1200,
         "rng_state": {...}}

    Every key of the model's config other than ``layers`` and ``optimizer`` goes back to
    the model's constructor. ``weights`` names the members holding ``model.get_weights()``,
    in that order, named as ``get_weights`` labels them (``W1``, ``b1``, ``layers[1].gamma``,
    ...; files written before these labels used ``<name><layer index>``: ``W0``, ``gamma1``);
    ``optimizer_state`` the members holding the optimizer's state arrays, in the order of
    ``optimizer.state_names``. ``rng_state`` is the state of the model's random generator,
    so that training resumes with the same shuffling and dropout masks.
``W1``, ``b1``, ... and ``optimizer_<name>``
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

Saving is atomic (fastmlp/_atomic.py): the archive is written to a temporary file in the
target's folder, flushed and fsync'ed, renamed over the target, and the folder is fsync'ed
where the platform allows. A crash mid-save leaves the old file whole.
"""

import contextlib
import json
import math
import struct
import zipfile
import zlib

import numpy as np

from ._atomic import atomic_write  # noqa: F401  (fastmlp.io.atomic_write, as before)

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


_FORMAT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                  EOFError, struct.error, zlib.error, zipfile.BadZipFile, UnicodeDecodeError,
                  NotImplementedError, RecursionError, OSError)


# ----------------------------------------------------------------------------------------
# (config, arrays) <-> a file


def write(f, config, weights, optimizer_state):
    """Write a model file to the binary file `f`: `config` (the model's JSON-able
    description, with its ``optimizer_step`` and ``rng_state``) and the arrays, given as
    lists of (member name, array): the weights in get_weights order, the optimizer's state
    in the optimizer's order."""
    from . import __version__

    clash = set(config) & (set(_META_KEYS) - {"optimizer_step", "rng_state"})
    if clash:  # pragma: no cover - a model config must not use the file's own keys
        raise RuntimeError(f"model config keys {sorted(clash)} clash with the file format's")
    config = dict(config, format=FORMAT, format_version=FORMAT_VERSION, fastmlp_version=__version__,
                  weights=[name for name, _ in weights],
                  optimizer_state=[name for name, _ in optimizer_state])
    members = {"config": np.array(json.dumps(config, allow_nan=False))}
    members.update(weights)
    members.update(optimizer_state)
    np.savez(f, **members)


def read(f, file_size):
    """(config, arrays) of the model file `f` of `file_size` bytes: the config as written
    (older formats brought to the current one's keys, the model's own keys under ``"model"``)
    and {member name: array} of every array it names, each checked before it is read.
    Raises ``_Invalid`` (a ValueError) or one of the errors ``file_errors`` turns into one."""
    archive = _Archive(f, file_size)
    _expect("config" in archive.keys(), "it holds no 'config' array (not a fastmlp model file)")
    text = archive.array("config", "U", max_bytes=_MAX_CONFIG_BYTES)
    _expect(text.shape == (), f"its config has shape {text.shape}; expected a single text")
    config = _parse_config(str(text[()]))
    names = config.get("weights")
    _expect(isinstance(names, list) and all(isinstance(n, str) for n in names),
            "config 'weights' must be a list of array names")
    opt_names = config.setdefault("optimizer_state", [])
    _expect(isinstance(opt_names, list) and all(isinstance(n, str) for n in opt_names),
            "config 'optimizer_state' must be a list of array names")
    unknown = archive.keys() - {"config", *names, *opt_names}
    if config.get("format_version") == 1:  # no optimizer_state list: its members by name
        opt_names = sorted(k for k in archive.keys() if k.startswith("optimizer_"))
        unknown -= set(opt_names)
    _expect(not unknown, f"it holds arrays the config does not name: {sorted(unknown)}")
    arrays = {name: archive.array(name, "f") for name in names}
    arrays.update((name, archive.array(name, "f")) for name in opt_names if name not in arrays)
    return config, arrays


@contextlib.contextmanager
def file_errors(label):
    """Any sign of a bad file inside the block becomes a ValueError naming `label`."""
    try:
        yield
    except _Invalid as exc:
        raise ValueError(f"{label} is not a valid fastmlp model file: {exc}") from None
    except _FORMAT_ERRORS as exc:
        raise ValueError(f"{label} is not a valid fastmlp model file: "
                         f"{type(exc).__name__}: {exc}") from None


__all__ = ["read", "write", "file_errors", "atomic_write", "FORMAT", "FORMAT_VERSION"]
