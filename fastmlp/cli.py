"""The ``fastmlp`` command line (also ``python -m fastmlp``).

::

    fastmlp [--epochs N ...]          the demo: train on the bundled 8x8 digits
    fastmlp demo [--epochs N ...]     the same, spelled out
    fastmlp train --data PATH [--format idx|cifar10|csv|npz] [--hidden 256,128]
                  [--activation relu] [--epochs 10] [--batch-size 128] [--optimizer sgd|adam]
                  [--lr 0.1] [--device auto] [--save model.npz] [--plot curves.png] ...
    fastmlp evaluate MODEL --data PATH [--format ...] [--split auto|train|test]
    fastmlp predict MODEL --data PATH [--format ...] [--out preds.csv] [--proba]
    fastmlp bench [--samples 10000] [--batch-size 128] [--hidden 256,128] [--profile [--steps 50]]
    fastmlp export MODEL --to MODEL.onnx [--dtype float32|float64]

Data (``--data``; ``--format`` is guessed from the path when left out):

- ``idx``: MNIST / Fashion-MNIST. A folder holding ``train-images-idx3-ubyte`` and
  ``train-labels-idx1-ubyte`` (and, for a test set, ``t10k-images-idx3-ubyte`` /
  ``t10k-labels-idx1-ubyte``), each raw or ``.gz``; or one images file, whose labels file
  is found beside it (``images`` -> ``labels``, ``idx3`` -> ``idx1`` in its name).
- ``cifar10``: the folder of CIFAR-10's binary batches (``data_batch_1.bin`` ..
  ``data_batch_5.bin``, ``test_batch.bin``) or the ``cifar-10-binary.tar.gz`` archive.
- ``csv``: numbers, one sample a line, labels in ``--label-column`` (default the last); a
  header line is detected. ``predict`` accepts a file without the label column.
- ``npz``: arrays ``X``/``y`` (or ``x``/``y``), or ``x_train``/``y_train`` with
  ``x_test``/``y_test``.

``train`` trains on the training part and, where the data has a test part (IDX folders
with t10k files, CIFAR-10, .npz with x_test), reports the test accuracy at the end.
``evaluate`` and ``predict`` use the test part when there is one (``--split`` to choose).

Bad arguments and unreadable files print one line, ``fastmlp: error: ...``, on stderr and
exit with status 2; a training run that diverges exits with status 1.
"""

import argparse
import os
import sys
import time

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


# ----------------------------------------------------------------------------------------
# data


def _guess_format(path):
    name = os.path.basename(os.path.normpath(path)).lower()
    if os.path.isdir(path):
        entries = os.listdir(path)
        if "data_batch_1.bin" in entries or "cifar-10-batches-bin" in entries:
            return "cifar10"
        if any("idx3-ubyte" in e or "idx1-ubyte" in e for e in entries):
            return "idx"
        raise UsageError(f"cannot tell the format of the folder {path!r} (no IDX or CIFAR-10 "
                         "files in it); give --format")
    if not os.path.exists(path):
        raise UsageError(f"--data: no such file or folder: {path!r}")
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        return "csv"
    if "idx3" in name or name.endswith(("-ubyte", "-ubyte.gz")):
        return "idx"
    if name.endswith((".tar.gz", ".tgz", ".tar")) and "cifar" in name:
        return "cifar10"
    raise UsageError(f"cannot tell the format of {path!r} from its name; give --format "
                     f"({', '.join(FORMATS)})")


class _Data:
    """The training part (X, y) and, where the data has one, the test part."""

    def __init__(self, X, y, X_test=None, y_test=None, description=""):
        self.X, self.y, self.X_test, self.y_test = X, y, X_test, y_test
        self.description = description

    def part(self, split):
        if split == "test" or (split == "auto" and self.X_test is not None):
            if self.X_test is None:
                raise UsageError("--split test: this data has no test part")
            return self.X_test, self.y_test
        return self.X, self.y


def _load_data(args, want_test=True, n_features=None):
    from . import datasets

    path, fmt = args.data, args.format
    if not os.path.exists(path):
        raise UsageError(f"--data: no such file or folder: {path!r}")
    fmt = fmt or _guess_format(path)
    if args.label_column is not None and fmt != "csv":
        raise UsageError("--label-column applies to --format csv only")
    if fmt == "idx":
        if os.path.isdir(path):
            X, y = datasets.load_idx_folder(path, "train")
            try:
                test = datasets.find_idx_files(path, "test") if want_test else None
            except FileNotFoundError:
                test = None
            X_test, y_test = datasets.load_idx(*test) if test else (None, None)
        else:
            X, y = datasets.load_idx(*datasets.find_idx_files(path))
            X_test = y_test = None
        return _Data(X, y, X_test, y_test, "IDX")
    if fmt == "cifar10":
        return _Data(*datasets.load_cifar10(path), description="CIFAR-10")
    if fmt == "npz":
        X, y = datasets.load_npz(path)
        X_test = y_test = None
        if want_test and "test" in datasets.npz_splits(path):
            X_test, y_test = datasets.load_npz(path, split="test")
        return _Data(X, y, X_test, y_test, ".npz")
    # csv
    if args.label_column is None:
        label = -1  # the last column
    elif args.label_column == NO_LABELS:
        label = None  # features only
    else:
        label = args.label_column
    if n_features is not None and args.label_column is None:
        X, _ = datasets.load_csv(path, label_column=None)
        if X.shape[1] == n_features:  # features only
            return _Data(X, None, description="CSV")
    X, y = datasets.load_csv(path, label_column=label)
    return _Data(X, y, description="CSV")


def _check_labels(y, what="labels"):
    if y is None:
        raise UsageError(f"the data has no labels (--label-column none); training needs them")
    if y.min() < 0:
        raise UsageError(f"{what} must be 0, 1, 2, ...; got {int(y.min())}")
    k = int(y.max()) + 1
    if k < 2:
        raise UsageError(f"{what} hold a single class ({k - 1}); training needs at least 2")
    return k


def _check_output_path(path, option, suffix=None):
    if suffix and not path.endswith(suffix):
        raise UsageError(f"{option} must be a path ending in {suffix}; got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option}: the folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{option}: {path!r} is a folder")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option}: cannot write in {folder!r}")


# ----------------------------------------------------------------------------------------
# commands


def _cmd_demo(args):
    import fastmlp

    X, y = fastmlp.datasets.load_digits()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(X))
    n_test = len(X) // 5
    test, train = order[:n_test], order[n_test:]
    lr = 0.05 if args.lr is None else args.lr
    model = fastmlp.MLP([X.shape[1], *args.hidden, 10], activation=args.activation,
                        optimizer=fastmlp.SGD(lr=lr, momentum=0.9),
                        device=args.device, seed=args.seed)
    print(f"fastmlp {fastmlp.__version__}: {model.sizes} on {model.device}, "
          f"{len(train)} training and {len(test)} test digits (8x8, bundled)")
    start = time.perf_counter()
    model.fit(X[train], y[train], epochs=args.epochs, batch_size=args.batch_size,
              validation_split=0.1, verbose=args.verbose)
    seconds = time.perf_counter() - start
    result = model.evaluate(X[test], y[test])
    print(f"trained in {seconds:.1f} s; test accuracy {result['accuracy'] * 100:.2f} % "
          f"(loss {result['loss']:.4f})")
    return 0


def _cmd_train(args):
    import fastmlp

    if args.save:
        _check_output_path(args.save, "--save", ".npz")
    if args.plot:
        _check_output_path(args.plot, "--plot", ".png")
        if not hasattr(fastmlp.History, "plot"):
            raise UsageError("--plot needs History.plot, which this version of fastmlp lacks")
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--plot needs matplotlib: pip install 'fastmlp[plot]'")
    data = _load_data(args)
    main = not args.distributed or fastmlp.distributed.is_main()  # rank 0 prints and writes
    show = print if main else (lambda *a, **kw: None)
    k = _check_labels(data.y)
    if data.y_test is not None:
        k = max(k, int(data.y_test.max()) + 1)
    if args.optimizer == "sgd":
        optimizer = fastmlp.SGD(lr=0.1 if args.lr is None else args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    else:
        optimizer = fastmlp.Adam(lr=0.001 if args.lr is None else args.lr,
                                 weight_decay=args.weight_decay)
    model = fastmlp.MLP([data.X.shape[1], *args.hidden, k], activation=args.activation,
                        optimizer=optimizer, device=args.device, dtype=args.dtype, seed=args.seed)
    test_note = f" and {len(data.X_test)} test" if data.X_test is not None else ""
    show(f"fastmlp {fastmlp.__version__}: {model.sizes} on {model.device}, {args.optimizer}, "
         f"{len(data.X)} training{test_note} samples ({data.description}, {k} classes)")
    start = time.perf_counter()
    history = model.fit(data.X, data.y, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, verbose=args.verbose,
                        distributed=args.distributed)
    seconds = time.perf_counter() - start
    h = history.history
    line = f"trained {len(history.epoch)} epochs in {seconds:.1f} s; loss {h['loss'][-1]:.4f}"
    if "accuracy" in h:
        line += f", training accuracy {h['accuracy'][-1] * 100:.2f} %"
    if "val_accuracy" in h:
        line += f", validation accuracy {h['val_accuracy'][-1] * 100:.2f} %"
    show(line)
    if data.X_test is not None and main:
        result = model.evaluate(data.X_test, data.y_test)
        print(f"test accuracy {result['accuracy'] * 100:.2f} % (loss {result['loss']:.4f}) on "
              f"{len(data.X_test)} samples")
    if args.save and main:
        model.save(args.save)
        print(f"saved the model to {args.save}")
    if args.plot and main:
        history.plot(args.plot)
        print(f"saved the curves to {args.plot}")
    return 0


def _load_model(args):
    import fastmlp

    if not os.path.exists(args.model):
        raise UsageError(f"MODEL: no such file: {args.model!r}")
    return fastmlp.load(args.model, device=args.device)


def _cmd_evaluate(args):
    model = _load_model(args)
    data = _load_data(args, n_features=model.n_features)
    X, y = data.part(args.split)
    if y is None:
        raise UsageError("the data has no labels; evaluate needs them (use predict)")
    result = model.evaluate(X, y, batch_size=args.batch_size)
    parts = [f"loss {result['loss']:.6f}"]
    if "accuracy" in result:
        parts.append(f"accuracy {result['accuracy'] * 100:.2f} %")
    print(f"{'; '.join(parts)} on {len(X)} samples")
    return 0


def _predictions_csv(pred, proba):
    """CSV text: a header, then one line per sample (prediction[s], then probabilities)."""
    import io

    pred2 = pred.reshape(len(pred), -1)
    header = ["prediction"] if pred.ndim == 1 else [f"prediction_{j}" for j in range(pred2.shape[1])]
    fmts = ["%d" if pred.dtype.kind in "iub" else "%.9g"] * pred2.shape[1]
    table = pred2.astype(np.float64)
    if proba is not None:
        header += [f"p{j}" for j in range(proba.shape[1])]
        fmts += ["%.9g"] * proba.shape[1]
        table = np.hstack([table, proba.astype(np.float64)])
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    np.savetxt(out, table, fmt=fmts, delimiter=",")
    return out.getvalue()


def _cmd_predict(args):
    if args.out != "-":
        _check_output_path(args.out, "--out")
    model = _load_model(args)
    data = _load_data(args, n_features=model.n_features)
    X, _ = data.part(args.split)
    pred = model.predict(X, batch_size=args.batch_size)
    proba = None
    if args.proba:
        if model.loss == "mse":
            raise UsageError("--proba needs a classification model; this one is a regression (mse)")
        proba = model.predict_proba(X, batch_size=args.batch_size)
    text = _predictions_csv(pred, proba)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        from ._atomic import atomic_write

        atomic_write(args.out, lambda f: f.write(text.encode("utf-8")))
        print(f"wrote {len(pred)} predictions to {args.out}", file=sys.stderr)
    return 0


def _cmd_bench(args):
    import fastmlp
    from fastmlp.profile import step_flop

    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    X = rng.random((args.samples, args.features), dtype=np.float64).astype(dtype)
    y = rng.integers(0, args.classes, args.samples)
    sizes = [args.features, *args.hidden, max(args.classes, 2)]
    model = fastmlp.MLP(sizes, optimizer=fastmlp.SGD(lr=0.01), device=args.device,
                        dtype=args.dtype, seed=0)
    from ._numpy_mlp import sgd_epoch

    W = [w.astype(dtype) for w in model.get_weights()[0::2]]
    b = [v.astype(dtype) for v in model.get_weights()[1::2]]
    print(f"fastmlp {fastmlp.__version__} bench: {sizes}, {args.samples} samples, batch "
          f"{args.batch_size}, {args.dtype}, plain SGD, on {model.device}")
    start = time.perf_counter()
    model.fit(X[:args.batch_size * 2], y[:args.batch_size * 2], epochs=1,
              batch_size=args.batch_size, shuffle=False, verbose=0)  # compile / load the kernels
    warm = time.perf_counter() - start
    if args.profile:
        print(f"  (kernels ready in {warm:.2f} s)")
        model.profile(X, y, steps=args.steps, batch_size=args.batch_size,
                      gemm_gflops=args.gemm_gflops, verbose=1)
        return 0
    sgd_epoch(W, b, X[:args.batch_size * 2], y[:args.batch_size * 2], args.batch_size, 0.01)

    def best(fn):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_fast = best(lambda: model.fit(X, y, epochs=1, batch_size=args.batch_size, shuffle=False,
                                    verbose=0))
    t_numpy = best(lambda: sgd_epoch(W, b, X, y, args.batch_size, 0.01))
    gflop = step_flop(sizes, args.samples) / 1e9  # the products of an epoch's steps
    print(f"  (kernels ready in {warm:.2f} s)")
    print(f"  fastmlp:            {t_fast:.4g} s/epoch ({gflop / t_fast:.1f} GFLOP/s)")
    print(f"  hand-written NumPy: {t_numpy:.4g} s/epoch ({gflop / t_numpy:.1f} GFLOP/s)")
    print(f"  ratio: fastmlp is {t_numpy / t_fast:.2f}x the speed of NumPy "
          f"(best of {args.repeat} epochs each)")
    return 0


def _cmd_export(args):
    _check_output_path(args.to, "--to", ".onnx")
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        raise UsageError("export needs the onnx package: pip install 'fastmlp[onnx]'")
    args.device = "reference"  # the weights only: no kernel to compile
    model = _load_model(args)
    model.to_onnx(args.to, dtype=args.dtype)
    print(f"wrote {args.to} ({model.n_features} inputs -> {model.n_outputs} outputs, "
          f"{args.dtype or model.dtype.name})")
    return 0


_COMMANDS = {"demo": _cmd_demo, "train": _cmd_train, "evaluate": _cmd_evaluate,
             "predict": _cmd_predict, "bench": _cmd_bench, "export": _cmd_export}


def _one_line(exc):
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    return " ".join(text.split())


def main(argv=None):
    """Run the command line with `argv` (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PARSERS:
        command, parser = argv[0], _PARSERS[argv[0]]()
        argv = argv[1:]
    else:
        command, parser = "demo", _demo_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[command](args)
    except FloatingPointError as exc:
        print(f"fastmlp: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        print(f"fastmlp: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
