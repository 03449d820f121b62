"""The command line's arguments (see fastmlp.cli): one argparse parser per command, the
argument types that check each value, and UsageError, the one-line error of a bad
argument."""

import argparse

import numpy as np

COMMANDS = ("demo", "train", "evaluate", "predict", "bench", "export")
FORMATS = ("idx", "cifar10", "csv", "npz")


class UsageError(Exception):
    """A bad argument or an unusable file: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ----------------------------------------------------------------------------------------
# argument types


def _int_at_least(minimum):
    """An argparse type: an integer >= minimum."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def _fraction(low_open=False, high=1.0, high_open=True):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
        ok = (value > 0 if low_open else value >= 0) and (value < high if high_open else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"must be in {'(' if low_open else '['}0, {high:g}{')' if high_open else ']'}; got {text!r}")
        return value
    return parse


def _sizes(text):
    parts = [p.strip() for p in text.split(",")]
    if text.strip() == "" or text.strip().lower() == "none":
        return []
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be layer sizes separated by commas, like 256,128; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1; got {text!r}")
    return sizes


#: --label-column none: the CSV holds features only
NO_LABELS = "none"


def _label_column(text):
    if text.lower() == "none":
        return NO_LABELS
    try:
        return int(text)
    except ValueError:
        return text  # a column name


def _activations():
    from .kernels.codes import ACTIVATIONS

    return tuple(ACTIVATIONS)


# ----------------------------------------------------------------------------------------
# parsers


def _add_common(p):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "reference", "cuda"),
                   help="where to compute: auto (default), cpu, cuda or reference (NumPy, slow)")


def _add_training(p, epochs, batch_size, hidden, lr_help):
    p.add_argument("--hidden", type=_sizes, default=hidden,
                   help=f"hidden layer sizes, comma separated (default {','.join(map(str, hidden))})")
    p.add_argument("--activation", default="relu", choices=_activations(), metavar="NAME",
                   help="hidden activation: " + ", ".join(_activations()) + " (default relu)")
    p.add_argument("--epochs", type=_positive_int, default=epochs,
                   help=f"passes over the training data (default {epochs})")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size,
                   help=f"mini-batch size (default {batch_size})")
    p.add_argument("--lr", type=_positive_float, default=None, help=lr_help)
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="0 silent, 1 progress bar (default), 2 one line per epoch")
    _add_common(p)


def _demo_parser(prog="fastmlp"):
    p = _Parser(
        prog=prog,
        description="Train an MLP on the bundled 8x8 handwritten digits (1797 samples) and print "
                    "its test accuracy. Subcommands: " + ", ".join(COMMANDS) +
                    " ('fastmlp COMMAND --help' for each).",
        epilog="Commands: train (on IDX/CIFAR-10/CSV/.npz files), evaluate and predict (with a "
               "saved model), bench (speed against a NumPy MLP), export (a saved model to ONNX), "
               "demo (this).",
    )
    _add_training(p, epochs=40, batch_size=32, hidden=[128, 64],
                  lr_help="SGD learning rate (default 0.05)")
    from . import __version__  # the package's own attribute, set before its imports

    p.add_argument("--version", action="version", version=f"fastmlp {__version__}",
                   help="print 'fastmlp VERSION' and exit")
    return p


def _data_args(p, required=True):
    p.add_argument("--data", required=required, metavar="PATH",
                   help="the data: a folder or a file (see 'fastmlp --help' for the formats)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="idx (MNIST), cifar10, csv or npz; guessed from PATH when left out")
    p.add_argument("--label-column", type=_label_column, default=None, metavar="COLUMN",
                   help="csv only: the label column, an index (-1: the last, the default) or a "
                        "header name; 'none' for a file without labels")


def _train_parser():
    p = _Parser(prog="fastmlp train",
                description="Train an MLP classifier on a data set and optionally save it.")
    _data_args(p)
    _add_training(p, epochs=10, batch_size=128, hidden=[256, 128],
                  lr_help="learning rate (default 0.1 for sgd, 0.001 for adam)")
    p.add_argument("--classes", type=_int_at_least(2), default=None, metavar="K",
                   help="the number of classes: labels must be 0..K-1 (default: the largest "
                        "label + 1, at most twice the number of distinct labels)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="sgd (with --momentum, default) or adam")
    p.add_argument("--momentum", type=_fraction(), default=0.9,
                   help="SGD momentum in [0, 1) (default 0.9)")
    p.add_argument("--weight-decay", type=_fraction(high=float("inf")), default=0.0,
                   help="weight decay (default 0)")
    p.add_argument("--validation-split", type=_fraction(), default=0.0,
                   help="fraction of the training data held out to validate each epoch (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float32 (default) or float64")
    p.add_argument("--save", metavar="MODEL.npz", default=None, help="save the trained model here")
    p.add_argument("--plot", metavar="CURVES.png", default=None,
                   help="save the loss/accuracy curves as a PNG (needs matplotlib)")
    p.add_argument("--distributed", choices=("mpi",), default=None,
                   help="data-parallel over the processes of 'mpiexec -n P fastmlp train ...' "
                        "(--batch-size per process; rank 0 prints and saves)")
    return p


def _model_and_data_args(p):
    """A saved model, the data to use it on and which part of that data (evaluate, predict)."""
    p.add_argument("model", metavar="MODEL", help="a model file written by 'fastmlp train --save'")
    _data_args(p)
    p.add_argument("--split", choices=("auto", "train", "test"), default="auto",
                   help="which part of the data: test when it has one (auto, default), train or test")


def _evaluate_parser():
    p = _Parser(prog="fastmlp evaluate", description="Evaluate a saved model on a data set: "
                                                      "loss and accuracy.")
    _model_and_data_args(p)
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="inference batch size")
    _add_common(p)
    return p


def _predict_parser():
    p = _Parser(prog="fastmlp predict", description="Predict with a saved model; write a CSV with "
                                                     "one prediction a line.")
    _model_and_data_args(p)
    p.add_argument("--out", default="-", metavar="PREDS.csv",
                   help="where to write the predictions (default: standard output)")
    p.add_argument("--proba", action="store_true",
                   help="also write the class probabilities (columns p0, p1, ...)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="inference batch size")
    _add_common(p)
    return p


def _bench_parser():
    p = _Parser(prog="fastmlp bench",
                description="A quick speed check: one training epoch of fastmlp against a "
                            "hand-written NumPy MLP on random MNIST-shaped data (a few seconds).")
    p.add_argument("--samples", type=_positive_int, default=10000, help="samples (default 10000)")
    p.add_argument("--features", type=_positive_int, default=784, help="inputs (default 784)")
    p.add_argument("--classes", type=_positive_int, default=10, help="classes (default 10)")
    p.add_argument("--hidden", type=_sizes, default=[256, 128], help="hidden sizes (default 256,128)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="batch size (default 128)")
    p.add_argument("--repeat", type=_positive_int, default=3,
                   help="epochs timed for each; the best is reported (default 3)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--profile", action="store_true",
                   help="instead of the epoch comparison, print where one training step's time "
                        "goes, kernel by kernel (model.profile)")
    p.add_argument("--steps", type=_positive_int, default=50,
                   help="--profile: steps timed (default 50)")
    p.add_argument("--gemm-gflops", type=_positive_float, default=None, metavar="RATE",
                   help="--profile: the machine's sgemm rate in GFLOP/s (default: measured)")
    _add_common(p)
    return p


def _export_parser():
    p = _Parser(prog="fastmlp export",
                description="Export a saved model to ONNX for inference runtimes (needs the onnx "
                            "package: pip install 'fastmlp[onnx]'). The graph's output is the "
                            "class probabilities (classification) or the predictions (regression).")
    p.add_argument("model", metavar="MODEL", help="a model file written by 'fastmlp train --save'")
    p.add_argument("--to", required=True, metavar="MODEL.onnx", help="the ONNX file to write")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="the graph's float type (default: the model's)")
    return p


_PARSERS = {"demo": lambda: _demo_parser("fastmlp demo"), "train": _train_parser,
            "evaluate": _evaluate_parser, "predict": _predict_parser, "bench": _bench_parser,
            "export": _export_parser}
