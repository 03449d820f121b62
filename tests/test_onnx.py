"""ONNX export (model.to_onnx, est.to_onnx) checked against onnxruntime, and import
(fastmlp.from_onnx) round trips and refusals."""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fastmlp as fm  # noqa: E402
from fastmlp import onnx_io  # noqa: E402

BATCHES = (1, 7, 1000)


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: X})[0]


def _data(n, d, seed=0, scale=2.0, dtype=np.float32):
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale).astype(dtype)


def _exported(model, tmp_path, **kwargs):
    path = tmp_path / "model.onnx"
    proto = model.to_onnx(path, **kwargs)
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)) == proto
    return path


def _check(model, path, expected_fn, atol=1e-5, d=None):
    d = d or model.n_features
    for n in BATCHES:
        X = _data(n, d, seed=n)
        got = _run(path, X)
        want = expected_fn(X)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@pytest.mark.parametrize("act", fm.ACTIVATIONS)
def test_every_activation_matches_predict_proba(act, tmp_path):
    model = fm.MLP([6, 9, 8, 4], activation=act, seed=1)
    path = _exported(model, tmp_path)
    _check(model, path, model.predict_proba)


def test_the_graph_has_a_dynamic_batch_and_named_io(tmp_path):
    model = fm.MLP([6, 5, 3], seed=0)
    path = _exported(model, tmp_path)
    graph = onnx.load(str(path)).graph
    (x,), (y,) = graph.input, graph.output
    assert x.name == "input" and y.name == "probabilities"
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["batch", 6]
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["batch", 3]
    assert [n.op_type for n in graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"]


def test_mixed_activations_batchnorm_and_dropout(tmp_path):
    layers = [fm.BatchNorm(6, activation="tanh"), fm.Dense(6, 10), fm.BatchNorm(10, activation="gelu"),
              fm.Dropout(0.3), fm.Dense(10, 8, "elu"), fm.Dropout(0.2), fm.Dense(8, 5)]
    model = fm.Sequential(layers, seed=0, optimizer=fm.SGD(lr=0.05))
    X = _data(200, 6, seed=3)
    model.fit(X, np.arange(200) % 5, epochs=2, batch_size=32, verbose=0)  # running statistics
    running_var = model.get_weights()[3]
    assert not np.allclose(running_var, 1)
    path = _exported(model, tmp_path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("BatchNormalization") == 2 and "Dropout" not in ops
    _check(model, path, model.predict_proba)


def test_binary_multilabel_and_regression_heads(tmp_path):
    binary = fm.MLP([5, 8, 1], activation="tanh", loss="binary_cross_entropy", seed=0)
    path = _exported(binary, tmp_path)
    _check(binary, path, binary.predict_proba)
    assert [n.op_type for n in onnx.load(str(path)).graph.node][-1] == "Sigmoid"

    multilabel = fm.MLP([5, 8, 3], activation="softplus", loss="binary_cross_entropy", seed=0)
    _check(multilabel, _exported(multilabel, tmp_path), multilabel.predict_proba)

    regression = fm.MLP([5, 8, 1], activation="leaky_relu", loss="mse", seed=0)
    path = _exported(regression, tmp_path)
    assert onnx.load(str(path)).graph.output[0].name == "predictions"
    _check(regression, path, regression.predict)  # shape (n,), as predict's

    multi = fm.MLP([5, 8, 3], activation="elu", output="sigmoid", loss="mse", seed=0)
    _check(multi, _exported(multi, tmp_path), multi.predict)


def test_float64_models_export_float64_or_float32(tmp_path):
    model = fm.MLP([5, 7, 6, 3], activation=["elu", "softplus"], dtype="float64", seed=2)
    path = _exported(model, tmp_path)
    X = _data(50, 5, dtype=np.float64)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    np.testing.assert_allclose(_run(path, X), model.predict_proba(X), rtol=0, atol=1e-12)

    path = _exported(model, tmp_path, dtype="float32")
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    np.testing.assert_allclose(_run(path, X.astype(np.float32)), model.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("act", fm.ACTIVATIONS)
def test_float64_every_activation(act, tmp_path):
    """onnxruntime has no float64 Erf: GELU graphs run in ONNX's reference evaluator."""
    model = fm.MLP([4, 6, 3], activation=act, dtype="float64", seed=3)
    path = _exported(model, tmp_path)
    X = _data(40, 4, dtype=np.float64, scale=4.0)
    if act == "gelu":
        from onnx.reference import ReferenceEvaluator

        got = ReferenceEvaluator(str(path)).run(None, {"input": X})[0]
        atol = 1e-7  # the reference evaluator's Erf is accurate to about float32's precision
    else:
        got, atol = _run(path, X), 1e-12
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=atol)


def test_estimators_export_predict_proba_and_predict(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    cases = [
        (fm.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3), (X[:, 0] > 0).astype(int)),  # binary
        (fm.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3), np.arange(120) % 3),
        (fm.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3), (X[:, :2] > 0).astype(int)),
    ]
    for est, y in cases:
        with pytest.warns(Warning):  # max_iter reached
            est.set_params(random_state=0).fit(X, y)
        path = tmp_path / "est.onnx"
        est.to_onnx(path)
        onnx.checker.check_model(str(path))
        for n in BATCHES:
            Xn = _data(n, 4, seed=n)
            got, want = _run(path, Xn), est.predict_proba(Xn)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-5)
    for y in (X @ np.arange(4), X[:, :2] * 3):
        with pytest.warns(Warning):
            reg = fm.MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
        path = tmp_path / "reg.onnx"
        reg.to_onnx(path)
        for n in BATCHES:
            Xn = _data(n, 4, seed=n)
            got, want = _run(path, Xn), reg.predict(Xn)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_graph_model_hooks_add_and_concatenate(tmp_path):
    """The Add and Concatenate emitters (for fastmlp.Model): a residual, two-branch graph
    written through build_graph and run by onnxruntime, against NumPy."""
    class Add:
        pass

    class Concatenate:
        pass

    rng = np.random.default_rng(0)
    d1, d2, d3 = fm.Dense(4, 6, "relu"), fm.Dense(6, 6, "tanh"), fm.Dense(12, 3)
    w = [{"W": rng.normal(size=(l.out_features, l.in_features)), "b": rng.normal(size=l.out_features)}
         for l in (d1, d2, d3)]
    nodes = [(d1, w[0], ["x"]), (d2, w[1], [0]), (Add(), {}, [0, 1]), (Concatenate(), {}, [2, 0]),
             (d3, w[2], [3])]
    proto = onnx_io.build_graph(nodes, [("x", 4)], 4, "softmax", np.float32, 3, "cross_entropy")
    X = _data(7, 4)
    h1 = np.maximum(X @ w[0]["W"].T + w[0]["b"], 0)
    h2 = np.tanh(h1 @ w[1]["W"].T + w[1]["b"])
    z = np.concatenate([h1 + h2, h1], axis=1) @ w[2]["W"].T + w[2]["b"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    path = tmp_path / "graph.onnx"
    onnx_io.write(proto, path)
    np.testing.assert_allclose(_run(path, X), p / p.sum(axis=1, keepdims=True), atol=1e-5)


# ----------------------------------------------------------------------------------------
# from_onnx


def _same_model(a, b):
    assert type(b) is fm.Sequential and a.loss == b.loss and a.dtype == b.dtype
    assert [layer.get_config() for layer in a.layers if not isinstance(layer, fm.Dropout)] == \
           [layer.get_config() for layer in b.layers]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", fm.ACTIVATIONS)
def test_round_trip_every_activation(act, dtype, tmp_path):
    model = fm.MLP([5, 7, 6, 3], activation=act, dtype=dtype, seed=4)
    back = fm.from_onnx(_exported(model, tmp_path))
    _same_model(model, back)
    X = _data(9, 5, dtype=dtype)
    np.testing.assert_allclose(back.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-6)


def test_round_trip_heads_and_batchnorm(tmp_path):
    models = [
        fm.MLP([5, 6, 4], batch_norm=True, activation="gelu", seed=0),
        fm.MLP([5, 6, 1], loss="binary_cross_entropy", seed=0),
        fm.MLP([5, 6, 3], loss="binary_cross_entropy", seed=0),
        fm.MLP([5, 6, 1], loss="mse", seed=0),
        fm.MLP([5, 6, 2], loss="mse", output="sigmoid", seed=0),
        fm.Sequential([fm.BatchNorm(5, activation="relu", momentum=0.2, eps=1e-3), fm.Dense(5, 2)],
                      loss="mse"),
    ]
    for model in models:
        back = fm.from_onnx(_exported(model, tmp_path))
        _same_model(model, back)
        X = _data(11, 5)
        np.testing.assert_allclose(back.predict(X), model.predict(X), atol=1e-6)


def test_round_trip_of_an_estimator_file(tmp_path):
    pytest.importorskip("sklearn")
    X = _data(80, 3)
    with pytest.warns(Warning):
        est = fm.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, X[:, 0] > 0)
    path = tmp_path / "est.onnx"
    est.to_onnx(path)
    back = fm.from_onnx(path)  # [1 - p, p] head -> one logistic output
    assert back.loss == "binary_cross_entropy" and back.n_outputs == 1
    np.testing.assert_allclose(back.predict_proba(X)[:, 0], est.predict_proba(X)[:, 1], atol=1e-6)


def test_loss_without_metadata_comes_from_the_head(tmp_path):
    model = fm.MLP([4, 5, 2], loss="mse", output="sigmoid", seed=0)
    proto = model.to_onnx(tmp_path / "m.onnx")
    del proto.metadata_props[:]
    assert fm.from_onnx(proto).loss == "binary_cross_entropy"  # a final Sigmoid
    back = fm.from_onnx(proto, loss="mse")
    assert back.layers[-1].activation == "sigmoid"
    X = _data(6, 4)
    np.testing.assert_allclose(back.predict(X), model.predict(X), atol=1e-6)
    with pytest.raises(ValueError, match="loss"):
        fm.from_onnx(fm.MLP([4, 5, 3], seed=0).to_onnx(tmp_path / "s.onnx"), loss="mse")


def _graph(nodes, initializers, n_in=3, n_out=2, opset=17, elem=None):
    h = onnx.helper
    elem = elem or onnx.TensorProto.FLOAT
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", elem, ["N", n_in])],
                         [h.make_tensor_value_info("y", elem, ["N", n_out])],
                         initializer=[onnx.numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


def test_foreign_matmul_add_graph_with_native_gelu():
    h = onnx.helper
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    W2, b2 = rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    nodes = [h.make_node("Flatten", ["x"], ["f"], axis=1), h.make_node("MatMul", ["f", "W1"], ["m1"]),
             h.make_node("Add", ["m1", "b1"], ["a1"]), h.make_node("Gelu", ["a1"], ["g1"]),
             h.make_node("Dropout", ["g1"], ["d1"]), h.make_node("MatMul", ["d1", "W2"], ["m2"]),
             h.make_node("Add", ["b2", "m2"], ["y"])]
    proto = _graph(nodes, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, opset=20)
    model = fm.from_onnx(proto, loss="mse")
    assert [type(l).__name__ for l in model.layers] == ["Dense", "Dropout", "Dense"]
    X = _data(5, 3)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(model.predict(X), session.run(None, {"x": X})[0], atol=1e-5)


def test_from_onnx_refuses_what_it_cannot_express(tmp_path):
    h = onnx.helper
    W = np.ones((2, 3), np.float32)
    cases = [
        ([h.make_node("Gemm", ["x", "W"], ["z"], transB=1), h.make_node("Celu", ["z"], ["y"])], "Celu"),
        ([h.make_node("Gemm", ["x", "W"], ["z"], transB=1), h.make_node("LeakyRelu", ["z"], ["y"], alpha=0.2)],
         "alpha"),
        ([h.make_node("Relu", ["x"], ["r"]), h.make_node("Gemm", ["r", "W"], ["y"], transB=1)], "at the input"),
        ([h.make_node("Relu", ["x"], ["x2"]), h.make_node("Gemm", ["x", "x2"], ["y"], transB=1)],
         "read by 2 nodes"),
        ([h.make_node("Gemm", ["x", "W"], ["z"], transB=1), h.make_node("Softmax", ["z"], ["s"], axis=1),
          h.make_node("Relu", ["s"], ["y"])], "Softmax"),
    ]
    for nodes, message in cases:
        with pytest.raises(ValueError, match=message):
            fm.from_onnx(_graph(nodes, {"W": W}))
    tanh_gelu = _graph([h.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                        h.make_node("Gelu", ["z"], ["y"], approximate="tanh")], {"W": W}, opset=20)
    with pytest.raises(ValueError, match="approximate"):
        fm.from_onnx(tanh_gelu)
    with pytest.raises(TypeError, match="path"):
        fm.from_onnx(3)
    with pytest.raises(FileNotFoundError):
        fm.from_onnx(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot a protobuf" * 10)
    with pytest.raises(ValueError, match="garbage.onnx"):
        fm.from_onnx(garbage)
    ints = _graph([h.make_node("Gemm", ["x", "W"], ["y"], transB=1)], {"W": W},
                  elem=onnx.TensorProto.INT32)
    with pytest.raises(ValueError):
        fm.from_onnx(ints)


def test_to_onnx_bad_arguments(tmp_path):
    model = fm.MLP([3, 2], seed=0)
    with pytest.raises(TypeError, match="path"):
        model.to_onnx(42)
    with pytest.raises(ValueError, match=r"\.onnx"):
        model.to_onnx(tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.to_onnx(tmp_path / "no" / "such" / "model.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(IsADirectoryError):
        model.to_onnx(tmp_path / "dir.onnx")
    with pytest.raises(ValueError, match="dtype"):
        model.to_onnx(tmp_path / "m.onnx", dtype="int8")
    assert not (tmp_path / "m.onnx").exists()
    run = _cli("export", "--help", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("usage: fastmlp export") and "--to" in run.stdout
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="not writable"):
            model.to_onnx(locked / "m.onnx")


def test_estimator_to_onnx_needs_a_fitted_estimator(tmp_path):
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError, match="not fitted"):
        fm.MLPClassifier().to_onnx(tmp_path / "m.onnx")


# ----------------------------------------------------------------------------------------
# the command line


def _cli(*args, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_cli_export(tmp_path):
    model = fm.MLP([4, 6, 3], activation="tanh", seed=0)
    model.save(tmp_path / "model.npz")
    run = _cli("export", "model.npz", "--to", "model.onnx", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "model.onnx" in run.stdout
    X = _data(7, 4)
    np.testing.assert_allclose(_run(tmp_path / "model.onnx", X), model.predict_proba(X), atol=1e-5)
    run = _cli("export", "model.npz", "--to", "model64.onnx", "--dtype", "float64", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert fm.from_onnx(tmp_path / "model64.onnx").dtype == np.float64
    for args, message in [(("model.npz", "--to", "model.txt"), ".onnx"),
                          (("missing.npz", "--to", "m.onnx"), "no such file"),
                          (("model.npz", "--to", "no/such/m.onnx"), "does not exist"),
                          (("model.onnx", "--to", "m.onnx"), "not a valid fastmlp model"),
                          (("model.npz",), "--to"),
                          (("model.npz", "--to", "m.onnx", "--dtype", "int8"), "dtype")]:
        run = _cli("export", *args, cwd=tmp_path)
        assert run.returncode == 2, (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in run.stderr
    assert not (tmp_path / "m.onnx").exists()
    run = _cli("export", "--help", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("usage: fastmlp export") and "--to" in run.stdout


def test_from_onnx_reads_pytorch_exports():
    """torch.onnx.export's graphs (Gemm, Gelu, BatchNormalization whose statistics come
    through Identity nodes) load, with the same outputs."""
    import io
    import warnings

    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.2),
                           nn.Linear(6, 3), nn.Softmax(dim=1)).eval()
    f = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(2, 4),), f, dynamo=False, input_names=["x"],
                              output_names=["p"], dynamic_axes={"x": {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is not usable here: {exc}")
    model = fm.from_onnx(onnx.load_from_string(f.getvalue()))
    assert model.loss == "cross_entropy"
    assert [type(l).__name__ for l in model.layers] == ["Dense", "BatchNorm", "Dense"]  # eval: no Dropout
    X = _data(9, 4)
    with torch.no_grad():
        want = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict_proba(X), want, atol=1e-6)


def test_export_and_import_from_several_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    model = fm.MLP([5, 8, 3], activation="gelu", seed=0)
    X = _data(6, 5)
    want = model.predict_proba(X)

    def export_and_load(i):
        path = tmp_path / f"m{i % 2}.onnx"  # two threads at a time on each file: atomic writes
        model.to_onnx(path)
        return fm.from_onnx(model.to_onnx(tmp_path / f"own{i}.onnx")).predict_proba(X)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(export_and_load, range(8)))
    for P in results:
        np.testing.assert_allclose(P, want, atol=1e-7)
    for i in range(2):
        onnx.checker.check_model(str(tmp_path / f"m{i}.onnx"))
        np.testing.assert_allclose(_run(tmp_path / f"m{i}.onnx", X), want, atol=1e-5)
