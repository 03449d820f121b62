"""The public API's type hints (fastmlp ships py.typed): every public function and method
is annotated and its hints resolve; a type checker accepts ordinary user code
(tests/typing_usage.py) and rejects wrong calls; errors of a call name the public API,
never the private classes the models' shared methods live in."""

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import tempfile
import typing

import numpy as np
import pytest

import fastmlp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: the estimators' methods fastmlp defines (score comes from scikit-learn's mixins)
ESTIMATOR_METHODS = ("__init__", "fit", "predict", "predict_proba", "predict_log_proba",
                     "partial_fit")
#: fastmlp.distributed's functions for users (the rest are fit's hooks)
DISTRIBUTED = ("rank", "size", "is_main", "broadcast", "MPI")


def _function(attr):
    """The plain function behind a class attribute (method, static/class method, property,
    scikit-learn's available_if), or None."""
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if isinstance(attr, property):
        return attr.fget
    if not inspect.isfunction(attr) and inspect.isfunction(getattr(attr, "fn", None)):
        return attr.fn  # available_if's descriptor
    return attr if inspect.isfunction(attr) else None


def _class_members(cls, qual, only=None):
    """(name, function) of cls' __init__ and public methods and properties, inherited ones
    included, wherever fastmlp defines them (not object's, Exception's, scikit-learn's)."""
    names = ["__init__"] + sorted(n for n in dir(cls) if not n.startswith("_"))
    if only is not None:
        names = [n for n in names if n in only]
    for name in names:
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not owner.__module__.startswith("fastmlp"):
            continue
        fn = _function(vars(owner)[name])
        if fn is not None:
            yield f"{qual}.{name}", fn


def public_api():
    """{qualified name: function} of the public API (each function once, by its first
    name): fastmlp.__all__'s classes and functions, the data sets, the metrics, the users'
    part of fastmlp.distributed, and the scikit-learn estimators' methods."""
    out = []
    for name in fastmlp.__all__:
        obj = getattr(fastmlp, name)
        if inspect.isclass(obj):
            out += _class_members(obj, name)
        elif inspect.isfunction(obj):
            out.append((name, obj))
    for module, names in ((fastmlp.datasets, fastmlp.datasets.__all__),
                          (fastmlp.metrics, fastmlp.metrics.__all__),
                          (fastmlp.distributed, DISTRIBUTED)):
        for name in names:
            obj = getattr(module, name)
            qual = f"{module.__name__}.{name}"
            out += _class_members(obj, qual) if inspect.isclass(obj) else [(qual, obj)]
    if importlib.util.find_spec("sklearn") is not None:
        from fastmlp import sklearn as fsk

        for cls in (fsk.MLPClassifier, fsk.MLPRegressor):
            out += _class_members(cls, cls.__name__, ESTIMATOR_METHODS)
    unique = {}
    for qual, fn in out:
        unique.setdefault(fn, qual)
    return {qual: fn for fn, qual in unique.items()}


def test_the_walk_covers_the_api():
    api = public_api()
    for name in ("MLP.__init__", "MLP.fit", "MLP.evaluate", "MLP.predict", "MLP.save",
                 "MLP.compile", "MLP.to_onnx", "MLP.get_layer", "Model.__init__", "Dense.__init__",
                 "Adam.__init__", "EarlyStopping.__init__", "CosineDecay.lr", "load", "gradcheck",
                 "fit_lbfgs", "from_onnx", "from_torch", "from_sklearn", "Input",
                 "fastmlp.datasets.load_mnist", "fastmlp.metrics.confusion_matrix",
                 "MLPRegressor.__init__", "MLPClassifier.partial_fit"):
        assert name in api, name
    assert len(api) > 100


def test_every_public_signature_is_annotated_and_resolves():
    problems = []
    for qual, fn in public_api().items():
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # noqa: BLE001 - any failure to resolve is the finding
            problems.append(f"{qual}: hints do not resolve ({type(exc).__name__}: {exc})")
            continue
        for p in inspect.signature(fn).parameters.values():
            if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name not in hints:
                problems.append(f"{qual}: parameter {p.name!r} has no annotation")
        if "return" not in hints:
            problems.append(f"{qual}: no return annotation")
    assert not problems, "\n".join(problems)


def test_hints_do_not_change_signatures():
    # annotations only: the defaults and the order users (and scikit-learn's get_params) see
    sig = inspect.signature(fastmlp.MLP)
    assert list(sig.parameters)[:4] == ["sizes", "activation", "output", "loss"]
    assert sig.parameters["activation"].default == "relu"
    fit = inspect.signature(fastmlp.MLP.fit).parameters
    defaults = (fit["epochs"].default, fit["batch_size"].default, fit["shard"].default)
    assert defaults == (1, 32, "auto")


# ----------------------------------------------------------------------------------------
# a real type checker over user code

def _mypy(*paths):
    cache = os.path.join(tempfile.gettempdir(), "fastmlp-mypy-cache")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
         "--no-error-summary", "--cache-dir", cache, *paths],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


BAD_USAGE = """\
import numpy as np
import fastmlp as fm

X, y = np.zeros((4, 3)), np.zeros(4, np.int64)
model = fm.MLP([3, 2], device="gpu")
model.fit(X, y, epochs="ten")
history: int = model.fit(X, y)
x = fm.Input(3)
fm.Model(x, fm.Dense(2)(x)).evaluate(X, y, verbose="loud")
fm.load(42)
"""


def test_mypy_accepts_user_code_and_rejects_wrong_calls(tmp_path):
    pytest.importorskip("mypy", reason="mypy not installed (the test extra has it)")
    bad = tmp_path / "bad_usage.py"
    bad.write_text(BAD_USAGE)
    good = os.path.join("tests", "typing_usage.py")
    result = _mypy(good, str(bad))
    out = result.stdout + result.stderr
    good_errors = [line for line in out.splitlines() if "typing_usage.py" in line]
    assert not good_errors, out
    bad_lines = {int(m.group(1)) for m in re.finditer(r"bad_usage\.py:(\d+): error", out)}
    # device, epochs, the History assigned to an int, a graph Model's verbose, load's path
    assert bad_lines == {5, 6, 7, 9, 10}, out


# ----------------------------------------------------------------------------------------
# errors of a call name the public API

@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 4)), rng.integers(0, 3, 8)


@pytest.mark.parametrize("kind", ["mlp", "graph"])
def test_a_wrong_keyword_names_the_public_method(kind, data):
    X, y = data
    if kind == "mlp":
        model = fastmlp.MLP([4, 3], loss="cross_entropy", seed=0, device="cpu")
    else:
        x = fastmlp.Input(4)
        model = fastmlp.Model(x, fastmlp.Dense(3)(x), loss="cross_entropy", device="cpu")
    calls = {"fit": lambda: model.fit(X, y, lr=0.1),
             "evaluate": lambda: model.evaluate(X, y, lr=0.1),
             "predict": lambda: model.predict(X, lr=0.1),
             "train_step": lambda: model.train_step(X, y, lr=0.1),
             "summary": lambda: model.summary(1)}
    for name, call in calls.items():
        with pytest.raises(TypeError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"model.{name}()"), message
        assert not re.search(r"\b_[A-Z]\w*\.", message), message


def test_shared_methods_have_public_qualnames():
    for name in ("fit", "train_step", "evaluate", "predict", "predict_proba", "compile",
                 "get_weights", "set_weights", "save", "summary", "profile",
                 "compute_gradients", "freeze", "unfreeze", "to_onnx", "to_torch"):
        qualname = getattr(fastmlp.MLP, name).__qualname__
        assert not qualname.startswith("_"), (name, qualname)


def test_an_estimator_wrong_keyword_names_the_estimator(data):
    pytest.importorskip("sklearn")
    X, y = data
    with pytest.raises(TypeError, match=r"^estimator\.fit\(\) got an unexpected keyword"):
        fastmlp.MLPClassifier(max_iter=1).fit(X, y, lr=0.1)
