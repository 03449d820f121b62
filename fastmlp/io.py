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
read member by member (no pickle, ``allow_pickle=False`` semantics); the zip directory's
sizes are checked against the file (stored members hold at most the file's bytes, deflated
ones at most the deflate ratio times their compressed bytes), each ``.npy`` header is checked
(numeric dtype, no objects, declared size equal to the bytes actually stored), ``read``
returns the config and the members' headers only, and fastmlp/saving.py compares every
declared shape with what the model built from the config needs (whose layer sizes are
bounded by the values the members declare) before any data is read, then reads each
member once, in chunks, straight into an array of that shape. The config is checked key by
key (JSON nested too deeply is refused). A truncated, forged or foreign file raises a
``ValueError`` that names the file and says what is wrong (the member, what was expected,
what was found); a missing file raises ``FileNotFoundError``. Ensemble files
(fastmlp/ensemble.py) are read by the same archive reader, each member's model file in place.

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
#: bytes read at a time into an array
_CHUNK = 1 << 22
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
            raise _Invalid(f"it is not a zip (.npz) archive ({exc})") from None
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
                           "fastmlp files hold numbers only (objects would need unpickling)")
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
        shape, _, dtype, _ = self.header(key)
        if dtype.kind not in kinds:
            raise _Invalid(f"the array {key!r} has dtype {dtype}; expected "
                           + {"f": "floats", "U": "text"}.get(kinds, kinds))
        nbytes = math.prod(shape) * dtype.itemsize
        if max_bytes is not None and nbytes > max_bytes:
            raise _Invalid(f"the array {key!r} declares {nbytes} bytes; at most {max_bytes} "
                           "are accepted")
        return self.read(key)

    def read(self, key):
        """The data of member `key` (its header checked again as it is opened) in a new
        array of the declared shape, read in chunks straight into it (no copy of the
        bytes), in native byte order."""
        info = self.infos.get(key)
        if info is None:
            raise _Invalid(f"the array {key!r} is missing")
        with self.zip.open(info) as f:
            shape, fortran, dtype, _ = self._read_header(f, key, info)
            out = np.empty(shape[::-1] if fortran else shape, dtype)
            view = memoryview(out.reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                n = f.readinto(view[done:done + _CHUNK])
                if not n:
                    raise _Invalid(f"the array {key!r} is truncated: {done} of {len(view)} "
                                   "bytes of data")
                done += n
        out = out.T if fortran else out
        return out if dtype.isnative else out.astype(dtype.newbyteorder("="))

    def window(self, key):
        """A read-only file over the data of the byte-array member `key` (1-D uint8, e.g.
        a model file inside an ensemble file) and its size, without reading it into memory:
        a view of the archive's own file for a stored member, the decompressing stream of
        a deflated one."""
        shape, _, dtype, header_len = self.header(key)
        if dtype != np.uint8 or len(shape) != 1:
            raise _Invalid(f"the array {key!r} has shape {shape} and dtype {dtype}; expected a "
                           "1-D array of bytes (uint8)")
        info = self.infos[key]
        if info.compress_type == zipfile.ZIP_STORED:
            fp = self.zip.fp
            fp.seek(info.header_offset)
            local = fp.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise _Invalid(f"the member {key!r} has a bad local zip header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len + header_len
            return _Window(fp, start, shape[0]), shape[0]
        stream = self.zip.open(info)
        return _Window(stream, header_len, shape[0], owned=True), shape[0]


class _Window:
    """`size` bytes of the seekable binary file `f` from offset `start`, as a read-only
    seekable file (what zipfile.ZipFile needs)."""

    def __init__(self, f, start, size, owned=False):
        self._f, self._start, self._size, self._pos = f, start, size, 0
        self._owned = owned

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=0):
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n=-1):
        left = max(0, self._size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self):
        if self._owned:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Members:
    """The arrays of a model file, by member name: each one's declared shape and dtype
    (headers read and checked, data not yet read) and ``read(name)``, its data.

    ``from_config`` compares every declared shape with what the model built from the config
    needs before any data is read, so a member cannot make the loader allocate more than
    the model's own arrays. A dict {name: array} is accepted where Members is (``of``)."""

    def __init__(self, archive, names):
        self._archive = archive
        self.headers = {}
        for name in names:
            shape, _, dtype, _ = archive.header(name)
            _expect(dtype.kind == "f", f"the array {name!r} has dtype {dtype}; expected floats")
            self.headers[name] = (shape, dtype)

    @classmethod
    def of(cls, arrays):
        """`arrays` as Members: itself, or a dict {name: array} wrapped."""
        if isinstance(arrays, cls):
            return arrays
        members = cls.__new__(cls)
        members._archive = None
        members._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        members.headers = {k: (v.shape, v.dtype) for k, v in members._arrays.items()}
        return members

    def __contains__(self, name):
        return name in self.headers

    def shape(self, name):
        return self.headers[name][0]

    def size(self, name):
        return math.prod(self.headers[name][0])

    def read(self, name):
        if self._archive is None:
            return self._arrays[name]
        return self._archive.read(name)


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


def parse_json(text, what="config"):
    """The JSON object `text` (the `what` of a file): no NaN or infinity, nesting bounded
    (a config nested too deeply for the parser is refused, not a RecursionError)."""
    try:
        config = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"its {what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise _Invalid(f"its {what} is nested too deeply to be a fastmlp {what}") from None
    _expect(isinstance(config, dict),
            f"its {what} is not a JSON object (found {type(config).__name__})")
    return config


def read_config(archive, what="config"):
    """The JSON object held by the text member ``config`` of `archive` (an _Archive)."""
    _expect("config" in archive.keys(), f"it holds no 'config' array (not a fastmlp {what})")
    text = archive.array("config", "U", max_bytes=_MAX_CONFIG_BYTES)
    _expect(text.shape == (), f"its config has shape {text.shape}; expected a single text")
    return parse_json(str(text[()]))


def _parse_config(config):
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
    """(config, members) of the model file `f` of `file_size` bytes: the config as written
    (older formats brought to the current one's keys, the model's own keys under ``"model"``)
    and the ``Members`` it names: each array's header checked (numeric dtype, declared size
    equal to the bytes stored, so their total is bounded by the file's size, or by the
    deflate ratio for a compressed member), its data not yet read.
    Raises ``_Invalid`` (a ValueError) or one of the errors ``file_errors`` turns into one."""
    archive = _Archive(f, file_size)
    config = _parse_config(read_config(archive, "model file"))
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
    return config, Members(archive, dict.fromkeys([*names, *opt_names]))


@contextlib.contextmanager
def file_errors(label, what="fastmlp model file", prefix=""):
    """Any sign of a bad file inside the block becomes a ValueError naming `label`:
    "<prefix><label> is not a valid <what>: <what is wrong>"."""
    try:
        yield
    except _Invalid as exc:
        raise ValueError(f"{prefix}{label} is not a valid {what}: {exc}") from None
    except _FORMAT_ERRORS as exc:
        raise ValueError(f"{prefix}{label} is not a valid {what}: "
                         f"{type(exc).__name__}: {exc}") from None


__all__ = ["read", "write", "file_errors", "atomic_write", "parse_json", "read_config", "Members",
           "FORMAT", "FORMAT_VERSION"]
