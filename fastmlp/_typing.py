"""Type aliases of the public signatures (annotations only: nothing here runs at a call).

``Inputs`` is what fit, evaluate, predict... take as X: an array (or a SciPy sparse matrix,
matched by its ``tocsr`` method, so that SciPy need not be installed), or for a model with
several inputs a list of arrays in input order or a dict {input name: array}."""

from __future__ import annotations

import os
from typing import Any, Literal, Mapping, Protocol, Sequence, Union

from numpy.typing import ArrayLike, DTypeLike

from .optim import Optimizer


class SparseMatrix(Protocol):
    """A SciPy sparse matrix or array (CSR, CSC, COO...): anything with ``tocsr``."""

    def tocsr(self) -> Any: ...


#: X of a model: an array, a sparse matrix, a list of arrays or a dict by input name
Inputs = Union[ArrayLike, SparseMatrix, Sequence[ArrayLike], Mapping[str, ArrayLike]]
#: a file's path
PathLike = Union[str, os.PathLike[str]]
#: an optimizer: an instance or a name ('sgd', 'adam'...; see fastmlp.optim.get_optimizer)
OptimizerLike = Union[str, Optimizer]
#: where a model runs (fastmlp.kernels.backend)
Device = Literal["auto", "cpu", "cuda", "reference"]
#: a model's dtype: "float32" or "float64" (or the NumPy types)
DType = DTypeLike
