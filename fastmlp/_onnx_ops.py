"""What ONNX export and import share (see fastmlp.onnx_io): the format's constants, the
graph builder, and the tables of emitters -- one small function per activation, per layer
and per head, each appending the ONNX nodes of its formula to a graph being built. Import
recognises decomposed formulas by matching them against these same emitters."""

import math

import numpy as np

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
