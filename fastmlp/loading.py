"""``fastmlp.load``: any fastmlp file, by the format tag its config carries.

A model file (``model.save``) comes back through fastmlp/saving.py's ``load``, an ensemble
file (``Ensemble.save``) through ``Ensemble.load``. This module sits above both: it only
reads the small ``config`` member (through fastmlp/io.py's checked archive) to tell which
one the file is. A file whose tag it cannot read is handed to the model reader, whose error
says what is wrong with it.
"""

from __future__ import annotations

import os
from typing import Union

from . import io as fio
from ._typing import Device, PathLike
from .ensemble import ENSEMBLE_FORMAT, Ensemble
from .graph import Model
from .model import Sequential
from .saving import load as load_model


def _format_tag(path):
    """The ``format`` of the file's config, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            archive = fio._Archive(f, os.fstat(f.fileno()).st_size)
            return fio.read_config(archive).get("format")
    except Exception:  # noqa: BLE001 - any fault is reported by the reader it goes to
        return None


def load(path: PathLike, device: Device = "auto") -> Union[Sequential, Model, Ensemble]:
    """Load a file saved by fastmlp on `device`: a model (``model.save(path)``), ready to
    predict or train, with its optimizer state and random generator; or an ensemble
    (``Ensemble.save(path)``), as ``Ensemble.load`` reads it.

    Raises FileNotFoundError for a missing file and ValueError for one that is not a valid
    fastmlp file (truncated, forged, another format)."""
    from .kernels import backend

    backend(device)  # a bad device name fails here, not as a complaint about the file
    path = os.fspath(path)
    if _format_tag(path) == ENSEMBLE_FORMAT:
        return Ensemble.load(path, device)
    return load_model(path, device)


__all__ = ["load"]
