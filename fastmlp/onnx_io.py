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

Import trusts no size it has not checked: every initializer's (and Constant's) declared
dims are compared with the data it holds and with a bound before any array is built (and
before onnx's checker runs), weights in external files are refused, and each shape a layer
needs (a Gemm's bias, 2-D weights, a scalar Dropout ratio, BatchNormalization's vectors) is
checked. Every refusal is a ValueError naming the file, the node (name and operator) or
initializer, what was expected and what was found.

The ``onnx`` package is optional (``pip install 'fastmlp[onnx]'``); it is imported only
when these functions run.

Where the code lives: ``_onnx_ops.py`` (the builder and the emitter tables both directions
use), ``_onnx_export.py``, ``_onnx_read.py`` (reading a graph, matching emitters) and
``_onnx_import.py``; this module gathers their public names.
"""

from ._onnx_export import (build_graph, estimator_to_onnx, graph_nodes, layer_weights,  # noqa: F401
                           sequential_nodes, to_onnx, write)
from ._onnx_import import from_onnx  # noqa: F401
from ._onnx_ops import (ACTIVATIONS, EMITTERS, HEADS, INPUT_NAME, IR_VERSION, LOSS_KEY,  # noqa: F401
                        OPSET, OUTPUT_NAMES, GraphBuilder, activation, layer_activation,
                        model_head)

__all__ = ["to_onnx", "estimator_to_onnx", "from_onnx", "build_graph", "GraphBuilder",
           "EMITTERS", "ACTIVATIONS", "HEADS", "graph_nodes"]
