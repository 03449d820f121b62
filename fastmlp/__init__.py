"""fastmlp: train fully-connected neural networks (MLPs) from Python on compiled kernels.

    import fastmlp
    model = fastmlp.MLP([784, 256, 128, 10], activation="relu", loss="cross_entropy",
                        optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0)
    history = model.fit(X, y, epochs=10, batch_size=128, validation_split=0.1)
    model.evaluate(X_test, y_test)

The kernels live in ``fastmlp.kernels`` (``kernels.backend("cpu" | "reference")``).
"""

__version__ = "0.1.0"

from . import datasets, kernels
from .callbacks import Callback, History
from .gradcheck import gradcheck
from .io import load
from .model import LOSSES, MLP, Dense, Sequential
from .optim import SGD, Adam, AdamW, Optimizer

ACTIVATIONS = tuple(kernels.ACTIVATIONS)

__all__ = [
    "MLP", "Sequential", "Dense", "SGD", "Adam", "AdamW", "Optimizer", "Callback", "History",
    "gradcheck", "load", "datasets", "kernels", "ACTIVATIONS", "LOSSES", "__version__",
]
