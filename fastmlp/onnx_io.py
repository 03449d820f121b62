"""ONNX export and import: ``model.to_onnx(path)`` and ``fastmlp.from_onnx(path)``.

Export is a walk over the model's layers, each layer written by one small function (an
*emitter*) that appends ONNX nodes to a graph being built::

    Dense(W, b, f)        ->  Gemm(x, W, b, transB=1), then f
    BatchNorm(..., f)     ->  BatchNormalization(x, gamma, beta, running_mean, running_var), then f
    Dropout               ->  nothing (inference is the identity)
    Add / Concatenate     ->  Add / Concat(axis=1)          (graph models)
    head                  ->  Softmax (cross_entropy), Sigmoid (binary_cross_entropy),
                              nothing (mse; Squeeze to (N,) for one output)

The activations f are ONNX operators (Relu, LeakyRelu, Elu, Sigmoid, Tanh, Softplus) or
exact decompositions into operators: GELU is ``0.5 * x * (1 + Erf(x / sqrt(2)))`` (the
exact erf form; the Gelu operator needs opset 20). In float64 graphs leaky_relu, elu and
softplus are written as decompositions too (``Max(x, 0.01 x)``, ``Relu(x) + Exp(Min(x, 0))
- 1``, ``Relu(x) + Log(1 + Exp(-|x|))``): ONNX attributes are float32, so ``LeakyRelu``
would round its slope, and onnxruntime has no float64 kernels for Elu and Softplus. It has
none for Erf either: a float64 GELU graph is valid ONNX, but onnxruntime runs GELU only in
float32 graphs (``to_onnx(path, dtype="float32")``).

The graph has one input per model input (``input`` for Sequential models; float32 or
float64, batch dimension ``batch`` left dynamic) and one output: ``probabilities`` (what
``predict_proba`` returns) for classification, ``predictions`` (what ``predict`` returns)
for regression. Opset 17, IR version 8: onnxruntime >= 1.13 and most other runtimes load
it. The model's metadata holds ``fastmlp.loss`` so that ``from_onnx`` rebuilds the same
model.

Import (``from_onnx``) walks the graph from its input along the chain of nodes and maps
each node back to a layer: Gemm, or MatMul followed by Add, is a Dense layer; an activation
after it becomes the layer's activation; BatchNormalization is BatchNorm; Dropout is
Dropout; a final Softmax or Sigmoid is the loss's. Decompositions are recognised by
matching them against the exporter's own emitters (one definition of each formula).

Graph models (``fastmlp.Model``) go through the same ``build_graph``: ``graph_nodes``
gives the model's nodes in topological order as ``(node, weights, input keys)``, where a
key is an input's name or the index of the node that produced the tensor, and the model's
inputs as ``[(name, n_features)]`` (one graph input per model input, named after it).
Nodes are emitted by their class name (``EMITTERS``): Dense, BatchNorm, Dropout,
Activation, Add (a chain of ONNX Adds) and Concatenate (Concat on the features). A shared
layer's uses get the same weights, which the builder writes once: both Gemms read the
same initializers. An output activation fused into the loss (softmax) is left to the head.

Graphs that are no chain (several inputs, an Add of two computed tensors, Concat) are
imported node by node in the graph's (topological) order into a ``fastmlp.Model``: nodes
reading the same weight initializers become one shared layer, an activation that is the
only reader of a layer's output is folded into the layer, any other becomes an
``Activation`` node; Add and Concat(axis=1) become Add and Concatenate.

The ``onnx`` package is optional (``pip install 'fastmlp[onnx]'``); it is imported only
when these functions run.
"""

import math
import os

import numpy as np

from ._validation import check_dtype

#: opset and IR version of the graphs written
OPSET = 17
IR_VERSION = 8
#: name of the graph input of a one-input model, and of the output by task
INPUT_NAME = "input"
OUTPUT_NAMES = {"classification": "probabilities", "regression": "predictions"}
#: the metadata key holding the model's loss
LOSS_KEY = "fastmlp.loss"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "ONNX export and import need the 'onnx' package: pip install 'fastmlp[onnx]'"
        ) from None
    return onnx


# ----------------------------------------------------------------------------------------
# the graph being built


class GraphBuilder:
    """Nodes and constants of an ONNX graph in one floating-point dtype.

    ``op(op_type, inputs, **attributes)`` appends a node and returns the name of its
    output; ``const(hint, array)`` adds an initializer (cast to the graph's dtype) and
    returns its name. Names are made unique with a counter.
    """

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.constants = {}  # name -> array
        self._named = {}  # id(value) -> (name, value): one initializer per array given
        self._count = 0

    def _name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint, value, dtype=None):
        """The initializer holding `value`; the same array object given twice (a shared
        layer's weights) gives the same initializer."""
        if id(value) in self._named:
            return self._named[id(value)][0]
        name = self._name(hint)
        self.constants[name] = np.ascontiguousarray(value, dtype or self.dtype)
        self._named[id(value)] = (name, value)  # holding value keeps its id unique
        return name

    def scalar(self, value):
        return self.const("c", np.array(value))

    def op(self, op_type, inputs, **attributes):
        onnx = _onnx()
        out = self._name(op_type.lower())
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                **attributes))
        return out

    def rename_output(self, tensor, name):
        """Make `tensor` (the graph's result) appear under `name`: rename it where the last
        node produced it and nothing reads it, else add an Identity node."""
        last = self.nodes[-1] if self.nodes else None
        read = any(tensor in node.input for node in self.nodes)
        if last is not None and list(last.output) == [tensor] and not read:
            last.output[0] = name
        else:
            onnx = _onnx()
            self.nodes.append(onnx.helper.make_node("Identity", [tensor], [name], name=name))
        return name


# ----------------------------------------------------------------------------------------
# activations: x -> f(x), one emitter each


def _relu(g, x):
    return g.op("Relu", [x])


def _leaky_relu(g, x):
    from .kernels.codes import LEAKY_SLOPE

    if g.dtype == np.float64:  # exact slope: attributes are float32
        return g.op("Max", [x, g.op("Mul", [x, g.scalar(LEAKY_SLOPE)])])
    return g.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)


def _elu(g, x):
    from .kernels.codes import ELU_ALPHA

    if g.dtype == np.float64:  # alpha (exp(min(x, 0)) - 1) + relu(x); alpha is 1
        negative = g.op("Sub", [g.op("Exp", [g.op("Min", [x, g.scalar(0)])]), g.scalar(1)])
        return g.op("Add", [g.op("Relu", [x]), negative])
    return g.op("Elu", [x], alpha=ELU_ALPHA)


def _sigmoid(g, x):
    return g.op("Sigmoid", [x])


def _tanh(g, x):
    return g.op("Tanh", [x])


def _gelu(g, x):  # x Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
    erf = g.op("Erf", [g.op("Mul", [x, g.scalar(1 / math.sqrt(2))])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, g.scalar(1)])]), g.scalar(0.5)])


def _softplus(g, x):
    if g.dtype == np.float64:  # relu(x) + log(1 + exp(-|x|)): never overflows
        tail = g.op("Log", [g.op("Add", [g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])]),
                                         g.scalar(1)])])
        return g.op("Add", [g.op("Relu", [x]), tail])
    return g.op("Softplus", [x])


ACTIVATIONS = {
    "identity": lambda g, x: x,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "gelu": _gelu,
    "softplus": _softplus,
}


def activation(g, x, name):
    return ACTIVATIONS[name](g, x)


def layer_activation(layer):
    """The activation a layer applies in inference graphs: none for an output activation
    fused into the loss (softmax, or sigmoid with binary cross-entropy), which the head
    applies instead."""
    return "identity" if getattr(layer, "_fused", False) else layer.activation


# ----------------------------------------------------------------------------------------
# layers and graph nodes: (builder, the layer, its weights {name: array}, input names) -> output


def dense(g, layer, w, inputs):
    (x,) = inputs
    bias = [g.const("b", w["b"])] if "b" in w else []  # Dense(use_bias=False): Gemm without C
    z = g.op("Gemm", [x, g.const("W", w["W"])] + bias, transB=1)
    return activation(g, z, layer_activation(layer))


def batchnorm(g, layer, w, inputs):
    (x,) = inputs
    z = g.op("BatchNormalization",
             [x] + [g.const(name, w[name]) for name in ("gamma", "beta", "running_mean", "running_var")],
             epsilon=layer.eps, momentum=1 - layer.momentum)
    return activation(g, z, layer_activation(layer))


def dropout(g, layer, w, inputs):
    (x,) = inputs
    return x


def activation_node(g, node, w, inputs):
    """A stand-alone activation node (graph models)."""
    (x,) = inputs
    return activation(g, x, layer_activation(node))


def add(g, node, w, inputs):
    """Add of two or more inputs of the same width (ONNX's Add takes two: a chain)."""
    out = inputs[0]
    for x in inputs[1:]:
        out = g.op("Add", [out, x])
    return out


def concatenate(g, node, w, inputs):
    """Concatenation along the features."""
    return g.op("Concat", list(inputs), axis=1)


#: emitter by layer / node class name
EMITTERS = {"Dense": dense, "BatchNorm": batchnorm, "Dropout": dropout,
            "Activation": activation_node, "Add": add, "Concatenate": concatenate}


# ----------------------------------------------------------------------------------------
# heads: logits -> what predict_proba / predict return


def _head_softmax(g, z):
    return g.op("Softmax", [z], axis=1)


def _head_sigmoid(g, z):
    return g.op("Sigmoid", [z])


def _head_two_columns(g, z):
    """[1 - p, p] from one logit (scikit-learn's predict_proba of a binary classifier)."""
    p = g.op("Sigmoid", [z])
    return g.op("Concat", [g.op("Sub", [g.scalar(1), p]), p], axis=1)


def _head_squeeze(g, z):
    """(N, 1) -> (N,), as predict returns one output."""
    return g.op("Squeeze", [z, g.const("axes", np.array([1]), np.int64)])


HEADS = {"softmax": _head_softmax, "sigmoid": _head_sigmoid, "two_columns": _head_two_columns,
         "squeeze": _head_squeeze, None: lambda g, z: z}


def model_head(model):
    """The head that turns `model`'s outputs into predict_proba's (or predict's)."""
    if model.loss in ("cross_entropy", "kl_divergence"):
        return "softmax"
    if model.loss == "binary_cross_entropy":
        return "sigmoid"
    return "squeeze" if model.n_outputs == 1 else None


def _head_width(head, n_outputs):
    if head == "squeeze":
        return None
    return 2 if head == "two_columns" else n_outputs


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


# ----------------------------------------------------------------------------------------
# import


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


def _graph_model(graph, inputs, output, loss, optimizer, device, dtype):
    """A fastmlp.Model from a graph that is no chain (see _graph_layers)."""
    from .graph import Model
    from .layers import Activation, BatchNorm, Dense

    xs, out, weights, head = _graph_layers(graph, inputs, output)
    loss = _loss_for(head, loss)
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
    model.set_weights([w for layer in model.layers for w in weights.get(id(layer), [])])
    return model


def from_onnx(path, loss=None, optimizer=None, device="auto", dtype=None):
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
            proto = onnx.load(path)
        except Exception as exc:  # noqa: BLE001 - protobuf raises its own errors
            raise ValueError(f"path {label} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    else:
        raise TypeError(f"path must be a str, os.PathLike or onnx.ModelProto; got {type(path).__name__}")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{label} is not a valid ONNX model: {exc}") from None
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
    graph_dtype = dtypes.pop()
    dtype = graph_dtype if dtype is None else check_dtype(dtype).name
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
            raise ValueError("from_onnx: a graph model's inputs need a fixed number of features; "
                             f"got {[(x.name, w) for x, w in zip(inputs, widths)]}")
        return _graph_model(graph, [(x.name, w) for x, w in zip(inputs, widths)], graph.outputs[0],
                            loss, optimizer, device, dtype)
    layers, weights, head = _layers_from_steps(steps, widths[0])
    loss = _loss_for(head, loss)
    if head == "sigmoid" and loss == "mse":
        if layers[-1].activation != "identity":
            raise ValueError("from_onnx: a Sigmoid after the last layer's activation")
        layers[-1].activation = "sigmoid"
    model = Sequential(layers, loss=loss, optimizer=optimizer, device=device, dtype=dtype)
    model.set_weights(weights)
    return model


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


__all__ = ["to_onnx", "estimator_to_onnx", "from_onnx", "build_graph", "GraphBuilder",
           "EMITTERS", "ACTIVATIONS", "HEADS", "graph_nodes"]
