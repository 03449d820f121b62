"""fastmlp: train fully-connected neural networks (MLPs) from Python on compiled kernels.

    import fastmlp
    model = fastmlp.MLP([784, 256, 128, 10], activation="relu", loss="cross_entropy",
                        optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0)
    history = model.fit(X, y, epochs=10, batch_size=128, validation_split=0.1)
    model.evaluate(X_test, y_test)

The kernels live in ``fastmlp.kernels`` (``kernels.backend("auto" | "cpu" | "cuda" | "reference")``).
"""

__version__ = "0.1.0"

from . import datasets, distributed, kernels, metrics
from .callbacks import (Callback, CosineDecay, EarlyStopping, ExponentialDecay, GradientMonitor,
                        History,
                        LambdaCallback, LearningRateSchedule, ModelCheckpoint, ReduceLROnPlateau,
                        StepDecay)
from .errors import DivergenceError
from .gradcheck import gradcheck
from .interop import from_sklearn, from_torch
from .lbfgs import fit_lbfgs
from .ensemble import Ensemble
from .loading import load
from .graph import Input, Model
from .layers import Activation, Add, BatchNorm, Concatenate, Dense, Dropout, Layer
from .model import LOSSES, MLP, Sequential
from .onnx_io import from_onnx
from .optim import LAMB, SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

ACTIVATIONS = tuple(kernels.ACTIVATIONS)

__all__ = [
    "MLP", "Sequential", "Model", "Input", "Dense", "Dropout", "BatchNorm", "Activation", "Add",
    "Concatenate", "Layer", "Ensemble", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "LAMB",
    "Optimizer", "Callback", "History", "EarlyStopping", "ModelCheckpoint",
    "LambdaCallback", "LearningRateSchedule", "StepDecay", "ExponentialDecay", "CosineDecay",
    "ReduceLROnPlateau", "GradientMonitor",
    "gradcheck", "fit_lbfgs", "DivergenceError", "load", "datasets", "distributed", "kernels", "metrics", "ACTIVATIONS", "LOSSES", "__version__",
    "from_onnx", "from_torch", "from_sklearn",
]


def __getattr__(name):
    """MLPClassifier and MLPRegressor, imported on first use: they need scikit-learn, an
    optional dependency, and ``import fastmlp`` must work without it."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import sklearn as _sklearn

        return getattr(_sklearn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
