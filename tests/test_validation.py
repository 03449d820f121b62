"""Bad input fails early with a clear error naming the argument; odd but valid input works.

Every bad value must raise a ``ValueError`` or ``TypeError`` (``RuntimeError`` for the absent
CUDA backend) whose message names the offending argument, before any kernel runs (bad model
files: test_save_load.py). Odd but valid input (lists, uint8 pixels,
Fortran-ordered or strided arrays, images, float labels, one-hot targets...) must give the
same result as the plain C-contiguous float32 / int64 equivalent.
"""

import numpy as np
import pytest

import fastmlp
from helpers import assert_same_weights, blobs, mlp

N, D, K = 40, 4, 3


def _data(n=N, d=D, k=K, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.arange(n) % k).astype(np.int64)
    return X, y


# ---------------------------------------------------------------------------------------
# NaN / inf in X, for every entry point that takes X


def _with(X, value, where=(3, 1)):
    X = X.copy()
    X[where] = value
    return X


_ENTRY_POINTS = {
    "fit": lambda m, X, y: m.fit(X, y, epochs=1, verbose=0),
    "train_step": lambda m, X, y: m.train_step(X, y),
    "predict": lambda m, X, y: m.predict(X),
    "predict_proba": lambda m, X, y: m.predict_proba(X),
    "evaluate": lambda m, X, y: m.evaluate(X, y),
}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_non_finite_X_rejected(entry, value):
    X, y = _data()
    model = mlp()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"\bX\b.*finite"):
        _ENTRY_POINTS[entry](model, _with(X, value), y)
    # nothing was trained on the bad batch
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_X_overflowing_float32_model_rejected(entry):
    """1e39 is finite in float64 but inf once cast to a float32 model's dtype."""
    X, y = _data()
    X = X.astype(np.float64)
    X[2, 0] = 1e39
    model = mlp()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"\bX\b"):
        _ENTRY_POINTS[entry](model, X, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
def test_y_overflowing_float32_model_rejected(entry):
    X, _ = _data()
    t = np.zeros(N)
    t[0] = 1e39
    with pytest.raises(ValueError, match=r"\by\b"):
        _ENTRY_POINTS[entry](mlp(sizes=(D, 8, 1), loss="mse"), X, t)


def test_non_finite_validation_X_rejected():
    X, y = _data()
    with pytest.raises(ValueError, match=r"validation_data X.*finite"):
        mlp().fit(X, y, validation_data=(_with(X, np.nan), y), verbose=0)


@pytest.mark.parametrize("loss,k", [("cross_entropy", K), ("mse", 1), ("binary_cross_entropy", 1)])
@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
def test_nan_in_y_rejected(entry, loss, k):
    X, y = _data()
    y = (y % 2).astype(np.float64) if k == 1 else y.astype(np.float64)
    y[5] = np.nan
    model = mlp(sizes=(D, 8, k), loss=loss)
    with pytest.raises(ValueError, match=r"\by\b.*finite"):
        _ENTRY_POINTS[entry](model, X, y)


def test_inf_in_y_rejected_for_mse():
    X, _ = _data()
    y = np.zeros(N)
    y[0] = np.inf
    with pytest.raises(ValueError, match=r"\by\b.*finite"):
        mlp(sizes=(D, 8, 1), loss="mse").fit(X, y, verbose=0)


# ---------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
@pytest.mark.parametrize("n_features", [D - 1, D + 1])
def test_wrong_feature_count(entry, n_features):
    X, y = _data(d=n_features)
    with pytest.raises(ValueError, match=rf"\bX\b must have {D} features"):
        _ENTRY_POINTS[entry](mlp(), X, y)


@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
@pytest.mark.parametrize("n_y", [N - 1, N + 1])
def test_X_y_length_mismatch(entry, n_y):
    X, _ = _data()
    y = np.arange(n_y) % K
    with pytest.raises(ValueError, match=r"same number of samples.*\by\b"):
        _ENTRY_POINTS[entry](mlp(), X, y)


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_empty_X(entry):
    X = np.empty((0, D), np.float32)
    y = np.empty(0, np.int64)
    with pytest.raises(ValueError, match=r"\bX\b is empty"):
        _ENTRY_POINTS[entry](mlp(), X, y)


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_1d_X(entry):
    X, y = _data()
    with pytest.raises(ValueError, match=r"\bX\b must be 2-D"):
        _ENTRY_POINTS[entry](mlp(), X[:, 0], y)


def test_scalar_X():
    with pytest.raises(ValueError, match=r"\bX\b must be 2-D"):
        mlp().predict(3.0)


def test_ragged_X():
    with pytest.raises(ValueError, match=r"\bX\b"):
        mlp().predict([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]])


@pytest.mark.parametrize("shape", [(N, 2, 2), (N, K, 1)], ids=["3d", "3d-col"])
def test_y_with_too_many_dims(shape):
    X, _ = _data()
    with pytest.raises(ValueError, match=r"\by\b must be 1-D or 2-D"):
        mlp().fit(X, np.zeros(shape), verbose=0)


def test_one_hot_with_wrong_column_count():
    X, y = _data()
    with pytest.raises(ValueError, match=r"\by\b.*columns"):
        mlp().fit(X, np.eye(K + 1)[y], verbose=0)


def test_regression_y_with_wrong_column_count():
    X, _ = _data()
    with pytest.raises(ValueError, match=r"\by\b.*shape"):
        mlp(sizes=(D, 8, 2), loss="mse").fit(X, np.zeros(N), verbose=0)


# ---------------------------------------------------------------------------------------
# labels


@pytest.mark.parametrize("bad", [-1, K, 100], ids=["neg", "K", "100"])
@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
def test_labels_out_of_range(entry, bad):
    X, y = _data()
    y = y.copy()
    y[7] = bad
    with pytest.raises(ValueError, match=r"\by\b must hold class labels in 0\.\.2"):
        _ENTRY_POINTS[entry](mlp(), X, y)


@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
def test_non_integer_labels(entry):
    X, y = _data()
    y = y.astype(np.float64)
    y[3] = 1.5
    with pytest.raises(ValueError, match=r"\by\b must hold integer class labels.*1\.5"):
        _ENTRY_POINTS[entry](mlp(), X, y)


def test_boolean_labels_for_cross_entropy():
    X, y = _data()
    with pytest.raises(TypeError, match=r"\by\b.*boolean"):
        mlp().fit(X, y > 0, verbose=0)


@pytest.mark.parametrize("bad", [-0.5, 2.0])
def test_binary_labels_outside_0_1(bad):
    X, y = _data()
    y = (y % 2).astype(np.float64)
    y[0] = bad
    with pytest.raises(ValueError, match=r"\by\b must hold 0/1 labels"):
        mlp(sizes=(D, 8, 1), loss="binary_cross_entropy").fit(X, y, verbose=0)


def test_negative_probability_targets():
    X, y = _data()
    T = np.eye(K)[y]
    T[0] = [-0.5, 1.0, 0.5]
    with pytest.raises(ValueError, match=r"\by\b.*>= 0"):
        mlp().fit(X, T, verbose=0)


# ---------------------------------------------------------------------------------------
# non-numeric X or y


def _bad_kind(kind, shape):
    n = int(np.prod(shape))
    if kind == "str":
        return np.array([str(i % K) for i in range(n)]).reshape(shape)
    if kind == "bytes":
        return np.array([b"1"] * n).reshape(shape)
    if kind == "object":
        arr = np.empty(shape, dtype=object)
        arr.reshape(-1)[:] = [float(i % K) for i in range(n)]
        return arr
    if kind == "complex":
        return (np.arange(n) % K + 0j).reshape(shape)
    if kind == "none":
        return None
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["str", "bytes", "object", "complex", "none"])
@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_non_numeric_X(entry, kind):
    _, y = _data()
    with pytest.raises(TypeError, match=r"\bX\b must"):
        _ENTRY_POINTS[entry](mlp(), _bad_kind(kind, (N, D)), y)


def test_string_as_X():
    with pytest.raises(TypeError, match=r"\bX\b must be a numeric array"):
        mlp().predict("1,2,3,4")


@pytest.mark.parametrize("kind", ["str", "bytes", "object", "complex", "none"])
@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
def test_non_numeric_y(entry, kind):
    X, _ = _data()
    with pytest.raises(TypeError, match=r"\by\b must"):
        _ENTRY_POINTS[entry](mlp(), X, _bad_kind(kind, (N,)))


def test_string_labels_list():
    X, _ = _data()
    with pytest.raises(TypeError, match=r"\by\b must"):
        mlp().fit(X, ["cat", "dog"] * (N // 2), verbose=0)


# ---------------------------------------------------------------------------------------
# fit / predict / evaluate arguments


_BAD_POSITIVE_INTS = [
    (0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError),
    (False, TypeError), ("3", TypeError), (None, TypeError), (np.float64(4.0), TypeError),
]
_BAD_IDS = ["0", "-1", "2.5", "True", "False", "str", "None", "np.float64"]


@pytest.mark.parametrize("value,exc", _BAD_POSITIVE_INTS, ids=_BAD_IDS)
@pytest.mark.parametrize("arg", ["epochs", "batch_size"])
def test_fit_bad_epochs_and_batch_size(arg, value, exc):
    X, y = _data()
    model = mlp()
    before = model.get_weights()
    with pytest.raises(exc, match=rf"\b{arg}\b"):
        model.fit(X, y, verbose=0, **{arg: value})
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value,exc", _BAD_POSITIVE_INTS, ids=_BAD_IDS)
@pytest.mark.parametrize("entry", ["predict", "predict_proba", "evaluate"])
def test_inference_bad_batch_size(entry, value, exc):
    X, y = _data()
    model = mlp()
    with pytest.raises(exc, match=r"\bbatch_size\b"):
        if entry == "evaluate":
            model.evaluate(X, y, batch_size=value)
        else:
            getattr(model, entry)(X, batch_size=value)


def _bad_fit(arg, values, exc, match=None, ids=None):
    """Cases of test_fit_rejects_a_bad_argument: fit(X, y, arg=value) raises exc whose message
    matches match (by default: names arg)."""
    ids = ids or [repr(v) for v in values]
    return [pytest.param({arg: v}, exc, match or rf"\b{arg}\b", id=f"{arg}={i}")
            for v, i in zip(values, ids)]


_X, _Y = _data()
_BAD_FIT_ARGUMENTS = [
    *_bad_fit("verbose", [3, -1, True, "1", None, 0.5], (ValueError, TypeError)),
    *_bad_fit("validation_split", [-0.1, 1.0, 1.5, np.nan], ValueError),
    *_bad_fit("validation_split", [0.001], ValueError, ids=["0.001-leaves-no-sample"]),
    *_bad_fit("validation_split", ["0.1", True], TypeError),
    pytest.param({"validation_split": 0.2, "validation_data": (_X, _Y)}, ValueError,
                 r"validation_data.*validation_split|validation_split.*validation_data",
                 id="validation_split-and-validation_data"),
    *_bad_fit("validation_data", [(np.zeros((4, D)),), "xy", (1, 2, 3)], TypeError,
              ids=["1-tuple", "str", "3-tuple"]),
    *_bad_fit("validation_data", [_data(d=D + 2)], ValueError,
              r"validation_data X must have 4 features", ids=["wrong-features"]),
    *_bad_fit("validation_data", [(_X, _Y + 5)], ValueError,
              r"validation_data y must hold class labels", ids=["bad-labels"]),
    *_bad_fit("shuffle", ["yes", 1, None], TypeError),
    *_bad_fit("callbacks", [[lambda *a: None], ["history"]], TypeError, r"callbacks\[0\]",
              ids=["lambda", "str"]),
]


@pytest.mark.parametrize("kwargs,exc,match", _BAD_FIT_ARGUMENTS)
def test_fit_rejects_a_bad_argument(kwargs, exc, match):
    """verbose, validation_split, validation_data, shuffle, callbacks: each bad value raises
    an error naming the argument."""
    with pytest.raises(exc, match=match):
        mlp().fit(_X, _Y, **{"verbose": 0, **kwargs})


# ---------------------------------------------------------------------------------------
# model construction


@pytest.mark.parametrize("activation,exc", [
    # case and blanks do not matter ("ReLU " is relu) and None is identity, as in Keras:
    # test_layers.py::test_activation_names_ignore_case_and_take_keras_aliases
    ("foo", ValueError), ("Re LU", ValueError), ("softmax", ValueError), ("gelu!", ValueError),
    (b"relu", TypeError), (3, TypeError),
])
def test_unknown_activation(activation, exc):
    with pytest.raises(exc, match=r"\bactivation\b"):
        fastmlp.MLP([D, 8, K], activation=activation, device="cpu")


def test_unknown_activation_in_list():
    with pytest.raises(ValueError, match=r"activation\[1\]"):
        fastmlp.MLP([D, 8, 8, K], activation=["relu", "nope"], device="cpu")


def test_activation_list_of_wrong_length():
    with pytest.raises(ValueError, match=r"\bactivation\b.*2 names"):
        fastmlp.MLP([D, 8, 8, K], activation=["relu"], device="cpu")


def test_unknown_output_activation():
    with pytest.raises(ValueError, match=r"\boutput\b"):
        fastmlp.MLP([D, 8, K], output="swish", device="cpu")
    # softmax is fused into cross_entropy (issue 15), but refused with any other loss
    with pytest.raises(ValueError, match=r"softmax.*cross_entropy"):
        fastmlp.MLP([D, 8, K], output="softmax", loss="mse", device="cpu")


def test_unknown_dense_activation():
    with pytest.raises(ValueError, match=r"\bactivation\b"):
        fastmlp.Dense(D, 8, "swish!")


@pytest.mark.parametrize("loss,exc", [
    ("crossentropy", ValueError), ("mae", ValueError), ("CE", ValueError), ("", ValueError),
    (3, TypeError), (len, TypeError),  # None is no error: the targets choose (test_loss_rule)
])
def test_unknown_loss(loss, exc):
    with pytest.raises(exc, match=r"\bloss\b"):
        fastmlp.MLP([D, 8, K], loss=loss, device="cpu")


@pytest.mark.parametrize("device,exc", [
    ("tpu", ValueError), ("gpu", ValueError), ("", ValueError), ("cpu0", ValueError),
    (0, TypeError), (None, TypeError),
])
def test_unknown_device(device, exc):
    with pytest.raises(exc, match=r"\bdevice\b"):
        fastmlp.MLP([D, 8, K], device=device)


@pytest.mark.parametrize("device", ["cuda", "CUDA"])
def test_cuda_device_not_available(device):
    with pytest.raises(RuntimeError, match=r"(?i)cuda"):
        fastmlp.MLP([D, 8, K], device=device)


def test_cuda_backend_not_available_from_kernels():
    with pytest.raises(RuntimeError, match=r"cuda"):
        fastmlp.kernels.backend("cuda")


def test_load_on_cuda_not_available(tmp_path):
    path = tmp_path / "m.npz"
    mlp().save(path)
    with pytest.raises(RuntimeError, match=r"cuda"):
        fastmlp.load(path, device="cuda")


@pytest.mark.parametrize("dtype", ["float16", "int32", "foo", "bfloat16", "complex64", np.int64, "float128"])
def test_unknown_dtype(dtype):
    with pytest.raises(ValueError, match=r"\bdtype\b"):
        fastmlp.MLP([D, 8, K], dtype=dtype, device="cpu")


@pytest.mark.parametrize("sizes,exc", [
    ([D, 0, K], ValueError), ([D, -3, K], ValueError), ([D, 2.5, K], TypeError),
    ([D, "10", K], TypeError), ([0, 8, K], ValueError), ([D, 8, True], TypeError),
    ([D, None, K], TypeError),
], ids=["0", "-3", "2.5", "str", "0-inputs", "bool", "None"])
def test_bad_layer_sizes(sizes, exc):
    with pytest.raises(exc, match=r"\bsizes\["):
        fastmlp.MLP(sizes, device="cpu")


@pytest.mark.parametrize("sizes", [[], [D], (10,)], ids=["empty", "one", "tuple-one"])
def test_too_few_sizes(sizes):
    with pytest.raises(ValueError, match=r"\bsizes\b.*at least 2"):
        fastmlp.MLP(sizes, device="cpu")


@pytest.mark.parametrize("sizes", ["10", 10, None], ids=["str", "int", "None"])
def test_sizes_not_a_list(sizes):
    with pytest.raises(TypeError, match=r"\bsizes\b"):
        fastmlp.MLP(sizes, device="cpu")


@pytest.mark.parametrize("args,name", [
    ((0, 3), "in_features"), ((3, -1), "out_features"), ((2.5, 3), "in_features"),
    (("4", 3), "in_features"),
])
def test_bad_dense_sizes(args, name):
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        fastmlp.Dense(*args)


def test_sequential_layers_that_do_not_chain():
    with pytest.raises(ValueError, match=r"layers\[1\]\.in_features"):
        fastmlp.Sequential([fastmlp.Dense(D, 8, "relu"), fastmlp.Dense(7, K)], device="cpu")


@pytest.mark.parametrize("layers", [[], fastmlp.Dense(D, K), "dense", None], ids=["empty", "bare", "str", "None"])
def test_sequential_bad_layers(layers):
    with pytest.raises(TypeError, match=r"\blayers\b"):
        fastmlp.Sequential(layers, device="cpu")


def test_sequential_non_dense_layer():
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        fastmlp.Sequential([fastmlp.Dense(D, 8), (8, K)], device="cpu")


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (1.5, TypeError), ("0", TypeError)])
def test_bad_seed(seed, exc):
    with pytest.raises(exc, match=r"\bseed\b"):
        fastmlp.MLP([D, 8, K], seed=seed, device="cpu")


@pytest.mark.parametrize("output", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss,k", [("cross_entropy", K), ("binary_cross_entropy", 1)])
def test_classification_needs_identity_output(loss, k, output):
    if loss == "binary_cross_entropy" and output == "sigmoid":
        pytest.skip("a sigmoid output is fused into binary_cross_entropy (tests/test_graph.py)")
    with pytest.raises(ValueError, match=r"last layer must have activation 'identity'.*\bloss\b"):
        fastmlp.MLP([D, 8, k], output=output, loss=loss, device="cpu")


def test_sequential_classification_needs_identity_output():
    with pytest.raises(ValueError, match=r"activation 'identity'"):
        fastmlp.Sequential([fastmlp.Dense(D, 8, "relu"), fastmlp.Dense(8, K, "relu")], device="cpu")


def test_cross_entropy_with_one_output():
    with pytest.raises(ValueError, match=r"cross_entropy.*2 outputs"):
        fastmlp.MLP([D, 8, 1], loss="cross_entropy", device="cpu")


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match=r"\boptimizer\b"):
        fastmlp.MLP([D, 8, K], optimizer="adadelta", device="cpu")


def test_optimizer_class_instead_of_instance():
    with pytest.raises((ValueError, TypeError), match=r"\boptimizer\b"):
        fastmlp.MLP([D, 8, K], optimizer=fastmlp.SGD, device="cpu")


# ---------------------------------------------------------------------------------------
# optimizer hyper-parameters


_BAD_OPTIMIZERS = [
    ("SGD", dict(lr=0), "lr", ValueError),
    ("SGD", dict(lr=-0.1), "lr", ValueError),
    ("SGD", dict(lr=np.nan), "lr", ValueError),
    ("SGD", dict(lr=np.inf), "lr", ValueError),
    ("SGD", dict(lr="0.1"), "lr", TypeError),
    ("SGD", dict(lr=None), "lr", TypeError),
    ("SGD", dict(momentum=1.5), "momentum", ValueError),
    ("SGD", dict(momentum=-0.1), "momentum", ValueError),
    ("SGD", dict(nesterov=True), "nesterov", ValueError),
    ("SGD", dict(momentum=0.9, nesterov="yes"), "nesterov", TypeError),
    ("SGD", dict(weight_decay=-1e-4), "weight_decay", ValueError),
    ("Adam", dict(lr=0), "lr", ValueError),
    ("Adam", dict(lr=-1e-3), "lr", ValueError),
    ("Adam", dict(beta1=1.0), "beta1", ValueError),
    ("Adam", dict(beta1=-0.1), "beta1", ValueError),
    ("Adam", dict(beta2=1.0), "beta2", ValueError),
    ("Adam", dict(beta2=1.1), "beta2", ValueError),
    ("Adam", dict(eps=0), "eps", ValueError),
    ("Adam", dict(eps=-1e-8), "eps", ValueError),
    ("Adam", dict(weight_decay=-0.01), "weight_decay", ValueError),
    ("Adam", dict(decoupled="no"), "decoupled", TypeError),
    ("AdamW", dict(lr=0), "lr", ValueError),
    ("AdamW", dict(weight_decay=-0.01), "weight_decay", ValueError),
]


@pytest.mark.parametrize("cls,kwargs,name,exc", _BAD_OPTIMIZERS,
                         ids=[f"{c}({', '.join(f'{k}={v!r}' for k, v in kw.items())})" for c, kw, _, _ in _BAD_OPTIMIZERS])
def test_bad_optimizer_hyper_parameters(cls, kwargs, name, exc):
    with pytest.raises(exc, match=rf"\b{name}\b"):
        getattr(fastmlp, cls)(**kwargs)


# ---------------------------------------------------------------------------------------
# set_weights


def _good_weights(model):
    return model.get_weights()


@pytest.mark.parametrize("case", [
    "W1-transposed", "W2-transposed", "b1-too-long", "b2-2d", "W1-1d", "extra-layer-shape",
])
def test_set_weights_wrong_shape(case):
    model = mlp()
    w = _good_weights(model)
    if case == "W1-transposed":
        w[0] = w[0].T
        bad = r"weights\[0\] \(W1\) must have shape \(8, 4\)"
    elif case == "W2-transposed":
        w[2] = w[2].T
        bad = r"weights\[2\] \(W2\) must have shape \(3, 8\)"
    elif case == "b1-too-long":
        w[1] = np.zeros(9)
        bad = r"weights\[1\] \(b1\) must have shape"
    elif case == "b2-2d":
        w[3] = w[3].reshape(1, -1)
        bad = r"weights\[3\] \(b2\) must have shape"
    elif case == "W1-1d":
        w[0] = w[0].ravel()
        bad = r"weights\[0\] \(W1\) must have shape"
    else:
        w[2] = np.zeros((3, 9))
        bad = r"weights\[2\] \(W2\) must have shape"
    before = model.get_weights()
    with pytest.raises(ValueError, match=bad):
        model.set_weights(w)
    for a, b in zip(before, model.get_weights()):  # all or nothing
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("count", [0, 2, 3, 5, 6])
def test_set_weights_wrong_count(count):
    model = mlp()
    w = _good_weights(model)
    w = (w * 2)[:count]
    with pytest.raises(ValueError, match=r"\bweights\b must hold 4 arrays"):
        model.set_weights(w)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_set_weights_non_finite(index, value):
    model = mlp()
    w = _good_weights(model)
    w[index] = w[index].copy()
    w[index].reshape(-1)[0] = value
    before = model.get_weights()
    with pytest.raises(ValueError, match=rf"weights\[{index}\].*finite"):
        model.set_weights(w)
    for a, b in zip(before, model.get_weights()):  # all or nothing
        np.testing.assert_array_equal(a, b)


def test_set_weights_overflowing_float32_rejected():
    model = mlp()
    w = [a.astype(np.float64) for a in _good_weights(model)]
    w[2][0, 0] = 1e39  # finite in float64, inf in the float32 model
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"weights\[2\]"):
        model.set_weights(w)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("weights", [None, "W", {"W1": 1}, np.zeros(4)], ids=["None", "str", "dict", "array"])
def test_set_weights_not_a_list(weights):
    with pytest.raises(TypeError, match=r"\bweights\b"):
        mlp().set_weights(weights)


def test_set_weights_non_numeric():
    model = mlp()
    w = _good_weights(model)
    w[1] = np.array(["0"] * 8)
    with pytest.raises(TypeError, match=r"weights\[1\]"):
        model.set_weights(w)


# =======================================================================================
# odd but valid input just works (and gives the plain-array result)


def _blobs(n=48, d=D):
    return blobs(n, d, K, seed=1, shuffle=False)


def _fit_weights(X, y, sizes=(D, 8, K), loss="cross_entropy", optimizer=None, dtype="float32", **fit_kw):
    model = mlp(sizes=sizes, loss=loss, optimizer=optimizer, dtype=dtype)
    fit_kw.setdefault("epochs", 2)
    fit_kw.setdefault("batch_size", 8)
    history = model.fit(X, y, verbose=0, **fit_kw)
    return model, model.get_weights(), history.history


def _assert_same_training(X_odd, y_odd, X_ref, y_ref, **kw):
    m1, w1, h1 = _fit_weights(X_ref, y_ref, **kw)
    m2, w2, h2 = _fit_weights(X_odd, y_odd, **kw)
    assert_same_weights(w1, w2)
    assert h1 == h2
    return m1, m2


def test_python_lists():
    X, y = _blobs()
    m1, m2 = _assert_same_training(X.tolist(), y.tolist(), X, y)
    np.testing.assert_array_equal(m2.predict(X[:5].tolist()), m1.predict(X[:5]))
    np.testing.assert_array_equal(m2.predict_proba(X[:5].tolist()), m1.predict_proba(X[:5]))
    assert m2.evaluate(X.tolist(), y.tolist()) == m1.evaluate(X, y)
    assert m1.train_step(X[:8].tolist(), y[:8].tolist()) == m2.train_step(X[:8], y[:8])


def test_tuple_inputs():
    X, y = _blobs()
    _assert_same_training(tuple(map(tuple, X.tolist())), tuple(y.tolist()), X, y)


def test_uint8_images_same_as_float32_copy():
    rng = np.random.default_rng(3)
    X8 = rng.integers(0, 256, (48, 16), dtype=np.uint8)
    y = np.arange(48) % K
    Xf = X8.astype(np.float32)
    kw = dict(sizes=(16, 8, K), optimizer=fastmlp.Adam(lr=1e-3))
    m_ref, m_u8 = _assert_same_training(X8, y, Xf, y, **kw)
    np.testing.assert_array_equal(m_u8.predict_proba(X8), m_ref.predict_proba(Xf))
    assert m_u8.evaluate(X8, y) == m_ref.evaluate(Xf, y)


def test_uint8_train_step_same_as_float32():
    rng = np.random.default_rng(4)
    X8 = rng.integers(0, 256, (16, D), dtype=np.uint8)
    y = np.arange(16) % K
    a, b = mlp(optimizer=fastmlp.Adam(lr=1e-3)), mlp(optimizer=fastmlp.Adam(lr=1e-3))
    assert a.train_step(X8, y) == b.train_step(X8.astype(np.float32), y)
    assert_same_weights(a.get_weights(), b.get_weights())


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.uint64, np.float16, np.float64, np.longdouble, np.bool_])
def test_other_numeric_X_dtypes(dtype):
    X, y = _blobs()
    if dtype is np.bool_:
        X_odd = X > 0
    elif np.issubdtype(dtype, np.unsignedinteger):
        X_odd = np.abs(np.round(X)).astype(dtype)
    elif np.issubdtype(dtype, np.integer):
        X_odd = np.round(X).astype(dtype)
    else:
        X_odd = X.astype(dtype)
    X_ref = X_odd.astype(np.float32)
    _assert_same_training(X_odd, y, X_ref, y)


def test_fortran_ordered_X():
    X, y = _blobs()
    XF = np.asfortranarray(X)
    assert not XF.flags.c_contiguous
    m1, m2 = _assert_same_training(XF, y, X, y)
    np.testing.assert_array_equal(m2.predict_proba(XF), m1.predict_proba(X))


def test_strided_X():
    X, y = _blobs(d=2 * D)
    X_strided = X[:, ::2]
    assert not X_strided.flags.c_contiguous
    m1, m2 = _assert_same_training(X_strided, y, X_strided.copy(), y)
    np.testing.assert_array_equal(m2.predict(X_strided), m1.predict(X_strided.copy()))
    assert m2.evaluate(X_strided, y) == m1.evaluate(X_strided.copy(), y)


def test_row_strided_X_and_y():
    X, y = _blobs(n=96)
    _assert_same_training(X[::2], y[::2], X[::2].copy(), y[::2].copy())


def test_3d_images_are_flattened():
    rng = np.random.default_rng(5)
    X3 = rng.random((48, 8, 8), dtype=np.float32)
    y = np.arange(48) % K
    m1, m2 = _assert_same_training(X3, y, X3.reshape(48, 64), y, sizes=(64, 8, K))
    np.testing.assert_array_equal(m2.predict_proba(X3[:7]), m1.predict_proba(X3[:7].reshape(7, 64)))
    assert m2.evaluate(X3, y) == m1.evaluate(X3.reshape(48, 64), y)


def test_4d_images_with_channels_are_flattened():
    rng = np.random.default_rng(6)
    X4 = rng.random((12, 4, 4, 3), dtype=np.float32)
    model = mlp(sizes=(48, 8, K))
    np.testing.assert_array_equal(model.predict_proba(X4), model.predict_proba(X4.reshape(12, 48)))


def test_3d_images_with_wrong_pixel_count():
    X3 = np.zeros((5, 7, 7), np.float32)
    with pytest.raises(ValueError, match=r"\bX\b must have 64 features"):
        mlp(sizes=(64, 8, K)).predict(X3)


@pytest.mark.parametrize("batch_size", [48, 49, 1000, 10**9])
def test_batch_size_larger_than_data(batch_size):
    X, y = _blobs()
    m1, w1, h1 = _fit_weights(X, y, batch_size=48)
    m2, w2, h2 = _fit_weights(X, y, batch_size=batch_size)
    assert_same_weights(w1, w2)
    assert h1 == h2
    np.testing.assert_array_equal(m2.predict(X, batch_size=batch_size), m1.predict(X))


def test_float_labels():
    X, y = _blobs()
    _assert_same_training(X, y.astype(np.float64), X, y)
    _assert_same_training(X, y.astype(np.float32), X, y)


def test_one_hot_labels():
    X, y = _blobs()
    m1, w1, h1 = _fit_weights(X, y)
    m2, w2, h2 = _fit_weights(X, np.eye(K)[y])
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5)
    assert h1["accuracy"] == h2["accuracy"]
    e1, e2 = m1.evaluate(X, y), m2.evaluate(X, np.eye(K)[y])
    assert e1["accuracy"] == e2["accuracy"]
    np.testing.assert_allclose(e1["loss"], e2["loss"], rtol=1e-5)


@pytest.mark.parametrize("one_hot_dtype", [np.int64, np.uint8, np.bool_])
def test_one_hot_integer_or_bool_dtype(one_hot_dtype):
    X, y = _blobs()
    _, w1, h1 = _fit_weights(X, np.eye(K)[y])
    _, w2, h2 = _fit_weights(X, np.eye(K, dtype=one_hot_dtype)[y])
    assert_same_weights(w1, w2)
    assert h1 == h2


def test_column_labels_for_cross_entropy():
    X, y = _blobs()
    m1, m2 = _assert_same_training(X, y.reshape(-1, 1), X, y)
    assert m2.evaluate(X, y.reshape(-1, 1)) == m1.evaluate(X, y)
    a, b = mlp(), mlp()
    assert a.train_step(X[:8], y[:8].reshape(-1, 1)) == b.train_step(X[:8], y[:8])


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.uint8, np.uint64])
def test_integer_label_dtypes(dtype):
    X, y = _blobs()
    _assert_same_training(X, y.astype(dtype), X, y)


def test_list_of_float_labels():
    X, y = _blobs()
    _assert_same_training(X, [float(v) for v in y], X, y)


def test_regression_1d_and_column_targets():
    X, _ = _blobs()
    t = X.sum(axis=1).astype(np.float64)
    kw = dict(sizes=(D, 8, 1), loss="mse", optimizer=fastmlp.SGD(lr=0.01))
    m1, w1, h1 = _fit_weights(X, t, **kw)
    m2, w2, h2 = _fit_weights(X, t.reshape(-1, 1), **kw)
    assert_same_weights(w1, w2)
    assert h1 == h2


def test_binary_labels_as_int_bool_and_column():
    X, y = _blobs()
    yb = (y == 0)
    kw = dict(sizes=(D, 8, 1), loss="binary_cross_entropy")
    _, w1, h1 = _fit_weights(X, yb.astype(np.float32), **kw)
    for odd in (yb.astype(np.int64), yb, yb.reshape(-1, 1), yb.astype(np.float64).tolist()):
        _, w2, h2 = _fit_weights(X, odd, **kw)
        assert_same_weights(w1, w2)
        assert h1 == h2


def test_float64_X_into_float32_model():
    X, y = _blobs()
    _assert_same_training(X.astype(np.float64), y, X, y)


def test_read_only_X():
    X, y = _blobs()
    Xr = X.copy()
    Xr.flags.writeable = False
    yr = y.copy()
    yr.flags.writeable = False
    m1, m2 = _assert_same_training(Xr, yr, X, y)
    np.testing.assert_array_equal(m2.predict(Xr), m1.predict(X))


def test_inputs_not_modified():
    X, y = _blobs()
    X0, y0 = X.copy(), y.copy()
    model = mlp()
    model.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    model.train_step(X[:8], y[:8])
    model.evaluate(X, y)
    model.predict_proba(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_single_sample():
    X, y = _blobs()
    model = mlp()
    assert model.predict(X[:1]).shape == (1,)
    loss = model.train_step(X[:1], y[:1])
    assert isinstance(loss, float) and np.isfinite(loss)
    history = model.fit(X[:1], y[:1], epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_set_weights_accepts_lists_and_other_dtypes():
    model = mlp()
    w = model.get_weights()
    model.set_weights([a.astype(np.float64).tolist() for a in w])
    assert_same_weights(model.get_weights(), w)
    model.set_weights(tuple(a.astype(np.float64) for a in w))
    assert_same_weights(model.get_weights(), w)
