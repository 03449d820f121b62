"""ONNX import (see fastmlp.onnx_io): ``from_onnx`` reads a chain of layers into a
``Sequential`` (``_walk``, ``_layers_from_steps``), any other graph node by node into a
graph ``Model`` (``_graph_layers``)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Literal, Optional, Union

import numpy as np

from ._onnx_ops import ACTIVATIONS, LOSS_KEY, _onnx
from ._onnx_read import (_NATIVE, _SUPPORTED, _decompositions, _Graph, _loss_for, _match,
                         _native_activation, _step, check_constants)
from ._typing import Device, OptimizerLike, PathLike
from ._validation import check_dtype
from .graph import Model
from .model import Sequential


def _walk(graph, start):
    """The chain of steps from tensor `start` to the graph output: a list of
    ("dense", W, b) / ("act", name) / ("bn", {...}, eps, momentum) / ("dropout", p) /
    ("head", kind)."""
    steps = []
    t = start
    output = graph.outputs[0]
    while t != output:
        match = None
        for name, emit in _decompositions().items():
            match = _match(graph, t, emit)
            if match is not None:
                steps.append(("act", name) if name in ACTIVATIONS else ("head", name))
                break
        if match is not None:
            t = match[0]
            continue
        users = graph.consumers.get(t, [])
        if len(users) != 1:
            raise ValueError(
                f"from_onnx: the tensor {t!r} is read by {len(users)} nodes "
                f"({', '.join(u.op_type for u in users) or 'none'}, not the graph output); "
                "fastmlp reads chains of layers (Gemm / MatMul+Add, activations, "
                "BatchNormalization, Dropout)")
        node = users[0]
        t = _step(graph, node, t, steps, output)
    return steps


def _layers_from_steps(steps, n_features):
    """Fold the steps into fastmlp layers (each activation into the Dense / BatchNorm before
    it); returns (layers, weights in get_weights order, head)."""
    from .layers import BatchNorm, Dense, Dropout

    layers, weights, head = [], [], None
    size = n_features
    for step in steps:
        kind = step[0]
        if head is not None:
            raise ValueError(f"from_onnx: a {kind} step after the output's {head}")
        if kind == "dense":
            W, b = step[1], step[2]
            if size is not None and W.shape[1] != size:
                raise ValueError(f"from_onnx: a Gemm/MatMul with weights of shape {W.shape} "
                                 f"(out, in) follows {size} features")
            layers.append(Dense(W.shape[1], W.shape[0]))
            weights += [W, b]
            size = W.shape[0]
        elif kind == "bn":
            params, eps, momentum = step[1:]
            if size is not None and params["gamma"].size != size:
                raise ValueError(f"from_onnx: a BatchNormalization of {params['gamma'].size} "
                                 f"features follows {size} features")
            layers.append(BatchNorm(params["gamma"].size, eps=eps, momentum=momentum))
            weights += [params[n].reshape(-1) for n in ("gamma", "beta", "running_mean", "running_var")]
            size = params["gamma"].size
        elif kind == "dropout":
            layers.append(Dropout(step[1]))
        elif kind == "act":
            last = layers[-1] if layers else None
            if not isinstance(last, (Dense, BatchNorm)) or last.activation != "identity":
                where = "at the input" if last is None else f"after {type(last).__name__}" + (
                    f"({last.activation})" if last is not None and last.activation != "identity" else "")
                raise ValueError(
                    f"from_onnx: the activation {step[1]!r} comes {where}; fastmlp layers carry "
                    "their activation, so it must follow a Gemm (MatMul+Add) or BatchNormalization")
            last.activation = step[1]
        else:
            head = step[1]
    if not layers:
        raise ValueError("from_onnx: the graph holds no layer (Gemm, MatMul, BatchNormalization)")
    return layers, weights, head


# ----------------------------------------------------------------------------------------
# import of graphs (several inputs, Add of tensors, Concat, a tensor read twice)


def _layer_key(node):
    """What identifies a layer's weights: a shared layer is exported as two nodes reading
    the same initializers."""
    return (node.op_type, tuple(node.input[1:]),
            tuple(sorted((k, str(v)) for k, v in _Graph.attrs(node).items())))


def _pre_activation(graph, t, output):
    """The activation fused into the layer whose output is tensor t: (name, its output,
    its nodes) where everything reading t is that activation, else None."""
    users = graph.consumers.get(t, [])
    if t == output or not users:
        return None
    for name, emit in _decompositions().items():
        match = _match(graph, t, emit) if name in ACTIVATIONS else None
        if match is not None and all(any(u is m for m in match[1]) for u in users):
            return name, match[0], match[1]
    node = users[0]
    if len(users) == 1 and node.op_type in _NATIVE and node.domain in ("", "ai.onnx") \
            and not (node.op_type == "Sigmoid" and node.output[0] == output):
        return _native_activation(node, _Graph.attrs(node)), node.output[0], [node]
    return None


def _graph_layers(graph, inputs, output):
    """Rebuild a graph of fastmlp layers from `graph` (nodes in topological order, as ONNX
    requires). Returns (input nodes, output node, {id(layer): weights}, head)."""
    from .graph import Input
    from .layers import Activation, Add, BatchNorm, Concatenate, Dense, Dropout

    known = {name: Input(width, name=name) for name, width in inputs}  # tensor -> node
    done, layers, weights, head = set(), {}, {}, None

    def layer_node(node, make):
        """Call the layer of `node` (made once per set of weights) on its input; fold the
        activation that follows it into the layer."""
        key = _layer_key(node)
        y = node.output[0]
        if node.op_type == "MatMul":  # MatMul + Add(bias): the Add's output
            users = graph.consumers.get(y, [])
            if len(users) == 1 and users[0].op_type == "Add" and y != output:
                other = [i for i in users[0].input if i != y]
                if len(other) == 1 and other[0] in graph.constants:
                    key += (other[0],)
                    done.add(id(users[0]))
                    y = users[0].output[0]
        fused = _pre_activation(graph, y, output)
        if key not in layers:
            layer, w = make(fused)
            layers[key], weights[id(layer)] = layer, w
        layer = layers[key]
        if layer.activation != (fused[0] if fused else "identity"):
            raise ValueError(f"from_onnx: the layer of node {node.name!r} is used twice, with "
                             "different activations after it; fastmlp layers carry one activation")
        if fused is not None:
            done.update(id(m) for m in fused[2])
            y = fused[1]
        known[y] = layer(known[node.input[0]])

    for node in graph.nodes:
        if id(node) in done:
            continue
        op, attrs = node.op_type, _Graph.attrs(node)
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"from_onnx: node {node.name!r} uses the operator {node.domain}.{op}, "
                             f"which fastmlp cannot express (supported: {', '.join(_SUPPORTED)})")
        ins = [t for t in node.input if t in known]
        if not ins:
            raise ValueError(f"from_onnx: node {node.name!r} ({op}) reads no input or layer output "
                             "(only constants); fastmlp cannot express it")
        matched = None
        for t in ins:  # a decomposed activation or the two-column head, starting at t
            for name, emit in _decompositions().items():
                match = _match(graph, t, emit)
                if match is not None and any(m is node for m in match[1]):
                    matched = t, name, match
                    break
            if matched:
                break
        if matched:
            t, name, (y, used) = matched
            done.update(id(m) for m in used)
            if name in ACTIVATIONS:
                known[y] = Activation(name)(known[t])
            elif y == output:
                head, known[y] = name, known[t]
            else:
                raise ValueError(f"from_onnx: a {name} head before the graph output, at node {node.name!r}")
            continue
        t, y = ins[0], node.output[0]
        if op in ("Gemm", "MatMul", "BatchNormalization"):
            if node.input[0] != t:
                raise ValueError(f"from_onnx: {op} node {node.name!r} must read the activations as "
                                 "its first input")
            steps = []
            _step(graph, node, t, steps, output)
            if steps[0][0] == "dense":
                W, b = steps[0][1], steps[0][2]  # for MatMul, _step found the bias Add too
                layer_node(node, lambda fused, W=W, b=b: (
                    Dense(W.shape[1], W.shape[0], fused[0] if fused else "identity"),
                    [np.asarray(W), np.asarray(b)]))
            else:
                params, eps, momentum = steps[0][1:]
                layer_node(node, lambda fused: (
                    BatchNorm(params["gamma"].size, fused[0] if fused else "identity", momentum, eps),
                    [params[n].reshape(-1) for n in ("gamma", "beta", "running_mean", "running_var")]))
        elif op == "Add":
            if len(ins) != len(node.input):
                raise ValueError(f"from_onnx: Add node {node.name!r} adds a constant to a tensor "
                                 "(not after a MatMul); fastmlp cannot express it")
            known[y] = Add()([known[i] for i in node.input])
        elif op == "Concat":
            if attrs.get("axis") not in (1, -1) or len(ins) != len(node.input):
                raise ValueError(f"from_onnx: Concat node {node.name!r} must join tensors along the "
                                 f"features (axis 1); got axis {attrs.get('axis')}")
            known[y] = Concatenate()([known[i] for i in node.input])
        elif op == "Dropout":
            steps = []
            _step(graph, node, t, steps, output)
            known[y] = Dropout(steps[0][1])(known[t])
        elif op in ("Softmax", "Sigmoid", "Squeeze") and y == output:
            steps = []
            _step(graph, node, t, steps, output)
            head, known[y] = steps[0][1], known[t]
        elif op in _NATIVE:
            known[y] = Activation(_native_activation(node, attrs))(known[t])
        elif op in ("Identity",) or (op == "Flatten" and attrs.get("axis", 1) == 1):
            known[y] = known[t]
        else:
            raise ValueError(
                f"from_onnx: node {node.name!r} uses the operator {op!r}, which fastmlp cannot "
                f"express (supported: {', '.join(_SUPPORTED)}, Add, Concat)")
    if output not in known:
        raise ValueError(f"from_onnx: the graph output {output!r} is not computed from its inputs")
    return [known[name] for name, _ in inputs], known[output], weights, head


def _graph_model(xs, out, weights, head, loss, optimizer, device, dtype, label):
    """A fastmlp.Model from the nodes _graph_layers rebuilt of a graph that is no chain."""
    from .graph import Model
    from .layers import Activation, BatchNorm, Dense

    with _file_errors(label):
        if out.is_input:
            raise ValueError("from_onnx: the graph output is one of its inputs; no layer between")
        if head == "sigmoid" and loss == "mse":  # the sigmoid is the model's, not a loss's
            layer = out.layer
            if isinstance(layer, (Dense, BatchNorm)) and layer.activation == "identity" \
                    and getattr(layer, "_uses", 1) == 1:
                layer.activation = "sigmoid"
            else:
                out = Activation("sigmoid")(out)
    model = Model(xs[0] if len(xs) == 1 else xs, out, loss=loss, optimizer=optimizer,
                  device=device, dtype=dtype)
    with _file_errors(label):
        model.set_weights([w for layer in model.layers for w in weights.get(id(layer), [])])
    return model


def from_onnx(path: Union[PathLike, Any], loss: Optional[str] = None,
              optimizer: Optional[OptimizerLike] = None, device: Device = "auto",
              dtype: Optional[Literal["float32", "float64"]] = None
              ) -> Union[Sequential, Model]:
    """A fastmlp model from an ONNX file (or onnx.ModelProto) that fastmlp can express: a
    Sequential model for a chain of Gemm (or MatMul + Add) layers with the activations relu,
    leaky_relu (0.01), elu (1), sigmoid, tanh, gelu (exact), softplus, BatchNormalization
    and Dropout, optionally ending in Softmax (loss cross_entropy), Sigmoid (binary
    cross-entropy) or Squeeze. A graph with several inputs, Adds of two tensors or Concat
    (axis 1) becomes a graph ``fastmlp.Model`` (inputs named as the graph's; nodes reading
    the same weights become one shared layer). Any other operator raises a ValueError
    naming it.

    loss: None takes the loss recorded by ``to_onnx`` or, failing that, the one the
    output implies (softmax: cross_entropy, sigmoid: binary_cross_entropy, else mse).
    ``loss="mse"`` with a sigmoid output keeps the sigmoid as the last layer's activation.
    dtype: None (the graph's: float32 or float64), "float32" or "float64".
    """
    onnx = _onnx()
    from .model import Sequential

    if isinstance(path, onnx.ModelProto):
        proto, label = path, "the model"
    elif isinstance(path, (str, os.PathLike)):
        label = repr(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"path: no such file: {label}")
        try:
            proto = onnx.load(path, load_external_data=False)  # weights held, checked
        except Exception as exc:  # noqa: BLE001 - protobuf raises its own errors
            raise ValueError(f"path {label} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    else:
        raise TypeError(f"path must be a str, os.PathLike or onnx.ModelProto; got {type(path).__name__}")
    with _file_errors(label):  # declared sizes first: the checker trusts them
        check_constants(proto.graph)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{label} is not a valid ONNX model: {exc}") from None
    if dtype is not None:
        dtype = check_dtype(dtype).name
    with _file_errors(label):
        graph, inputs, widths, graph_dtype = _read_graph(onnx, proto)
        meta = {p.key: p.value for p in proto.metadata_props}
        if loss is None and meta.get(LOSS_KEY):
            loss = meta[LOSS_KEY]
        steps = None
        if len(inputs) == 1:
            try:
                steps = _walk(graph, inputs[0].name)
            except ValueError as chain_error:
                if not _is_graph(graph):
                    raise chain_error from None
        if steps is None:  # several inputs, Add of two tensors, Concat: a graph Model
            if None in widths:
                raise ValueError("from_onnx: a graph model's inputs need a fixed number of "
                                 f"features; got {[(x.name, w) for x, w in zip(inputs, widths)]}")
            xs, out, weights, head = _graph_layers(
                graph, [(x.name, w) for x, w in zip(inputs, widths)], graph.outputs[0])
            loss = _loss_for(head, loss)
        else:
            layers, weights, head = _layers_from_steps(steps, widths[0])
            loss = _loss_for(head, loss)
            if head == "sigmoid" and loss == "mse":
                if layers[-1].activation != "identity":
                    raise ValueError("from_onnx: a Sigmoid after the last layer's activation")
                layers[-1].activation = "sigmoid"
    dtype = graph_dtype if dtype is None else dtype
    if steps is None:
        return _graph_model(xs, out, weights, head, loss, optimizer, device, dtype, label)
    model = Sequential(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype)
    with _file_errors(label):
        model.set_weights(weights)
    return model


def _read_graph(onnx, proto):
    """(graph, inputs, their widths, their dtype) of the ModelProto `proto`."""
    graph = _Graph(proto.graph)
    inputs = [i for i in proto.graph.input if i.name not in graph.constants]
    if not inputs or len(graph.outputs) != 1:
        raise ValueError(f"from_onnx: the graph has {len(inputs)} inputs and {len(graph.outputs)} "
                         "outputs; fastmlp models have one output and at least one input")
    dtypes, widths = set(), []
    for x in inputs:
        elem = x.type.tensor_type.elem_type
        graph_dtype = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}.get(elem)
        if graph_dtype is None:
            raise ValueError(f"from_onnx: the input {x.name!r} has element type "
                             f"{onnx.TensorProto.DataType.Name(elem)}; expected FLOAT or DOUBLE")
        dims = x.type.tensor_type.shape.dim
        if len(dims) != 2:
            raise ValueError(f"from_onnx: the input {x.name!r} has {len(dims)} dimensions; "
                             "expected 2 (batch, features)")
        dtypes.add(graph_dtype)
        widths.append(dims[1].dim_value or None)
    if len(dtypes) > 1:
        raise ValueError(f"from_onnx: the inputs mix element types {sorted(dtypes)}")
    return graph, inputs, widths, dtypes.pop()


@contextlib.contextmanager
def _file_errors(label):
    """A problem found in the graph becomes a ValueError naming the file: "from_onnx:
    <label>: <what is wrong>" (the node or initializer, what was expected, what was found)."""
    try:
        yield
    except ValueError as exc:
        reason = str(exc)
        reason = reason[len("from_onnx: "):] if reason.startswith("from_onnx: ") else reason
        raise ValueError(f"from_onnx: {label}: {reason}") from None
    except (TypeError, IndexError, KeyError, AttributeError) as exc:  # a graph not foreseen
        raise ValueError(f"from_onnx: {label}: the graph cannot be read "
                         f"({type(exc).__name__}: {exc})") from None


def _is_graph(graph):
    """Whether the graph has the operators only graph Models use: Concat, or an Add of two
    computed tensors outside a decomposed activation (the MatMul + bias Add reads a constant)."""
    inside = set()
    for node in graph.nodes:
        for t in node.input:
            for name, emit in _decompositions().items():
                match = _match(graph, t, emit) if t not in graph.constants else None
                if match is not None:
                    inside.update(id(m) for m in match[1])
    return any(n.op_type == "Concat" and id(n) not in inside
               or (n.op_type == "Add" and id(n) not in inside
                   and all(i not in graph.constants for i in n.input))
               for n in graph.nodes)
