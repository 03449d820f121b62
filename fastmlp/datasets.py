"""Data sets: the bundled 8x8 digits and the MNIST IDX format."""

import gzip
import os
from importlib import resources

import numpy as np


def load_digits(scale=True):
    """The bundled 8x8 handwritten digits (1797 samples, UCI optdigits test set, CC BY 4.0).

    Returns (X, y): X float32 of shape (1797, 64), pixels in [0, 1] when `scale` (0..16
    otherwise); y int64 labels 0..9. Creators: E. Alpaydin and C. Kaynak, Bogazici
    University (1998), via the UCI Machine Learning Repository; see fastmlp/data/DIGITS.md.
    """
    with resources.files("fastmlp.data").joinpath("digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as text:
            data = np.loadtxt(text, delimiter=",", dtype=np.float32)
    X, y = data[:, :-1], data[:, -1].astype(np.int64)
    if scale:
        X = X / np.float32(16)
    return np.ascontiguousarray(X), y


def _read_idx(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {os.fspath(path)!r}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{os.fspath(path)!r} is not an unsigned-byte IDX file (bad magic number {raw[:4].hex()})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise ValueError(f"{os.fspath(path)!r}: IDX header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(
            f"{os.fspath(path)!r}: IDX header says shape {shape} ({size} bytes) but the file "
            f"holds {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def load_idx(images, labels, scale=True):
    """MNIST / Fashion-MNIST from IDX files (gzip or raw): (X float32 (n, rows*cols), y int64).

    Pixels are scaled to [0, 1] when `scale`.
    """
    X = _read_idx(images)
    y = _read_idx(labels)
    if y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"images and labels do not match: {X.shape[0]} images and labels of shape {y.shape}"
        )
    X = X.reshape(X.shape[0], -1)
    X = X.astype(np.float32) / np.float32(255) if scale else X.copy()
    return X, y.astype(np.int64)
