"""The command line's commands (see fastmlp.cli): reading the data a command is given
(IDX, CIFAR-10, CSV, .npz), and one function per command (demo, train, evaluate, predict,
bench, export) taking the parsed arguments and returning the exit status."""

import os
import sys
import time

import numpy as np

from ._cli_args import FORMATS, NO_LABELS, UsageError


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


def _doing(args, what):
    """Note what the command is doing now (named by cli.main if it runs out of memory)."""
    args.doing = what


def _load_data(args, want_test=True, n_features=None, classes=None):
    """The data of --data; `classes` ("auto" or K), when given, has a CSV's labels checked
    as they are read (see datasets.load_csv), so that an error names the line."""
    from . import datasets

    path, fmt = args.data, args.format
    _doing(args, f"reading --data {path!r}")
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
    X, y = datasets.load_csv(path, label_column=label,
                             classes=None if label is None else classes)
    return _Data(X, y, description="CSV")


def _check_labels(data, path, classes=None):
    """The number of classes of the training (and test) labels, checked: 0..classes-1, or
    with classes=None up to the largest label + 1 within datasets._class_count's bound."""
    from .datasets import _class_count, _label_text

    if data.y is None:
        raise UsageError("the data has no labels (--label-column none); training needs them")
    parts = [("training labels", data.y)]
    if data.y_test is not None:
        parts.append(("test labels", data.y_test))
    y = np.concatenate([part for _, part in parts]) if len(parts) > 1 else data.y
    k, bad, rule = _class_count(y, classes)
    if bad is not None:
        what, i = parts[0][0], bad
        if i >= len(data.y):
            what, i = parts[1][0], i - len(data.y)
        raise UsageError(f"{path!r}: the {what} hold {_label_text(y[bad])} (sample {i}), out "
                         f"of range; {rule}")
    if k < 2:
        raise UsageError(f"labels hold a single class ({k - 1}); training needs at least 2")
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


def _kernels_ready(model, X, y, args):
    """Compile (or load from the disk cache) every kernel the demo's fit and evaluate use,
    on a throwaway twin of `model` fitted on a few batches, so that the timed fit and its
    epoch lines hold training only; prints one line saying which it was and how long."""
    import fastmlp
    from .kernels import compile_notice, diskcache

    if model.device == "reference":  # NumPy: nothing to compile
        return
    before = compile_notice.compile_seconds()
    start = time.perf_counter()
    twin = fastmlp.MLP(model.sizes, activation=args.activation,
                       optimizer=fastmlp.SGD(lr=0.01, momentum=0.9), device=args.device,
                       seed=args.seed)
    n = min(len(X), 3 * args.batch_size + 7)  # whole batches, a partial one and validation
    twin.fit(X[:n], y[:n], epochs=1, batch_size=args.batch_size, validation_split=0.1,
             verbose=0)
    twin.evaluate(X[:n], y[:n])
    seconds = time.perf_counter() - start
    compiled = compile_notice.compile_seconds() - before
    if compiled > 0:
        later = ("once: later runs load them from the cache" if diskcache.CACHE else
                 "the disk cache is off: FASTMLP_NO_CACHE=1 or no writable folder; every run "
                 "compiles them again")
        print(f"compiled the kernels in {compiled:.1f} s ({later})", flush=True)
    else:
        print(f"kernels loaded from the cache in {seconds:.1f} s", flush=True)


def _cmd_demo(args):
    import fastmlp
    from .kernels import compile_notice

    X, y, X_test, y_test = fastmlp.datasets.load_digits(test_size=0.2, seed=args.seed)
    lr = 0.05 if args.lr is None else args.lr
    model = fastmlp.MLP([X.shape[1], *args.hidden, 10], activation=args.activation,
                        optimizer=fastmlp.SGD(lr=lr, momentum=0.9),
                        device=args.device, seed=args.seed)
    print(f"fastmlp {fastmlp.__version__}: {model.sizes} on {model.device}, "
          f"{len(X)} training and {len(X_test)} test digits (8x8, bundled)", flush=True)
    _kernels_ready(model, X, y, args)
    compiled = compile_notice.compile_seconds()
    start = time.perf_counter()
    model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, validation_split=0.1,
              verbose=args.verbose)
    # a kernel the warm-up missed compiles inside fit: that time is not training
    compiled = compile_notice.compile_seconds() - compiled
    seconds = time.perf_counter() - start - compiled
    note = f" (and {compiled:.1f} s compiling, left out)" if compiled >= 0.05 else ""
    result = model.evaluate(X_test, y_test)
    print(f"trained in {seconds:.2f} s{note}; test accuracy "
          f"{result['accuracy'] * 100:.2f} % (loss {result['loss']:.4f})")
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
    classes = "auto" if args.classes is None else args.classes
    data = _load_data(args, classes=classes)
    main = not args.distributed or fastmlp.distributed.is_main()  # rank 0 prints and writes
    show = print if main else (lambda *a, **kw: None)
    k = _check_labels(data, args.data, args.classes)
    if args.optimizer == "sgd":
        optimizer = fastmlp.SGD(lr=0.1 if args.lr is None else args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    else:
        optimizer = fastmlp.Adam(lr=0.001 if args.lr is None else args.lr,
                                 weight_decay=args.weight_decay)
    sizes = [data.X.shape[1], *args.hidden, k]
    _doing(args, f"building the model {sizes}")
    model = fastmlp.MLP(sizes, activation=args.activation,
                        optimizer=optimizer, device=args.device, dtype=args.dtype, seed=args.seed)
    test_note = f" and {len(data.X_test)} test" if data.X_test is not None else ""
    show(f"fastmlp {fastmlp.__version__}: {model.sizes} on {model.device}, {args.optimizer}, "
         f"{len(data.X)} training{test_note} samples ({data.description}, {k} classes)")
    _doing(args, "training")
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
