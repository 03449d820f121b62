"""Reading an ONNX graph for import (see fastmlp.onnx_io): its nodes, constants and
consumers (``_Graph``), matching the exporter's emitters against it (decomposed
activations), and one node read as one step of a chain (``_step``)."""

import math

import numpy as np

from ._onnx_ops import ACTIVATIONS, HEADS, GraphBuilder, _onnx


class _Graph:
    """The nodes, constants and consumers of an ONNX graph."""

    def __init__(self, graph):
        onnx = _onnx()
        self.constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes = []
        for node in graph.node:  # Constant nodes, and Identity copies of constants, are constants
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                attr = {a.name: a for a in node.attribute}
                if "value" not in attr:
                    raise ValueError(f"from_onnx: Constant node {node.name!r} without a tensor value")
                self.constants[node.output[0]] = onnx.numpy_helper.to_array(attr["value"].t)
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
        B = _const_input(graph, node, 1, "weights B")
        W = B if attrs.get("transB", 0) else B.T
        C = _const_input(graph, node, 2, "bias C")
        b = np.zeros(W.shape[0], W.dtype) if C is None else np.broadcast_to(
            C.reshape(-1) if C.size == W.shape[0] else C, (W.shape[0],))
        steps.append(("dense", W * attrs.get("alpha", 1.0), b * attrs.get("beta", 1.0)))
        return node.output[0]
    if op == "MatMul":
        if node.input[0] != t:
            raise ValueError(f"from_onnx: MatMul node {node.name!r} must read the activations as "
                             "its first input (x @ W)")
        W = _const_input(graph, node, 1, "weights").T
        y = node.output[0]
        users = graph.consumers.get(y, [])
        b = np.zeros(W.shape[0], W.dtype)
        if len(users) == 1 and users[0].op_type == "Add" and y != output:
            add_node = users[0]
            other = [i for i in add_node.input if i != y]
            if len(other) == 1 and other[0] in graph.constants:
                b = np.broadcast_to(np.asarray(graph.constants[other[0]]).reshape(-1), (W.shape[0],))
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
        steps.append(("bn", params, _attr_float(attrs.get("epsilon", 1e-5)),
                      _attr_float(1 - attrs.get("momentum", 0.9))))
        return node.output[0]
    if op == "Dropout":
        ratio = _const_input(graph, node, 1, "ratio")
        p = float(attrs.get("ratio", 0.5)) if ratio is None else float(ratio)
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
