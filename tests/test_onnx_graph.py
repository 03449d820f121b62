"""Graph models (fastmlp.Model) through ONNX: to_onnx checked against onnxruntime
(residual, two inputs, a shared layer, BatchNorm + Dropout inside), from_onnx round trips,
and refusals."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fastmlp as fm  # noqa: E402

BATCHES = (1, 7, 1000)


def _data(n, d, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, d)) * 2).astype(np.float32)


def _perturbed(model, seed=1):
    """Random weights, BatchNorm running statistics included (running_var > 0), so that
    every parameter and state array matters in the comparison."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 2.0, size=w.shape) if name == "running_var"
                       else rng.normal(scale=0.5, size=w.shape)
                       for w, name in zip(model.get_weights(), _weight_names(model))])
    return model


def _weight_names(model):
    return [name for layer in model.layers
            for name in list(layer.param_shapes()) + list(layer.state_shapes())]


def residual(dtype="float32"):
    x = fm.Input(6, name="features")
    h = fm.Dense(8, activation="relu")(x)
    h = fm.Add()([h, fm.Dense(8, activation="tanh")(h)])
    h = fm.Add()([h, fm.Dense(8, activation="gelu")(h), fm.Dense(8, activation="elu")(h)])
    return fm.Model(x, fm.Dense(4)(h), loss="cross_entropy", dtype=dtype, seed=0)


def two_inputs(dtype="float32"):
    a, b = fm.Input(5, name="a"), fm.Input(3, name="b")
    h = fm.Concatenate()([fm.Dense(6, activation="leaky_relu")(a), fm.Dense(4, activation="softplus")(b), b])
    return fm.Model([a, b], fm.Dense(2)(h), loss="mse", dtype=dtype, seed=0)


def siamese(dtype="float32"):
    a, b = fm.Input(5, name="left"), fm.Input(5, name="right")
    shared = fm.Dense(7, activation="sigmoid")
    h = fm.Concatenate()([shared(a), shared(b)])
    out = fm.Dense(1)(fm.Dense(6, activation="relu")(h))
    return fm.Model([a, b], out, loss="binary_cross_entropy", dtype=dtype, seed=0)


def batchnorm_dropout(dtype="float32"):
    x = fm.Input(5)
    h = fm.Dense(8)(x)
    h = fm.Dropout(0.3)(fm.BatchNorm(activation="relu", momentum=0.2, eps=1e-4)(h))
    h = fm.Add()([h, fm.Activation("tanh")(fm.Dense(8)(h))])
    return fm.Model(x, fm.Dense(1)(h), loss="mse", dtype=dtype, seed=0)


MODELS = {"residual": residual, "two_inputs": two_inputs, "siamese": siamese,
          "batchnorm_dropout": batchnorm_dropout}


def _inputs(model, n, seed=0):
    return [_data(n, w, seed + i) for i, w in enumerate(model._input_widths)]


def _expected(model, Xs):
    X = Xs[0] if len(Xs) == 1 else Xs
    return model.predict(X) if model.loss == "mse" else model.predict_proba(X)


@pytest.mark.parametrize("kind", MODELS)
def test_to_onnx_matches_predict(kind, tmp_path):
    model = _perturbed(MODELS[kind]())
    path = tmp_path / "model.onnx"
    proto = model.to_onnx(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert [i.name for i in proto.graph.input] == [n.name for n in model.inputs]
    assert proto.graph.output[0].name == ("predictions" if model.loss == "mse" else "probabilities")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(model._input_names)
    for n in BATCHES:
        Xs = _inputs(model, n, seed=n)
        got = session.run(None, dict(zip(model._input_names, Xs)))[0]
        expected = _expected(model, Xs)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_a_shared_layer_is_written_once(tmp_path):
    model = _perturbed(siamese())
    proto = model.to_onnx(tmp_path / "model.onnx")
    gemms = [n for n in proto.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 4 and gemms[0].input[1:] == gemms[1].input[1:]  # both uses, one W and b
    assert len(proto.graph.initializer) == 6  # three layers' W and b


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_graph_models_round_trip(kind, dtype, tmp_path):
    model = _perturbed(MODELS[kind](dtype))
    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    back = fm.from_onnx(path)
    assert isinstance(back, fm.Model) and back.loss == model.loss and back.dtype == model.dtype
    assert list(back._input_names) == list(model._input_names)
    assert back.n_parameters == model.n_parameters  # the shared layer stays one layer
    Xs = _inputs(model, 50, seed=3)
    np.testing.assert_allclose(_expected(back, Xs), _expected(model, Xs), atol=1e-6, rtol=1e-6)
    if kind == "batchnorm_dropout":
        configs = {type(l).__name__: l.get_config() for l in back.layers}  # (Dropout: not exported)
        assert configs["BatchNorm"]["momentum"] == pytest.approx(0.2)
        assert configs["BatchNorm"]["eps"] == pytest.approx(1e-4)


def test_a_sequential_graph_still_imports_as_sequential(tmp_path):
    model = fm.MLP([4, 6, 3], seed=0)
    model.to_onnx(tmp_path / "m.onnx")
    assert type(fm.from_onnx(tmp_path / "m.onnx")) is fm.Sequential


def test_from_onnx_names_an_operator_it_cannot_express_in_a_graph(tmp_path):
    h = onnx.helper
    W = onnx.numpy_helper.from_array(np.ones((3, 4), np.float32), "W")
    nodes = [h.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             h.make_node("Mul", ["z", "z"], ["sq"]),  # a product of two tensors
             h.make_node("Add", ["z", "sq"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3])], [W])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ValueError, match="'Mul'"):
        fm.from_onnx(proto)


def test_from_onnx_refuses_a_concat_on_the_batch(tmp_path):
    h = onnx.helper
    nodes = [h.make_node("Concat", ["a", "b"], ["y"], axis=0)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["n", 4])
                                      for n in "ab"],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ValueError, match="axis 1"):
        fm.from_onnx(proto)


@pytest.mark.parametrize("output, loss", [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")])
def test_an_output_activation_fused_into_the_loss_is_the_head(output, loss, tmp_path):
    """MLP(output="softmax") keeps softmax on its last layer, fused into the loss: the
    export applies it once, as the head (it used to fail, or apply a sigmoid twice)."""
    model = fm.MLP([4, 6, 3], output=output, loss=loss, seed=0)
    path = tmp_path / "m.onnx"
    proto = model.to_onnx(path)
    assert [n.op_type for n in proto.graph.node].count(output.capitalize()) == 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    X = _data(9, 4).astype(np.float64)
    W1, b1, W2, b2 = model.get_weights()  # NumPy, not predict_proba: see test_graph's
    z = np.maximum(X @ W1.T + b1, 0) @ W2.T + b2  # test_a_sequential_predicts_right_after_a_graph
    p = np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True) \
        if output == "softmax" else 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(session.run(None, {"input": X.astype(np.float32)})[0], p, atol=1e-5)
