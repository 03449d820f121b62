"""Argument checks shared by every public entry point.

Each check raises a ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, bad
value) whose message names the argument, what was expected and what was received.
"""

import math
import mmap
import numbers

import numpy as np

_FINITE_CHUNK = 1 << 20  # elements checked at a time, so the check of a big X stays small


def check_features(shape, n_features, name="X"):
    """A 2-D input of `shape` has columns, and `n_features` of them where that is given."""
    if shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {shape}")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(
            f"{name} must have {n_features} features (the model's input size); "
            f"got {shape[1]} (shape {shape})"
        )


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} of type {type(value).__name__}"


def check_int(value, name, minimum=1):
    """An integer (not a bool) >= minimum, returned as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_float(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (open ends where asked), returned as float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {_describe(value)}")
    value = float(value)
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    bad = not np.isfinite(value)
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}; got {value!r}")
    return value


def check_choice(value, name, choices):
    """One of `choices` (strings), returned as given."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}; got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def check_dtype(dtype):
    """'float32' or 'float64' (or the NumPy types), returned as a NumPy dtype."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt


def _as_numeric_array(value, name):
    """np.asarray with a clear TypeError for strings, objects, complex and ragged input."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array; got {_describe(value)}")
    from .sparse import issparse

    if issparse(value):
        raise TypeError(f"{name} must be a dense array: SciPy sparse input is for X (the "
                        f"samples) only; got a {type(value).__name__} (use {name}.toarray())")
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular numeric array; got ragged input ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (bool, int, uint or float); got dtype {arr.dtype}"
        )
    return arr


_LARGEST = {}


def _largest(dtype):
    """The largest finite value of the float dtype (np.finfo is slow to ask each time)."""
    dtype = np.dtype(dtype)
    if dtype not in _LARGEST:
        _LARGEST[dtype] = float(np.finfo(dtype).max)
    return _LARGEST[dtype]


def check_finite(arr, name, dtype=None, where=None):
    """Raise ValueError if a float array holds NaN or inf, or values beyond what `dtype`
    (the model's float type) can hold, checked in bounded chunks. where(index) says where
    the first bad value (at that index of arr) lies for the message (default: the index)."""
    if arr.dtype.kind != "f":
        return
    own = _largest(arr.dtype)
    limit = min(_largest(dtype if dtype is not None else arr.dtype), own)
    # |x| <= limit is isfinite(x) where the limit is arr's own largest value: one pass
    ok = np.isfinite if limit == own else lambda a: np.abs(a) <= limit
    # chunks of about _FINITE_CHUNK elements: of the flat array, or of the rows of a view
    # (a column slice of a memmap...), which is never copied or tested whole
    flat = arr.reshape(-1) if arr.flags.c_contiguous else arr  # (a view has ndim >= 1)
    row = math.prod(flat.shape[1:])  # elements of one row (1 for a flat array)
    rows = max(_FINITE_CHUNK // max(row, 1), 1)
    for start in range(0, flat.shape[0], rows):
        part = flat[start : start + rows]
        if not ok(part).all():
            break
    else:
        return
    at = np.argwhere(~(np.abs(part) <= limit))[0]
    at[0] += start
    bad = tuple(int(i) for i in (at if flat is arr else np.unravel_index(at[0], arr.shape)))
    value = arr[bad]
    where = f"at index {bad}" if where is None else where(bad)
    if np.isfinite(value):
        raise ValueError(
            f"{name} must be finite in {np.dtype(dtype).name}; it holds {float(value)!r} {where}, "
            f"beyond the largest {np.dtype(dtype).name} ({limit:.4g})"
        )
    raise ValueError(f"{name} must be finite; it holds {value} {where}")


#: dtypes the compiled kernels read directly; others are converted to the model's dtype
_KERNEL_DTYPES = {np.dtype(t) for t in (np.float32, np.float64, np.uint8, np.int8, np.uint16,
                                         np.int16, np.uint32, np.int32, np.uint64, np.int64)}


def _in_a_file(arr):
    """Whether arr's memory is a mapping of a file (np.memmap, np.load(mmap_mode=...))."""
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, mmap.mmap)


def reads_directly(X):
    """Whether the kernels read the rows of checked input X where they are (C-contiguous,
    as check_X returns but for a view of a file, such as a memmap's column slice, whose
    rows NumPy reads a batch at a time into the kernels' buffers)."""
    return X.flags.c_contiguous


def check_X(X, n_features=None, name="X", dtype=None):
    """Samples as a 2-D real array (n_samples, n_features), finite, not empty.

    Higher-dimensional input (images) is flattened to (n_samples, prod(rest)). An array of
    a dtype the kernels read (floats, ints, uint8...) is returned without copying where it
    is C-contiguous; a view whose rows are contiguous (a column slice ``X[:, 1:]``, labels in
    column 0; every other row) and any view of a file (a memmap's) as the view it is, which
    predict, evaluate and fit read a batch of rows at a time (see ``reads_directly``), so
    memory does not grow with X. An array whose rows are themselves strided (Fortran order,
    a column step) is copied C-contiguous: gathering its rows a batch at a time would read
    every value from another cache line. Others (bool, float16, longdouble) are converted
    to `dtype`, the model's. Values must fit in `dtype`; the check reads X in chunks of rows.
    """
    from .sparse import check_sparse_X, issparse

    if issparse(X):  # kept sparse (CSR), never densified as a whole
        return check_sparse_X(X, n_features, name, dtype)
    arr = _as_numeric_array(X, name)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got an array of shape {arr.shape}"
            + ("; use X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample" if arr.ndim == 1 else "")
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {arr.shape}, needs at least one sample")
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    check_features(arr.shape, n_features, name)
    check_finite(arr, name, dtype)
    if arr.dtype not in _KERNEL_DTYPES:
        return np.ascontiguousarray(arr, dtype=dtype or np.float64)
    if not arr.flags.c_contiguous and (_in_a_file(arr) or _rows_contiguous(arr)):
        return arr  # read a batch of rows at a time where it is used, never copied whole
    return np.ascontiguousarray(arr)


def _rows_contiguous(arr):
    """Whether each row of the 2-D array `arr` lies contiguous in memory (a column slice of
    a C-ordered array, or every k-th row of one), rows in increasing order."""
    return arr.ndim == 2 and arr.strides[1] == arr.itemsize and arr.strides[0] > 0


def _whole(arr):
    """Whether every value of the numeric array `arr` is a whole number."""
    return arr.dtype.kind in "biu" or bool(np.all(np.equal(np.mod(arr, 1), 0)))


def infer_loss(y, n_outputs, name="y"):
    """The loss a model given no ``loss=`` trains with, read from its targets, and why:
    ``(loss, reason)``. The rule, the same for MLP, Sequential and Model (a softmax or sigmoid
    output layer names its loss itself and never comes here):

    - class labels, one whole number per sample (integers, or whole floats such as a label
      column of a float array), for several outputs: ``cross_entropy``; one-hot rows (one 1
      per row, 0 elsewhere): ``cross_entropy``;
    - integer (or bool) labels 0 and 1 for one output: ``binary_cross_entropy``;
    - real-valued targets (any value that is no whole number): ``mse``;
    - anything else fits more than one loss, and a guess could be wrong (0/1 stored as
      floats or 0/1 columns: yes/no labels or regression; whole numbers for one output:
      counts or classes): a ValueError that asks for ``loss=`` and names the losses that
      fit."""
    arr = _as_numeric_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.size == 0:
        raise ValueError(f"the model was given no loss and {name} is empty: there is nothing "
                         "to choose it from; pass loss= to the model or to compile")
    whole = _whole(arr)
    binary = bool(np.all((arr == 0) | (arr == 1)))
    rows_sum_to_1 = arr.ndim == 2 and bool(np.all(arr >= 0)) \
        and bool(np.allclose(arr.sum(axis=1, dtype=np.float64), 1, atol=1e-3))
    if not whole and rows_sum_to_1:
        raise ValueError(f"the model was given no loss and {name} (rows of probabilities, shape "
                         f"{arr.shape}) does not say which to train with: pass loss= to the "
                         "model or to compile: loss='cross_entropy' or loss='kl_divergence' "
                         "for soft class targets, loss='mse' for regression")
    if not whole:
        return "mse", "real-valued targets"
    if arr.ndim == 1 and n_outputs > 1:
        return "cross_entropy", "class labels"
    if arr.ndim == 1 and arr.dtype.kind in "biu" and binary:
        return "binary_cross_entropy", "0/1 labels, one output"
    if arr.ndim == 2 and binary and bool(np.all(arr.sum(axis=1) == 1)):
        return "cross_entropy", "one-hot rows"
    if arr.ndim == 1:
        found = "0/1 values stored as floats" if binary else "whole numbers"
        fits = ("loss='binary_cross_entropy' for yes/no labels (or pass them as integers), "
                "loss='mse' or loss='poisson' (counts) for regression" if binary else
                "loss='mse' or loss='poisson' (counts) for regression, or more outputs and "
                "loss='cross_entropy' for class labels")
    else:
        found = "0/1 columns" if binary else "columns of whole numbers"
        fits = ("loss='binary_cross_entropy' for several yes/no labels, loss='mse' for "
                "regression")
    raise ValueError(f"the model was given no loss and {name} ({found}, shape {arr.shape}) does "
                     f"not say which to train with: pass loss= to the model or to compile: {fits}")


def suggested_loss(y, n_outputs):
    """The loss `infer_loss` reads from the targets `y`, or None where it cannot choose."""
    try:
        return infer_loss(y, n_outputs)[0]
    except (TypeError, ValueError):
        return None


def check_targets(y, loss, n_outputs, n_samples, dtype, name="y"):
    """Targets for `loss`, checked and converted for the loss kernel.

    Returns ``(T, labels)``: T is what the loss kernel takes (int64 labels of shape (n,) or
    `dtype` targets of shape (n, n_outputs)); labels are the int64 class labels used for
    accuracy, or None where accuracy does not apply. Targets that do not fit `loss` raise
    an error that names the loss they do fit (infer_loss's rule), where there is one.
    """
    try:
        return _check_targets(y, loss, n_outputs, n_samples, dtype, name)
    except (TypeError, ValueError) as exc:
        try:
            fits, reason = infer_loss(y, n_outputs, name)
            same_rows = np.shape(y)[:1] == (n_samples,)
        except (TypeError, ValueError):
            raise exc from None
        if fits == loss or not same_rows:
            raise
        raise type(exc)(f"{exc} ({name} holds {reason}, as for loss={fits!r}: pass "
                        f"loss={fits!r} if that is what you mean)") from None


def _check_targets(y, loss, n_outputs, n_samples, dtype, name):
    arr = _as_numeric_array(y, name)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D; got an array of shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"X and {name} must have the same number of samples; got {n_samples} in X "
            f"and {arr.shape[0]} in {name}"
        )
    check_finite(arr, name, dtype)

    if loss == "kl_divergence":
        if arr.ndim != 2 or arr.shape[1] != n_outputs:
            raise ValueError(
                f"{name} must hold probability targets of shape ({n_samples}, {n_outputs}) for "
                f"loss='kl_divergence'; got shape {arr.shape} (for class labels use "
                "loss='cross_entropy')")
        if arr.min() < 0:
            raise ValueError(f"{name} as probability targets must be >= 0; got {arr.min():g}")
        sums = arr.sum(axis=1, dtype=np.float64)
        if np.abs(sums - 1).max() > 1e-3:
            row = int(np.argmax(np.abs(sums - 1)))
            raise ValueError(f"{name} rows must be probability distributions summing to 1 for "
                             f"loss='kl_divergence'; row {row} sums to {sums[row]:g}")
        T = np.ascontiguousarray(arr, dtype=dtype)
        return T, T.argmax(axis=1).astype(np.int64)

    if loss == "cross_entropy":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 1:
            if arr.dtype.kind == "f":
                if not np.all(arr == np.round(arr)):
                    bad = arr[arr != np.round(arr)][0]
                    raise ValueError(
                        f"{name} must hold integer class labels 0..{n_outputs - 1} for "
                        f"loss='cross_entropy'; got the non-integer value {float(bad)!r}"
                    )
            elif arr.dtype.kind == "b":
                raise TypeError(
                    f"{name} must hold integer class labels 0..{n_outputs - 1}; got booleans "
                    "(use loss='binary_cross_entropy' with one output for yes/no targets)"
                )
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi > n_outputs - 1:
                raise ValueError(
                    f"{name} must hold class labels in 0..{n_outputs - 1} (the model has "
                    f"{n_outputs} outputs); got labels from {lo:g} to {hi:g}"
                )
            labels = arr.astype(np.int64)
            return labels, labels
        if arr.shape[1] != n_outputs:
            raise ValueError(
                f"{name} as one-hot or probability targets must have {n_outputs} columns "
                f"(the model's outputs); got shape {arr.shape}"
            )
        if arr.min() < 0:
            raise ValueError(f"{name} as probability targets must be >= 0; got {arr.min():g}")
        T = np.ascontiguousarray(arr, dtype=dtype)
        return T, T.argmax(axis=1).astype(np.int64)

    if arr.ndim == 1:
        if n_outputs != 1:
            raise ValueError(
                f"{name} must have shape ({n_samples}, {n_outputs}) for a model with "
                f"{n_outputs} outputs; got shape {arr.shape}"
            )
        arr = arr.reshape(-1, 1)
    if arr.shape[1] != n_outputs:
        raise ValueError(
            f"{name} must have {n_outputs} columns (the model's outputs); got shape {arr.shape}"
        )
    if loss == "poisson" and arr.min() < 0:
        raise ValueError(f"{name} must hold counts or rates >= 0 for loss='poisson'; got {arr.min():g}")
    if loss == "binary_cross_entropy":
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must hold 0/1 labels (or probabilities in [0, 1]) for "
                f"loss='binary_cross_entropy'; got values from {lo:g} to {hi:g}"
            )
        T = np.ascontiguousarray(arr, dtype=dtype)
        labels = (T[:, 0] > 0.5).astype(np.int64) if n_outputs == 1 else None
        return T, labels
    return np.ascontiguousarray(arr, dtype=dtype), None


def check_inputs(X, widths, names, name="X", dtype=None):
    """The input arrays of a model with inputs of `widths` named `names`: one array (one
    input), or a list / tuple in input order, or a dict {input name: array}. Each is checked
    as by check_X; all must have the same number of samples. Returns a tuple of arrays."""
    from .sparse import issparse

    n = len(widths)
    if isinstance(X, dict) and not issparse(X):  # SciPy's DOK format is a dict too
        keys = set(X)
        if keys != set(names):
            missing = [k for k in names if k not in keys]
            extra = sorted(map(repr, keys - set(names)))
            raise ValueError(
                f"{name} as a dict must be keyed by the model's input names {list(names)}"
                + (f"; missing {missing}" if missing else "") + (f"; unknown {', '.join(extra)}" if extra else "")
            )
        arrays = [X[k] for k in names]
    elif n == 1:
        one_array_list = (isinstance(X, (list, tuple)) and len(X) == 1 and isinstance(X[0], np.ndarray)
                          and X[0].ndim >= 2)
        arrays = [X[0] if one_array_list else X]
    else:
        if not isinstance(X, (list, tuple)):
            raise TypeError(
                f"{name} must be a list of {n} arrays (one per input: {', '.join(names)}) or a dict "
                f"keyed by input name, for this model with {n} inputs; got {type(X).__name__}"
            )
        if len(X) != n:
            raise ValueError(
                f"{name} must hold {n} arrays, one per input ({', '.join(names)}); got {len(X)}"
            )
        arrays = list(X)
    out = []
    for arr, width, input_name in zip(arrays, widths, names):
        label = name if n == 1 else f"{name}[{input_name!r}]"
        out.append(check_X(arr, width, label, dtype))
    lengths = {a.shape[0] for a in out}
    if len(lengths) > 1:
        raise ValueError(
            f"the arrays of {name} must have the same number of samples; got "
            + ", ".join(f"{a.shape[0]} for {nm!r}" for a, nm in zip(out, names))
        )
    return tuple(out)


def check_sample_weights(sample_weight, class_weight, labels, n, n_outputs, dtype):
    """Per-sample loss weights from sample_weight (n,) and class_weight {class: weight}
    (they multiply), or None."""
    w = None
    if sample_weight is not None:
        w = _as_numeric_array(sample_weight, "sample_weight")
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), one weight per sample; got {w.shape}")
        check_finite(w, "sample_weight", dtype)
        if (w < 0).any():
            raise ValueError(f"sample_weight must be >= 0; got {w.min():g}")
        w = w.astype(dtype)
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{class: weight}}; got {type(class_weight).__name__}")
        if labels is None:
            raise ValueError("class_weight needs a classification loss with class labels")
        n_classes = 2 if n_outputs == 1 else n_outputs
        table = np.ones(n_classes, dtype)
        for key, value in class_weight.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral) \
                    or not 0 <= key < n_classes:
                raise ValueError(f"class_weight keys must be class labels 0..{n_classes - 1}; got {key!r}")
            table[key] = check_float(value, f"class_weight[{key}]", low=0)
        cw = table[labels]
        w = cw if w is None else w * cw
    return w


def check_verbose(verbose):
    """verbose: 0 (silent), 1 or 2, as fit, evaluate and Keras take it."""
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
    return int(verbose)


def check_fit_options(epochs, batch_size, validation_split, shuffle, verbose, callbacks,
                      on_divergence):
    """fit's scalar arguments, checked; returns them normalised."""
    from .callbacks import Callback

    epochs = check_int(epochs, "epochs")
    on_divergence = check_choice(on_divergence, "on_divergence", ("raise", "warn"))
    batch_size = check_int(batch_size, "batch_size")
    validation_split = check_float(validation_split, "validation_split", 0, 1, high_open=True)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
    check_verbose(verbose)
    callbacks = list(callbacks or [])
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}] must be a fastmlp Callback; got {cb!r}")
    return epochs, batch_size, validation_split, callbacks, on_divergence
