"""Data sets: the bundled 8x8 digits, and readers for the usual file formats.

=====================================  =====================================================
``load_digits(test_size=None)``        the bundled 8x8 digits (1797 samples); with
                                       test_size, split in four as load_mnist's
``load_idx(images, labels)``           MNIST / Fashion-MNIST IDX files, gzip or raw
``load_idx_folder(folder, split)``     the same, by folder: train-* or t10k-* files
``load_mnist()``, ``load_fashion_mnist()``  downloaded once into a cache, checked (SHA-256);
                                       path=: your own folder, read only unless
                                       download=True
``load_cifar10(folder=None)``          CIFAR-10 binary batches (folder or .tar.gz; None:
                                       downloaded once into the cache)
``load_csv(path, label_column=-1)``    a numeric CSV (or .csv.gz) with a label column
``load_npz(path, split=None)``         an .npz holding X/y, x/y or x_train/y_train/...
=====================================  =====================================================

Every reader returns X as a C-contiguous float32 array of shape (n_samples, n_features)
(images flattened) and y as int64 labels. Pixel data (IDX and CIFAR-10 bytes, uint8 arrays
in an .npz) is scaled to [0, 1] unless ``scale=False``; other numbers are returned as they
are. Headers, sizes and cells are checked: a file that is not what it claims to be raises
a ``ValueError`` that names the file and the problem; a missing file raises
``FileNotFoundError``. The sizes an IDX or .npz file declares are checked against the bytes
it stores before anything is allocated or decompressed.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import math
import os
import tarfile
import zipfile
import zlib
from importlib import resources
from typing import Literal, Optional, Sequence, Union

import numpy as np

from . import _download
from ._typing import PathLike
from .io import _MAX_DEFLATE_RATIO, _Archive, _Invalid

__all__ = ["load_digits", "load_idx", "load_idx_folder", "find_idx_files", "load_mnist",
           "load_fashion_mnist", "load_cifar10",
           "load_csv", "load_npz", "npz_splits"]


# ----------------------------------------------------------------------------------------
# helpers


def _name(path):
    return repr(os.fspath(path))


def _read_bytes(path, what):
    """The bytes of `path`, gunzipped when it starts with the gzip magic number."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError pass through
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, ValueError) as exc:
            raise ValueError(f"{_name(path)}: the gzip-compressed {what} is damaged or "
                             f"truncated ({exc})") from None
    return raw


def _scaled_pixels(X, scale):
    if scale:
        out = np.empty(X.shape, np.float32)
        np.multiply(X, np.float32(1 / 255), out=out, casting="unsafe")
        return out
    return np.ascontiguousarray(X, dtype=np.float32)


# ----------------------------------------------------------------------------------------
# bundled digits


def load_digits(scale: bool = True, test_size: Union[float, int, None] = None,
                seed: int = 0) -> tuple[np.ndarray, ...]:
    """The bundled 8x8 handwritten digits (1797 samples, UCI optdigits test set, CC BY 4.0).

    Returns (X, y), the whole set, as scikit-learn's ``load_digits``: X float32 of shape
    (1797, 64), pixels in [0, 1] when `scale` (0..16 otherwise); y int64 labels 0..9.

    With `test_size` (a fraction in (0, 1), or a number of samples), returns
    (X_train, y_train, X_test, y_test), in load_mnist's order: the samples shuffled with
    `seed`, then the first ``int(test_size * 1797)`` (or `test_size`) of them are the test
    part. ``load_digits(test_size=0.2)`` gives 1438 training and 359 test digits, the
    demo's split (``fastmlp --seed 0``).

    Creators: E. Alpaydin and C. Kaynak, Bogazici University (1998), via the UCI Machine
    Learning Repository; see fastmlp/data/DIGITS.md.
    """
    with resources.files("fastmlp.data").joinpath("digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as text:
            data = np.loadtxt(text, delimiter=",", dtype=np.float32)
    X, y = data[:, :-1], data[:, -1].astype(np.int64)
    if scale:
        X = X / np.float32(16)
    X = np.ascontiguousarray(X)
    if test_size is None:
        return X, y
    n_test = _test_count(test_size, len(X))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    order = np.random.default_rng(seed).permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def _test_count(test_size, n):
    """The number of test samples `test_size` (a fraction or a count) asks for out of n."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.number)):
        raise TypeError(f"test_size must be None, a fraction in (0, 1) or a number of "
                        f"samples; got {test_size!r}")
    if isinstance(test_size, (int, np.integer)):
        count = int(test_size)
        if not 1 <= count <= n - 1:
            raise ValueError(f"test_size must be a number of samples in 1..{n - 1} (of {n}); "
                             f"got {count}")
        return count
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be a fraction in (0, 1) (or a number of samples); "
                         f"got {test_size!r}")
    count = int(test_size * n)
    if not 1 <= count <= n - 1:
        raise ValueError(f"test_size={test_size!r} leaves {count} of the {n} samples for the "
                         f"test part; it needs 1..{n - 1}")
    return count


# ----------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

#: IDX type byte -> big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: bytes decompressed into the array per read (large: MNIST loads as fast as in one piece)
_CHUNK = 1 << 22


def read_idx(path):
    """An IDX file (gzip or raw) as a NumPy array of its own dtype and shape.

    The header is read and checked before any data: magic number (two zero bytes, a known
    type byte, the number of dimensions), then the dimensions (each a 32-bit count), whose
    product must fit the file: exactly the bytes that follow in a raw file, no more than
    deflate can expand a gzip file to. Only then is the array allocated (its declared size)
    and the data decompressed into it in chunks; a stream that ends early or goes on past
    the declared data is refused.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError pass through
        stored = os.fstat(f.fileno()).st_size
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        if not gz:
            return _read_idx_stream(f, path, stored, gz)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as stream:
                return _read_idx_stream(stream, path, stored, gz)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{_name(path)}: the gzip-compressed IDX file is damaged or "
                             f"truncated ({exc})") from None


def _read_idx_stream(stream, path, stored, gz):
    head = stream.read(4)
    if len(head) < 4:
        raise ValueError(f"{_name(path)}: not an IDX file (only {len(head)} bytes; the header "
                         "alone has at least 8)")
    if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES or head[3] == 0:
        raise ValueError(f"{_name(path)}: not an IDX file (bad magic number {head.hex()}; "
                         "expected 0000 then a type byte 08..0e and the number of dimensions)")
    ndim = head[3]
    header = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{_name(path)}: IDX header truncated ({4 + len(dims)} bytes; a "
                         f"{ndim}-dimensional header has {header})")
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[head[2]])
    size = math.prod(shape) * dtype.itemsize
    said = f"its header says shape {shape} ({size} bytes of data)"
    if not gz and stored - header != size:
        state = "truncated: " if stored - header < size else ""
        raise ValueError(f"{_name(path)}: IDX file {state}{said} but it holds "
                         f"{stored - header} bytes of data")
    if gz and size > _MAX_DEFLATE_RATIO * stored:
        raise ValueError(f"{_name(path)}: IDX file {said}, more than its {stored} gzip-"
                         f"compressed bytes can hold (at most {_MAX_DEFLATE_RATIO}:1)")
    data = np.empty(size, np.uint8)
    view = memoryview(data)
    done = 0
    while done < size:
        n = stream.readinto(view[done: done + _CHUNK])
        if not n:
            raise ValueError(f"{_name(path)}: IDX file truncated: {said} but it holds "
                             f"{done} bytes of data")
        done += n
    if stream.read(1):
        raise ValueError(f"{_name(path)}: IDX file {said} but it holds more: data goes on "
                         "past the declared size")
    return data.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def load_idx(images: PathLike, labels: PathLike,
             scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST / Fashion-MNIST from IDX files (gzip or raw): (X, y).

    X is float32 of shape (n, rows * cols), y int64 of shape (n,). Unsigned-byte images
    (MNIST's) are scaled to [0, 1] when `scale`; images of other IDX types are converted
    to float32 unscaled. The two files must hold the same number of samples, the labels
    file one integer per sample. Gzip is recognised by its content, not its name.
    """
    X = read_idx(images)
    y = read_idx(labels)
    if X.ndim < 2:
        raise ValueError(f"{_name(images)}: an images file needs >= 2 dimensions (samples, "
                         f"pixels...); this one has shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"{_name(labels)}: a labels file must be 1-dimensional; this one has "
                         f"shape {y.shape} (are the images and labels files swapped?)")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{_name(labels)}: labels must be integers; got IDX type {y.dtype}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"images and labels do not match: {_name(images)} holds {X.shape[0]} images and "
            f"{_name(labels)} {y.shape[0]} labels"
        )
    X = X.reshape(X.shape[0], -1)
    X = _scaled_pixels(X, scale) if X.dtype == np.uint8 else np.ascontiguousarray(X, np.float32)
    return X, y.astype(np.int64)


_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _labels_beside(images):
    """The labels file that goes with an images file: '...images-idx3...' -> '...labels-idx1...'."""
    folder, name = os.path.split(os.fspath(images))
    if "images" not in name:
        raise ValueError(f"cannot tell the labels file for {_name(images)}: its name has no "
                         "'images' in it (give the labels file explicitly)")
    base = name.replace("images", "labels").replace("idx3", "idx1")
    candidates = [base]
    if base.endswith(".gz"):
        candidates.append(base[:-3])
    else:
        candidates.append(base + ".gz")
    for cand in candidates:
        path = os.path.join(folder, cand)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no labels file beside {_name(images)} (looked for "
                            f"{' or '.join(repr(c) for c in candidates)})")


def find_idx_files(path: PathLike, split: Literal["train", "test"] = "train"
                   ) -> tuple[str, str]:
    """(images, labels) paths of the `split` ("train" or "test") of an IDX data set.

    `path` is a folder holding ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and
    ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``, and
    ``-``/``.`` both accepted before ``idx``), as MNIST and Fashion-MNIST are distributed;
    or an images file, whose labels file is found beside it by replacing ``images`` with
    ``labels`` (and ``idx3`` with ``idx1``) in its name.
    """
    if split not in _IDX_PREFIX:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file or folder: {path!r}")
        return path, _labels_beside(path)
    prefix = _IDX_PREFIX[split]
    found = {}
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        for sep in ("-", "."):
            for ext in ("", ".gz"):
                cand = os.path.join(path, f"{prefix}-{kind}{sep}{idx}-ubyte{ext}")
                if os.path.isfile(cand):
                    found.setdefault(kind, cand)
        if kind not in found:
            raise FileNotFoundError(
                f"no {split} {kind} in {path!r} (looked for {prefix}-{kind}-{idx}-ubyte[.gz])"
            )
    return found["images"], found["labels"]


def load_idx_folder(folder: PathLike, split: Literal["train", "test"] = "train",
                    scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the `split` ("train" or "test") of an MNIST-style folder; see find_idx_files."""
    return load_idx(*find_idx_files(folder, split), scale=scale)


def _check_download(download):
    if download is not None and not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download must be None, True or False; got {download!r}")
    return None if download is None else bool(download)


def _missing_path(function, path, download, what):
    """The error for a `path` that does not exist (a typo is never created and downloaded
    into: only download=True does that)."""
    nothing = " (download=False: nothing is downloaded)" if download is False else ""
    return FileNotFoundError(
        f"{function}: path {os.fspath(path)!r} does not exist{nothing}; name the folder that "
        f"holds {what}, pass download=True to create it and download them into it, or leave "
        "path out to use the cache folder ($FASTMLP_DATA or ~/.cache/fastmlp)")


def _load_idx_data_set(function, name, path, scale, download):
    title = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(name, name)
    download = _check_download(download)
    if path is not None:
        _download.data_folder(name, path)  # a TypeError for a path that is not a path
        if not os.path.exists(os.fspath(path)) and download is not True:
            raise _missing_path(function, path, download, f"{title}'s four IDX files")
        if os.path.isdir(os.fspath(path)):
            try:  # the user's own copy, in any of the usual namings (gzip or raw)
                return (*load_idx_folder(path, "train", scale),
                        *load_idx_folder(path, "test", scale))
            except FileNotFoundError:
                pass
    # download=None: into the cache folder (path=None) only
    folder = _download.fetch(name, path, download is True or (download is None and path is None),
                             named=path is not None and download is None)
    return (*load_idx_folder(folder, "train", scale), *load_idx_folder(folder, "test", scale))


def load_mnist(path: Optional[PathLike] = None, scale: bool = True,
               download: Optional[bool] = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST as (X_train, y_train, X_test, y_test): 60000 + 10000 images of 784 pixels.

    path=None (the default) reads the cache folder ($FASTMLP_DATA/mnist, else
    ~/.cache/fastmlp/mnist), downloading the missing files once from MNIST's mirrors, each
    checked against its published SHA-256 and written atomically (see fastmlp._download).

    `path` names a folder of your own holding the four IDX files (gzip or raw): it is only
    read, and a `path` that does not exist (a typo) or lacks files raises a
    FileNotFoundError naming it, unless download=True, which creates the folder and
    downloads the missing files into it.

    download: None (default) downloads into the cache folder only; True downloads into
    `path` too; False never touches the network (FileNotFoundError when files are missing).

    The bundled digits give the same four arrays: ``load_digits(test_size=0.2)``.
    """
    return _load_idx_data_set("load_mnist", "mnist", path, scale, download)


def load_fashion_mnist(path: Optional[PathLike] = None, scale: bool = True,
                       download: Optional[bool] = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as (X_train, y_train, X_test, y_test); `path` and `download` as for
    load_mnist (cache folder $FASTMLP_DATA/fashion-mnist or ~/.cache/fastmlp/fashion-mnist)."""
    return _load_idx_data_set("load_fashion_mnist", "fashion-mnist", path, scale, download)


# ----------------------------------------------------------------------------------------
# CIFAR-10

_CIFAR_RECORD = 1 + 3072
_CIFAR_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_CIFAR_TEST = "test_batch.bin"


def _parse_cifar_batch(raw, where):
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise ValueError(
            f"{where}: not a CIFAR-10 binary batch: {len(raw)} bytes is not a whole number of "
            f"{_CIFAR_RECORD}-byte records (1 label byte + 3072 pixel bytes)"
            + ("; the file looks truncated" if len(raw) > _CIFAR_RECORD else "")
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{where}: record {bad} has the label {int(labels[bad])}; "
                         "CIFAR-10 labels are 0..9")
    return records[:, 1:], labels.astype(np.int64)


def _cifar_sources(path):
    """name -> function returning the bytes of that batch file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inner = os.path.join(path, "cifar-10-batches-bin")
        folder = inner if os.path.isdir(inner) and not os.path.exists(
            os.path.join(path, _CIFAR_TRAIN[0])) else path
        sources = {}
        for name in _CIFAR_TRAIN + [_CIFAR_TEST]:
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                sources[name] = (lambda full=full: open(full, "rb").read(), repr(full))
        return sources, repr(folder)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path!r}")
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"{path!r} is neither a folder nor a readable .tar.gz archive of "
                         f"CIFAR-10 ({exc})") from None
    sources = {}
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"{path!r}: damaged tar archive ({exc})") from None
        for member in members:
            base = os.path.basename(member.name)
            if member.isfile() and base in _CIFAR_TRAIN + [_CIFAR_TEST] and base not in sources:
                try:
                    data = tar.extractfile(member).read()  # read, never extracted to disk
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise ValueError(f"{path!r}: damaged member {member.name!r} ({exc})") from None
                sources[base] = (lambda data=data: data, f"{path!r}:{member.name}")
    return sources, repr(path)


def load_cifar10(path: Optional[PathLike] = None, scale: bool = True,
                 train_batches: Optional[Sequence[int]] = None,
                 download: Optional[bool] = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 from its binary version: (X_train, y_train, X_test, y_test).

    path=None reads ``cifar-10-binary.tar.gz`` from the cache folder ($FASTMLP_DATA/cifar10
    or ~/.cache/fastmlp/cifar10), downloading it once (170 MB, SHA-256 checked, written
    atomically) unless download=False. A `path` of your own is only read: one that does not
    exist raises a FileNotFoundError naming it, unless download=True, which creates that
    folder and downloads the archive into it (as it does into an existing folder that holds
    no batches).

    `path` is the folder holding ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
    ``test_batch.bin`` (or the folder above ``cifar-10-batches-bin``), or the downloaded
    ``cifar-10-binary.tar.gz`` itself (read in memory, never extracted). Each record is one
    label byte (0..9) and 3072 pixel bytes: the 32x32 red plane, then green, then blue,
    row by row. X rows keep that order (channel-first, flattened), float32 scaled to [0, 1]
    when `scale`; y int64. `train_batches` (e.g. ``[1]``) reads only those training batches.
    All of data_batch_1..5 (or those asked for) and test_batch must be there.
    """
    download = _check_download(download)
    archive = "cifar-10-binary.tar.gz"
    if path is None:
        path = os.path.join(_download.fetch("cifar10", None, download is not False), archive)
    elif not os.path.exists(_download.data_folder("cifar10", path)):
        if download is not True:
            raise _missing_path("load_cifar10", path, download,
                                "data_batch_1..5.bin and test_batch.bin (or the .tar.gz)")
        path = os.path.join(_download.fetch("cifar10", path, True), archive)
    elif os.path.isdir(path) and not _cifar_sources(path)[0]:  # no batches in the folder
        if download is True:
            path = os.path.join(_download.fetch("cifar10", path, True), archive)
        elif os.path.isfile(os.path.join(path, archive)):  # a cache folder of its own
            path = os.path.join(path, archive)
    sources, where = _cifar_sources(path)
    wanted = _CIFAR_TRAIN if train_batches is None else [
        f"data_batch_{int(i)}.bin" for i in train_batches]
    for name in wanted:
        if name not in _CIFAR_TRAIN:
            raise ValueError(f"train_batches must be numbers 1..5; got {train_batches!r}")
    missing = [n for n in wanted + [_CIFAR_TEST] if n not in sources]
    if missing:
        raise FileNotFoundError(f"{where} is not a CIFAR-10 binary folder: missing "
                                f"{', '.join(missing)}")
    Xs, ys = [], []
    for name in wanted:
        read, label = sources[name]
        X, y = _parse_cifar_batch(read(), label)
        Xs.append(X)
        ys.append(y)
    read, label = sources[_CIFAR_TEST]
    X_test, y_test = _parse_cifar_batch(read(), label)
    X_train = np.concatenate(Xs) if len(Xs) > 1 else Xs[0]
    return (_scaled_pixels(X_train, scale), np.concatenate(ys),
            _scaled_pixels(X_test, scale), y_test)


# ----------------------------------------------------------------------------------------
# class labels


def _label_text(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _class_count(y, classes=None):
    """(K, bad, rule) for whole-number labels `y` (any real dtype): K the number of classes
    they imply, `classes` when given, else the largest label + 1, which may be at most twice
    the number of distinct labels; `bad` the index of the first label outside 0..K-1 (None
    when there is none); `rule` what the labels must be, in words."""
    y = np.asarray(y)
    if classes is not None:
        k = int(classes)
        rule = f"labels must be 0..{k - 1} ({k} classes given)"
    else:
        distinct = len(np.unique(y))
        k = 2 * distinct
        rule = (f"labels must be 0..K-1, where K (the largest label + 1) is at most twice the "
                f"{distinct} distinct labels found; give the number of classes (classes=K, "
                "or --classes K on the command line) when some classes are absent")
    outside = (y < 0) | (y >= k)
    if outside.any():
        return k, int(np.argmax(outside)), rule
    if classes is None:
        k = int(y.max()) + 1 if y.size else 0
    return k, None, rule


# ----------------------------------------------------------------------------------------
# CSV


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_text(path):
    raw = _read_bytes(path, "CSV file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{_name(path)}: not a text (UTF-8) CSV file ({exc})") from None


def load_csv(path: PathLike, label_column: Union[int, str, None] = -1,
             header: Union[bool, Literal["auto"]] = "auto", delimiter: str = ",",
             scale: Optional[float] = None, classes: Union[int, Literal["auto"], None] = None
             ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A numeric CSV file (or .csv.gz) as (X float32, y int64).

    label_column
        the column holding the labels: an index (negative counts from the end; default the
        last), a column name from the header, or None when the file holds features only
        (y is then None).
    header
        True (the first row names the columns), False (it is data) or "auto" (a header
        when any cell of the first row is not a number).
    delimiter
        the cell separator, "," by default.
    scale
        None (keep the numbers) or a number to divide X by (255 for pixels in 0..255).
    classes
        None (labels may be any whole numbers), a number K (labels must be 0..K-1), or
        "auto": labels 0..K-1 with K the largest label + 1, at most twice the number of
        distinct labels (a stray label such as 999999999999 would otherwise size a model's
        output layer); an out-of-range label raises a ValueError naming its line.

    Every row must have the same number of cells, every cell must be a number (empty
    cells, text, NaN and inf raise a ValueError naming the line and column), labels must
    be whole numbers. Blank lines are skipped.
    """
    if header != "auto" and not isinstance(header, bool):
        raise ValueError(f"header must be True, False or 'auto'; got {header!r}")
    if not (classes is None or classes == "auto" or (
            isinstance(classes, (int, np.integer)) and not isinstance(classes, bool)
            and classes >= 1)):
        raise ValueError(f"classes must be None, 'auto' or an integer >= 1; got {classes!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character; got {delimiter!r}")
    text = _read_text(path)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ValueError(f"{_name(path)}: the CSV file is empty")
    first_row = next(csv.reader([lines[first]], delimiter=delimiter))
    has_header = (not all(_is_number(c) for c in first_row)) if header == "auto" else header
    names = [c.strip() for c in first_row] if has_header else None
    width = len(first_row)
    body_start = first + 1 if has_header else first  # index of the first data line

    def column_name(j):
        return f"column {j + 1}" + (f" ({names[j]!r})" if names else "")

    if label_column is None:
        label = None
    elif isinstance(label_column, str):
        if names is None:
            raise ValueError(f"{_name(path)}: label_column={label_column!r} names a column "
                             "but the file has no header")
        if label_column not in names:
            raise ValueError(f"{_name(path)}: no label column {label_column!r}; the header "
                             f"has {names}")
        label = names.index(label_column)
    elif isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool):
        if not -width <= label_column < width:
            raise ValueError(f"{_name(path)}: no label column {label_column}: the file has "
                             f"{width} column{'s' if width != 1 else ''}")
        label = int(label_column) % width
    else:
        raise TypeError(f"label_column must be an int, a column name or None; got {label_column!r}")
    if label is not None and width < 2:
        raise ValueError(f"{_name(path)}: the file has one column, so no features besides "
                         "the labels")

    body = "\n".join(lines[body_start:])
    if not body.strip():
        raise ValueError(f"{_name(path)}: the CSV file has a header but no data rows")
    try:  # fast path: NumPy's C parser
        values = np.loadtxt(io.StringIO(body), delimiter=delimiter, dtype=np.float64,
                            ndmin=2, comments=None, quotechar='"')
        ok = values.shape[1:] == (width,) and bool(np.isfinite(values).all())
    except ValueError:
        ok, values = False, None
    if not ok:  # slow path: find the first bad line or cell, to name it
        for i, row in enumerate(csv.reader(io.StringIO(body), delimiter=delimiter)):
            line = body_start + i + 1
            if not any(c.strip() for c in row):
                continue
            if len(row) != width:
                raise ValueError(f"{_name(path)}: line {line} has {len(row)} cells; expected "
                                 f"{width} (as {'the header' if names else 'the first row'})")
            for j, cell in enumerate(row):
                try:
                    v = float(cell)
                except ValueError:
                    what = ("an empty cell" if not cell.strip()
                            else f"the non-numeric cell {cell.strip()!r}")
                    raise ValueError(f"{_name(path)}: line {line}, {column_name(j)}: {what}; "
                                     "every cell must be a number") from None
                if not math.isfinite(v):
                    raise ValueError(f"{_name(path)}: line {line}, {column_name(j)}: "
                                     f"{cell.strip()!r} is not a finite number")
        raise ValueError(f"{_name(path)}: could not read the CSV cells as numbers")

    if label is None:
        X, y = values, None
    else:
        def line_of(i):  # the line of data row i (blank lines are skipped)
            return body_start + 1 + [k for k, l in enumerate(lines[body_start:]) if l.strip()][i]

        y_float = values[:, label]
        whole = y_float == np.round(y_float)
        if not whole.all():
            i = int(np.argmin(whole))
            raise ValueError(f"{_name(path)}: line {line_of(i)}, {column_name(label)}: the label "
                             f"{float(y_float[i])!r} is not a whole number")
        if classes is not None:  # before the cast: a label past int64 would wrap
            _, i, rule = _class_count(y_float, None if classes == "auto" else classes)
            if i is not None:
                raise ValueError(f"{_name(path)}: line {line_of(i)}, {column_name(label)}: the "
                                 f"label {_label_text(y_float[i])} is out of range; {rule}")
        y = y_float.astype(np.int64)
        X = np.delete(values, label, axis=1)
    if scale is not None:
        X = X / float(scale)
    return np.ascontiguousarray(X, dtype=np.float32), y


# ----------------------------------------------------------------------------------------
# npz

_NPZ_KEYS = {
    None: [("X", "y"), ("x", "y"), ("X_train", "y_train"), ("x_train", "y_train")],
    "train": [("X_train", "y_train"), ("x_train", "y_train"), ("X", "y"), ("x", "y")],
    "test": [("X_test", "y_test"), ("x_test", "y_test")],
}


def npz_splits(path: PathLike) -> set[str]:
    """The splits an .npz data file holds: a subset of {"train", "test"}."""
    with _open_npz(path) as archive:
        keys = archive.keys()
    splits = set()
    if any(set(pair) <= keys for pair in _NPZ_KEYS["train"]):
        splits.add("train")
    if any(set(pair) <= keys for pair in _NPZ_KEYS["test"]):
        splits.add("test")
    return splits


#: errors of a damaged zip member (bad deflate data, CRC, cut short)
_ZIP_ERRORS = (_Invalid, zipfile.BadZipFile, zlib.error, EOFError, OSError)


@contextlib.contextmanager
def _open_npz(path):
    """The checked archive (fastmlp.io's reader) of an .npz data file: members, sizes and
    compression ratios are checked before anything is read."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError as they are
        size = os.fstat(f.fileno()).st_size
        start = f.read(6)
        if start == b"\x93NUMPY":
            raise ValueError(f"{path!r} holds a single array (.npy), not an .npz archive with "
                             "X and y")
        if start[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ValueError(f"{path!r} is not a readable .npz file: it is not a zip archive "
                             f"(it starts with {start[:4]!r}; a zip starts with b'PK\\x03\\x04')")
        f.seek(0)
        try:
            archive = _Archive(f, size)
        except _ZIP_ERRORS as exc:
            raise ValueError(f"{path!r} is not a readable .npz file: {exc}") from None
        with archive.zip:
            yield archive


def _npz_header(archive, path, key):
    """(shape, dtype) of member `key`, its .npy header checked against its stored size."""
    try:
        shape, _, dtype, _ = archive.header(key)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"{_name(path)}: member {key + '.npy'!r}: {exc}") from None
    if dtype.kind not in "biuf":
        raise ValueError(f"{_name(path)}: {key} must hold numbers; got dtype {dtype}")
    return shape, dtype


def _npz_array(archive, path, key):
    try:
        return archive.array(key, "biuf")
    except _ZIP_ERRORS as exc:
        raise ValueError(f"{_name(path)}: cannot read member {key + '.npy'!r} ({exc})") from None


def load_npz(path: PathLike, split: Optional[Literal["train", "test"]] = None,
             scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) from an .npz file.

    Keys looked up (the first pair present wins):

    - split=None: ``X``/``y``, ``x``/``y``, then ``X_train``/``y_train``, ``x_train``/``y_train``
    - split="train": ``X_train``/``y_train``, ``x_train``/``y_train``, then ``X``/``y``, ``x``/``y``
    - split="test": ``X_test``/``y_test``, ``x_test``/``y_test`` (Keras' ``mnist.npz`` layout)

    X may have any number of dimensions >= 2 (images are flattened) and any real dtype;
    uint8 X is taken as pixels and scaled to [0, 1] when `scale`, other dtypes are
    converted to float32 unscaled. y must be 1-D whole numbers (or (n, 1)). Nothing is
    unpickled: each member's .npy header (numeric dtype, shape) is checked against the bytes
    the archive stores for it, and X's against y's, before any array is allocated.
    """
    if split not in _NPZ_KEYS:
        raise ValueError(f"split must be None, 'train' or 'test'; got {split!r}")
    with _open_npz(path) as archive:
        keys = archive.keys()
        for kx, ky in _NPZ_KEYS[split]:
            if kx in keys and ky in keys:
                break
        else:
            wanted = " or ".join(f"{a}/{b}" for a, b in _NPZ_KEYS[split])
            raise ValueError(f"{_name(path)} has no {wanted} arrays; it holds {sorted(keys)}")
        x_shape, _ = _npz_header(archive, path, kx)
        y_shape, _ = _npz_header(archive, path, ky)
        if len(x_shape) < 2:
            raise ValueError(f"{_name(path)}: {kx} must have shape (n_samples, "
                             f"n_features...); got {x_shape}")
        if len(y_shape) == 2 and y_shape[1] == 1:
            y_shape = y_shape[:1]
        if len(y_shape) != 1:
            raise ValueError(f"{_name(path)}: {ky} must be 1-D labels; got shape {y_shape}")
        if x_shape[0] != y_shape[0]:
            raise ValueError(f"{_name(path)}: {kx} has {x_shape[0]} samples but {ky} has "
                             f"{y_shape[0]}")
        if x_shape[0] == 0:
            raise ValueError(f"{_name(path)}: {kx} is empty")
        X = _npz_array(archive, path, kx)
        y = _npz_array(archive, path, ky).reshape(-1)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise ValueError(f"{_name(path)}: {ky} must hold whole-number labels")
    X = X.reshape(X.shape[0], -1)
    if X.dtype == np.uint8:
        X = _scaled_pixels(X, scale)
    else:
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError(f"{_name(path)}: {kx} holds NaN or inf")
        X = np.ascontiguousarray(X, dtype=np.float32)
    return X, y.astype(np.int64)
