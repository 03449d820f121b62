"""Reading an ONNX graph for import (see fastmlp.onnx_io): its nodes, constants and
consumers (``_Graph``), matching the exporter's emitters against it (decomposed
activations), and one node read as one step of a chain (``_step``)."""

import math

import numpy as np

from ._onnx_ops import ACTIVATIONS, HEADS, GraphBuilder, _onnx


#: most values one initializer may declare (a sane bound, checked before any array is made)
_MAX_TENSOR_VALUES = 1 << 31
#: element types read, with the repeated field a tensor without raw_data keeps them in
_TENSOR_FIELDS = {"FLOAT": "float_data", "DOUBLE": "double_data", "FLOAT16": "int32_data",
                  "INT8": "int32_data", "INT16": "int32_data", "INT32": "int32_data",
                  "UINT8": "int32_data", "UINT16": "int32_data", "BOOL": "int32_data",
                  "INT64": "int64_data", "UINT32": "uint64_data", "UINT64": "uint64_data"}


def _check_tensor(t, where):
    """What the TensorProto `t` declares (dims, element type) against the data it holds
    (`where`: "the initializer 'W'", ...); nothing is built."""
    onnx = _onnx()
    dims = [int(d) for d in t.dims]
    type_name = onnx.TensorProto.DataType.Name(t.data_type) if t.data_type in \
        onnx.TensorProto.DataType.values() else str(t.data_type)
    if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
        raise ValueError(f"{where} keeps its data in an external file; fastmlp reads only "
                         "ONNX files that hold their weights")
    if t.HasField("segment"):
        raise ValueError(f"{where} is a segment of a larger tensor; expected a whole tensor")
    if type_name not in _TENSOR_FIELDS:
        raise ValueError(f"{where} has the element type {type_name}; expected a number type "
                         f"({', '.join(_TENSOR_FIELDS)})")
    if any(d < 0 for d in dims):
        raise ValueError(f"{where} declares the dims {dims}; expected sizes >= 0")
    count = math.prod(dims)
    if count > _MAX_TENSOR_VALUES:
        raise ValueError(f"{where} declares the dims {dims} ({count} values); at most "
                         f"{_MAX_TENSOR_VALUES} are accepted")
    if t.HasField("raw_data"):
        need = count * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        held, unit = len(t.raw_data), "bytes of raw data"
    else:
        need, held = count, len(getattr(t, _TENSOR_FIELDS[type_name]))
        unit = f"values in {_TENSOR_FIELDS[type_name]}"
    if held != need:
        raise ValueError(f"{where} declares the dims {dims} of {type_name} ({need} {unit}) "
                         f"but holds {held}")


def check_constants(graph):
    """Check every initializer and Constant node value of the GraphProto `graph` (dims
    against data, a sane bound) before anything reads them (onnx's checker included)."""
    for t in graph.initializer:
        _check_tensor(t, f"the initializer {t.name!r}")
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    _check_tensor(a.t, f"the value of Constant node {node.name!r}")


def _tensor(t, where):
    """The TensorProto `t` as an array, after _check_tensor: no array is made from dims the
    data does not back."""
    _check_tensor(t, where)
    arr = _onnx().numpy_helper.to_array(t)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{where} holds NaN or inf; expected finite weights")
    return arr


class _Graph:
    """The nodes, constants and consumers of an ONNX graph (every constant's declared dims
    checked against its data before it is read)."""

    def __init__(self, graph):
        self.constants = {t.name: _tensor(t, f"the initializer {t.name!r}")
                          for t in graph.initializer}
        self.nodes = []
        for node in graph.node:  # Constant nodes, and Identity copies of constants, are constants
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                attr = {a.name: a for a in node.attribute}
                if "value" not in attr:
                    raise ValueError(f"from_onnx: Constant node {node.name!r} without a tensor value")
                self.constants[node.output[0]] = _tensor(
                    attr["value"].t, f"the value of Constant node {node.name!r}")
            elif node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]
            else:
                self.nodes.append(node)
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = [o.name for o in graph.output]

    @staticmethod
    def attrs(node):
        onnx = _onnx()
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _same_const(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a.astype(np.float64), b.astype(np.float64),
                                                   rtol=1e-6, atol=0))


def _same_attributes(a, b):
    a, b = _Graph.attrs(a), _Graph.attrs(b)
    return a.keys() == b.keys() and all(
        _same_const(a[k], b[k]) if isinstance(a[k], (int, float)) else a[k] == b[k] for k in a)


def _match(graph, x, emit):
    """Match the subgraph that `emit` (an emitter x -> y) writes against `graph` at tensor
    `x`: node by node, the same operator, attributes and wiring, constants of the same
    value (inputs of Add, Mul, Max and Min in either order). Returns (y, nodes used) or None."""
    template = GraphBuilder(np.float32)
    y = emit(template, "x")
    seen = {"x": x}  # template tensor -> graph tensor
    used = []

    def wired(t_inputs, g_inputs):
        return all((ti in seen and gi == seen[ti])
                   or (ti in template.constants and gi in graph.constants
                       and _same_const(graph.constants[gi], template.constants[ti]))
                   for ti, gi in zip(t_inputs, g_inputs))

    for t in template.nodes:
        anchor = next(seen[i] for i in t.input if i in seen)
        found = None
        for cand in graph.consumers.get(anchor, []):
            if cand.op_type != t.op_type or cand.domain not in ("", "ai.onnx") or cand in used \
                    or len(cand.input) != len(t.input) or not _same_attributes(cand, t):
                continue
            commutes = t.op_type in ("Add", "Mul", "Max", "Min")
            if wired(t.input, cand.input) or (commutes and wired(t.input, cand.input[::-1])):
                found = cand
                break
        if found is None:
            return None
        used.append(found)
        seen[t.output[0]] = found.output[0]
    return seen[y], used


#: native activation operators -> fastmlp name (with the attributes they must have)
_NATIVE = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Elu": "elu", "Sigmoid": "sigmoid",
           "Tanh": "tanh", "Softplus": "softplus", "Gelu": "gelu"}
_SUPPORTED = ("Gemm", "MatMul (+ Add)", "BatchNormalization", "Dropout", "Identity", "Flatten",
              *_NATIVE, "Softmax (last)", "Squeeze (last)")


def _native_activation(node, attrs):
    from .kernels.codes import ELU_ALPHA, LEAKY_SLOPE

    name = _NATIVE[node.op_type]
    expected = {"leaky_relu": ("alpha", 0.01, LEAKY_SLOPE), "elu": ("alpha", 1.0, ELU_ALPHA)}.get(name)
    if expected is not None:
        key, default, value = expected
        if not math.isclose(attrs.get(key, default), value, rel_tol=1e-6):
            raise ValueError(f"from_onnx: node {node.name!r} is {node.op_type} with {key}="
                             f"{attrs.get(key, default)!r}; fastmlp's {name} has {key}={value}")
    if name == "gelu" and attrs.get("approximate", "none") not in ("none", b"none"):
        raise ValueError(f"from_onnx: node {node.name!r} is Gelu(approximate='tanh'); fastmlp's "
                         "gelu is the exact erf form")
    return name


def _decompositions():
    """Emitters that write more than one node: the activations' float64 decompositions
    (and GELU's erf form) and the two-column head, each x -> y on a float64 builder."""
    def as_float64(emit):
        def emit64(g, x):
            g.dtype = np.dtype(np.float64)
            return emit(g, x)
        return emit64

    found = {}
    for name, emit in list(ACTIVATIONS.items()) + [("two_columns", HEADS["two_columns"])]:
        probe = GraphBuilder(np.float64)
        emit(probe, "x")
        if len(probe.nodes) > 1:
            found[name] = as_float64(emit)
    return found


def _const_input(graph, node, i, what):
    if i >= len(node.input) or node.input[i] == "":
        return None
    name = node.input[i]
    if name not in graph.constants:
        raise ValueError(f"from_onnx: node {node.name!r} ({node.op_type}) takes its {what} from "
                         f"the tensor {name!r}, which is not a constant; fastmlp needs constant weights")
    return np.asarray(graph.constants[name])


def _weights(graph, node, i, what, layout):
    """The 2-D constant weights input `i` of `node` (a Gemm or MatMul)."""
    W = _const_input(graph, node, i, what)
    if W is None or W.ndim != 2 or W.dtype.kind not in "biuf":
        found = "none" if W is None else f"shape {W.shape} of {W.dtype}"
        raise ValueError(f"from_onnx: {node.op_type} node {node.name!r}: its {what} "
                         f"{node.input[i] if i < len(node.input) else ''!r} must be a 2-D "
                         f"constant {layout}; found {found}")
    return W


def _bias(node, layer_node, i, C, what, n_out):
    """The bias `C` (input `i` of `node`) of the layer `layer_node` with `n_out` outputs as a
    vector of n_out values: C of shape (n_out,) or (1, n_out), or a single value."""
    if C is None:
        return np.zeros(n_out)
    if C.dtype.kind in "biuf" and C.ndim <= 2 and (C.size == 1 or C.shape[-1] == C.size == n_out):
        return np.broadcast_to(C.reshape(-1), (n_out,))
    where = f"{node.op_type} node {node.name!r}" + (
        "" if node is layer_node else f" (the bias of {layer_node.op_type} node "
                                      f"{layer_node.name!r})")
    raise ValueError(f"from_onnx: {where}: its {what} {node.input[i]!r} has shape {C.shape} of "
                     f"{C.dtype}; expected ({n_out},), one value per output of the layer, or a "
                     "single value")


def _attr_float(value):
    """A float attribute (stored as float32) back to the decimal it was written from."""
    return float(f"{float(value):.7g}")


def _step(graph, node, t, steps, output):
    """Append the step `node` (which reads t) stands for; return the tensor after it."""
    op, attrs = node.op_type, _Graph.attrs(node)
    if node.domain not in ("", "ai.onnx"):
        raise ValueError(f"from_onnx: node {node.name!r} uses the operator {node.domain}.{op}, "
                         f"which fastmlp cannot express (supported: {', '.join(_SUPPORTED)})")
    if op != "Dropout" and len(node.output) != 1:
        raise ValueError(f"from_onnx: node {node.name!r} ({op}) has {len(node.output)} outputs; "
                         "expected 1 (an inference graph)")
    if op == "Gemm":
        if node.input[0] != t or attrs.get("transA", 0):
            raise ValueError(f"from_onnx: Gemm node {node.name!r} must read the activations as "
                             "its first input A, untransposed (transA=0)")
        B = _weights(graph, node, 1, "weights B",
                     "(out, in)" if attrs.get("transB", 0) else "(in, out)")
        W = B if attrs.get("transB", 0) else B.T
        b = _bias(node, node, 2, _const_input(graph, node, 2, "bias C"), "bias C", W.shape[0])
        steps.append(("dense", W * attrs.get("alpha", 1.0), b * attrs.get("beta", 1.0)))
        return node.output[0]
    if op == "MatMul":
        if node.input[0] != t:
            raise ValueError(f"from_onnx: MatMul node {node.name!r} must read the activations as "
                             "its first input (x @ W)")
        W = _weights(graph, node, 1, "weights", "(in, out)").T
        y = node.output[0]
        users = graph.consumers.get(y, [])
        b = np.zeros(W.shape[0], W.dtype)
        if len(users) == 1 and users[0].op_type == "Add" and y != output:
            add_node = users[0]
            other = [i for i in add_node.input if i != y]
            if len(other) == 1 and other[0] in graph.constants:
                b = _bias(add_node, node, list(add_node.input).index(other[0]),
                          np.asarray(graph.constants[other[0]]), "bias", W.shape[0])
                y = add_node.output[0]
        steps.append(("dense", W, b))
        return y
    if op == "Sigmoid" and node.output[0] == output:  # the binary / multi-label head
        steps.append(("head", "sigmoid"))
        return node.output[0]
    if op in _NATIVE:
        steps.append(("act", _native_activation(node, attrs)))
        return node.output[0]
    if op == "BatchNormalization":
        if attrs.get("training_mode", 0):
            raise ValueError(f"from_onnx: BatchNormalization node {node.name!r} is in training "
                             "mode; export the model for inference")
        params = {name: _const_input(graph, node, i + 1, name)
                  for i, name in enumerate(("gamma", "beta", "running_mean", "running_var"))}
        size = None if params["gamma"] is None else params["gamma"].size
        for i, (name, value) in enumerate(params.items()):
            if value is None or value.ndim != 1 or value.size != size:
                found = "no tensor" if value is None else f"the shape {value.shape}"
                raise ValueError(f"from_onnx: BatchNormalization node {node.name!r}: its "
                                 f"{name} (input {i + 1}) must be a 1-D constant of one value "
                                 f"per feature ({size}, as gamma); found {found}")
        steps.append(("bn", params, _attr_float(attrs.get("epsilon", 1e-5)),
                      _attr_float(1 - attrs.get("momentum", 0.9))))
        return node.output[0]
    if op == "Dropout":
        ratio = _const_input(graph, node, 1, "ratio")
        if ratio is not None and (ratio.size != 1 or ratio.dtype.kind != "f"):
            raise ValueError(f"from_onnx: Dropout node {node.name!r}: its ratio "
                             f"{node.input[1]!r} must be a single float; found shape "
                             f"{ratio.shape} of {ratio.dtype}")
        p = float(attrs.get("ratio", 0.5)) if ratio is None else float(ratio.reshape(()))
        if not 0 <= p < 1:
            raise ValueError(f"from_onnx: Dropout node {node.name!r} has the ratio {p!r}; "
                             "expected 0 <= ratio < 1")
        steps.append(("dropout", p))
        return node.output[0]
    if op in ("Identity",) or (op == "Flatten" and attrs.get("axis", 1) == 1):
        return node.output[0]
    if op == "Softmax" and node.output[0] == output:
        if attrs.get("axis", -1) not in (1, -1):
            raise ValueError(f"from_onnx: Softmax node {node.name!r} has axis "
                             f"{attrs.get('axis')}; expected the features (axis 1)")
        steps.append(("head", "softmax"))
        return node.output[0]
    if op == "Squeeze" and node.output[0] == output:
        steps.append(("head", "squeeze"))
        return node.output[0]
    raise ValueError(
        f"from_onnx: node {node.name!r} uses the operator {op!r}, which fastmlp cannot express "
        f"here (supported: {', '.join(_SUPPORTED)})")


def _loss_for(head, loss):
    """The loss from the argument, else from the head; a sigmoid head of an mse model
    becomes the last layer's activation."""
    from .model import LOSSES

    inferred = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
                "two_columns": "binary_cross_entropy"}.get(head, "mse")
    if loss is None:
        return inferred
    if loss not in LOSSES:
        raise ValueError(f"loss must be None or one of {list(LOSSES)}; got {loss!r}")
    if head in ("softmax", "two_columns") and loss != inferred:
        raise ValueError(f"loss={loss!r} does not fit the graph, whose output is a "
                         f"{head.replace('_', ' ')} head ({inferred})")
    return loss
