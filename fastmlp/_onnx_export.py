"""ONNX export (see fastmlp.onnx_io): walk a model's layers, emit each layer's nodes
(``_onnx_ops.EMITTERS``), add the head, write the file atomically."""

import os

import numpy as np

from ._onnx_ops import (EMITTERS, HEADS, INPUT_NAME, IR_VERSION, LOSS_KEY, OPSET, OUTPUT_NAMES,
                        GraphBuilder, _head_width, _onnx, model_head)
from ._validation import check_dtype


# ----------------------------------------------------------------------------------------
# walking a model


def layer_weights(model):
    """[{name: array}] per layer, from model.get_weights() (each layer's parameters, then
    its state, in get_weights' order)."""
    weights = iter(model.get_weights())
    return [{name: next(weights) for name in list(layer.param_shapes()) + list(layer.state_shapes())}
            for layer in model.layers]


def sequential_nodes(model):
    """The walk of a Sequential model: (layer, weights, input keys), one per layer; keys are
    the graph input's name or the index of the layer that produced the tensor."""
    return [(layer, w, [INPUT_NAME if l == 0 else l - 1])
            for l, (layer, w) in enumerate(zip(model.layers, layer_weights(model)))]


def graph_nodes(model):
    """The walk of a graph Model (fastmlp.Model): (nodes, inputs, output key) for
    build_graph. A shared layer's uses get the same weights dict, so build_graph writes its
    weights once and both uses read the same initializers."""
    g = model._graph
    weights = {id(layer): w for layer, w in zip(model.layers, layer_weights(model))}
    key, nodes = {}, []  # graph node index -> key of its tensor
    for i, node in enumerate(g.nodes):
        if node.is_input:
            key[i] = node.name
            continue
        nodes.append((node.layer, weights[id(node.layer)], [key[j] for j in g.ins[i]]))
        key[i] = len(nodes) - 1
    return nodes, [(n.name, n.width) for n in model.inputs], key[g.out]


def build_graph(nodes, inputs, output_key, head, dtype, n_outputs, loss, name="fastmlp"):
    """The ModelProto of a model given as a walk.

    nodes: [(node, weights, input keys)] in topological order; node i's output has key i.
    inputs: [(name, n_features)], the graph inputs (their names are their keys).
    output_key: the key of the model's output; head: a key of HEADS.
    """
    onnx = _onnx()
    from . import __version__

    g = GraphBuilder(dtype)
    tensors = {name: name for name, _ in inputs}
    converted = {}  # id(weights) -> weights in the graph's dtype: a shared layer's, once
    for i, (node, w, keys) in enumerate(nodes):
        emit = EMITTERS.get(type(node).__name__)
        if emit is None:
            raise TypeError(f"to_onnx: no ONNX form for the layer {node!r}")
        if id(w) not in converted:
            converted[id(w)] = (w, {k: np.asarray(v, g.dtype) for k, v in w.items()})
        tensors[i] = emit(g, node, converted[id(w)][1], [tensors[k] for k in keys])
    task = "regression" if loss == "mse" else "classification"
    out = g.rename_output(HEADS[head](g, tensors[output_key]), OUTPUT_NAMES[task])
    elem = onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
    width = _head_width(head, n_outputs)
    graph = onnx.helper.make_graph(
        g.nodes, name,
        [onnx.helper.make_tensor_value_info(n, elem, ["batch", f]) for n, f in inputs],
        [onnx.helper.make_tensor_value_info(out, elem, ["batch"] if width is None else ["batch", width])],
        initializer=[onnx.numpy_helper.from_array(arr, n) for n, arr in g.constants.items()],
    )
    proto = onnx.helper.make_model(graph, producer_name="fastmlp", producer_version=__version__,
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION)
    onnx.helper.set_model_props(proto, {LOSS_KEY: loss, "fastmlp.head": str(head)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _export_dtype(dtype, model_dtype):
    if dtype is None:
        return np.dtype(model_dtype)
    try:
        return check_dtype(dtype)
    except ValueError:
        raise ValueError(f"dtype must be None (the model's), 'float32' or 'float64'; got {dtype!r}") from None


def _check_path(path):
    """A path ending in .onnx whose folder exists and is writable; returned as str."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike ending in .onnx; got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str) or not path.endswith(".onnx"):
        raise ValueError(f"path must end in .onnx; got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"path {path!r}: the folder {folder!r} is not writable")
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a folder; expected a file name ending in .onnx")
    return path


def write(proto, path):
    """Write the ModelProto to `path`, atomically."""
    from ._atomic import atomic_write

    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


def to_onnx(model, path, dtype=None):
    """Export a Sequential / MLP / graph Model `model` to the ONNX file `path` (see the
    module doc).

    dtype: None (the model's), "float32" or "float64". Returns the onnx.ModelProto.
    """
    path = _check_path(path)
    dtype = _export_dtype(dtype, model.dtype)
    _onnx()
    if hasattr(model, "_graph"):  # a graph Model: one graph input per model input
        nodes, inputs, output_key = graph_nodes(model)
    else:
        nodes, inputs = sequential_nodes(model), [(INPUT_NAME, model.n_features)]
        output_key = len(model.layers) - 1
    proto = build_graph(nodes, inputs, output_key, model_head(model), dtype, model.n_outputs,
                        model.loss, name=type(model).__name__)
    write(proto, path)
    return proto


def estimator_to_onnx(est, path, dtype=None):
    """Export a fitted fastmlp.MLPClassifier / MLPRegressor: the output is the estimator's
    predict_proba (classifier; [1 - p, p] for a binary problem) or predict (regressor)."""
    path = _check_path(path)
    if not hasattr(est, "model_"):
        try:
            from sklearn.exceptions import NotFittedError as error  # a ValueError too
        except ImportError:
            error = ValueError
        raise error(f"this {type(est).__name__} is not fitted yet: call fit before to_onnx")
    model = est.model_
    dtype = _export_dtype(dtype, model.dtype)
    _onnx()
    if model.loss == "binary_cross_entropy" and not getattr(est, "_multilabel", False):
        head = "two_columns"
    else:
        head = model_head(model)
    proto = build_graph(sequential_nodes(model), [(INPUT_NAME, model.n_features)],
                        len(model.layers) - 1, head, dtype, model.n_outputs, model.loss,
                        name=type(est).__name__)
    write(proto, path)
    return proto
