"""Graphs of layers (Keras' functional API): nodes, Input, and the plan a graph Model runs.

``Input(784)`` is a node; calling a layer on nodes (``Dense(256, activation="relu")(x)``)
connects it and returns its output node. ``Graph(inputs, output)`` walks back from the output
once, checks the graph and sorts it topologically (inputs first). ``Graph.plan()`` then
decides, once, how the training step moves deltas between nodes:

- a node feeding several consumers gets its own delta buffer: the first consumer (in
  backward order) writes it, the others add to it (GEMM with beta = 1 for Dense), and f' of
  the node is applied once, fused into the last Dense consumer's GEMM where there is one;
- a node feeding only an ``Add`` or an ``Activation`` shares that consumer's delta buffer
  (Add passes delta on without a copy; one input per Add);
- a node feeding only a ``Concatenate`` writes its output straight into its columns of the
  Concatenate's output and gets the matching columns of its delta (views, no copies).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence, Union

from ._typing import Device, DType, OptimizerLike, PathLike
from .kernels.codes import IDENTITY, NEEDS_PREACTIVATION
from .sparse import issparse
from .layers import (FUSED_OUTPUTS, Activation, Add, BatchNorm, Concatenate, Dense, Dropout, Layer,
                     _unique_name)

#: consumers whose backward kernel can apply their producer's f' in the same pass
_FUSES_WRITE = (Dense, Dropout, BatchNorm)


class Node:
    """A symbolic tensor of `width` features: an ``Input``, or a layer's output when called
    on its input node(s)."""

    __slots__ = ("layer", "inputs", "width", "name")

    def __init__(self, layer, inputs, width, name):
        self.layer, self.inputs, self.width, self.name = layer, tuple(inputs), width, name

    @property
    def is_input(self):
        return self.layer is None

    @property
    def kind(self):
        return "Input" if self.layer is None else type(self.layer).__name__

    def __repr__(self):
        return f"<Node {self.name!r} ({self.kind}) width={self.width}>"


def Input(width: Optional[int] = None, name: Optional[str] = None, *,
          shape: Optional[Sequence[int]] = None) -> Node:
    """An input node of `width` features: ``Input(784)``, ``Input(784, name="pixels")``, or
    Keras' ``Input(shape=(784,))``."""
    from ._validation import check_int

    if shape is not None:
        if width is not None:
            raise TypeError("give Input(width) or Input(shape=(width,)), not both")
        if not isinstance(shape, (tuple, list)) or len(shape) != 1:
            raise ValueError(f"Input shape must be (features,): fastmlp's inputs are vectors; got {shape!r}")
        width = shape[0]
    if width is None:
        raise TypeError("Input needs its width: Input(784) or Input(shape=(784,))")
    width = check_int(width, "Input width")
    if name is None:
        name = _unique_name("input")
    elif not isinstance(name, str) or not name.strip():
        raise TypeError(f"Input name must be a non-empty string; got {name!r}")
    return Node(None, (), width, name)


def connect(layer, inputs):
    """``layer(inputs)``: check the input node(s), fix the layer's widths, return its node."""
    one = layer.n_inputs == 1
    nodes = [inputs] if isinstance(inputs, Node) else inputs
    if not isinstance(nodes, (list, tuple)) or not all(isinstance(n, Node) for n in nodes):
        expected = "a node" if one else "a list of nodes"
        raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) must be called on {expected} "
                        f"(from fastmlp.Input or another layer); got {inputs!r}")
    nodes = list(nodes)
    if one and len(nodes) != 1:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) takes one input node; got {len(nodes)}")
    width = layer.connect([n.width for n in nodes])
    uses = getattr(layer, "_uses", 0)
    layer._uses = uses + 1
    node = Node(layer, nodes, width, layer.name if uses == 0 else f"{layer.name}[{uses}]")
    layer._output_node = node if uses == 0 else "shared"
    return node


class Graph:
    """The nodes between `inputs` and `output`, checked and in topological order.

    Attributes: ``nodes`` (inputs first, in the order given, then every node after its
    inputs), ``inputs`` (their indices), ``out`` (the output's index), ``ins[i]`` (indices of
    node i's inputs), ``consumers[i]`` ((consumer, slot) pairs), ``layers`` (each layer once,
    in order of first use).
    """

    def __init__(self, inputs, output):
        single = isinstance(inputs, Node)
        inputs = [inputs] if single else inputs
        if not isinstance(inputs, (list, tuple)) or not inputs \
                or not all(isinstance(n, Node) for n in inputs):
            raise TypeError(f"inputs must be an Input node or a non-empty list of them; got {inputs!r}")
        for n in inputs:
            if not n.is_input:
                raise ValueError(f"inputs must be Input nodes; {n.name!r} is the output of a {n.kind} layer")
        if len({id(n) for n in inputs}) != len(inputs):
            raise ValueError("inputs lists the same Input twice")
        if isinstance(output, (list, tuple)):
            if len(output) != 1:
                raise ValueError(f"a Model has one output node; got {len(output)} (Concatenate them "
                                 "into one output for several targets)")
            output = output[0]
        if not isinstance(output, Node):
            raise TypeError(f"outputs must be a node (a layer's output); got {output!r}")
        if output.is_input:
            raise ValueError(f"the output {output.name!r} is an Input: connect at least one layer")

        order, state, stack = [], {}, [(output, False)]
        while stack:  # depth-first, post-order: every node after its inputs
            node, done = stack.pop()
            if done:
                state[id(node)] = 2
                order.append(node)
                continue
            if state.get(id(node)) is not None:
                continue
            state[id(node)] = 1
            stack.append((node, True))
            for n in reversed(node.inputs):
                if state.get(id(n)) is None:
                    stack.append((n, False))
        given = {id(n) for n in inputs}
        for node in order:
            if node.is_input and id(node) not in given:
                raise ValueError(f"the output {output.name!r} depends on Input {node.name!r}, which "
                                 "is not among the model's inputs")
        reached = {id(n) for n in order}
        for n in inputs:
            if id(n) not in reached:
                raise ValueError(f"Input {n.name!r} does not reach the output {output.name!r}: the "
                                 "output must depend on every input")
        self.nodes = list(inputs) + [n for n in order if not n.is_input]
        names = [n.name for n in self.nodes]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ValueError(f"two nodes of the model are named {dup[0]!r}: give each layer and Input "
                             "its own name")
        index = {id(n): i for i, n in enumerate(self.nodes)}
        self.single_input = single
        self.inputs = list(range(len(inputs)))
        self.out = index[id(output)]
        self.ins = [[index[id(m)] for m in n.inputs] for n in self.nodes]
        self.consumers = [[] for _ in self.nodes]
        for i, ins in enumerate(self.ins):
            for slot, j in enumerate(ins):
                self.consumers[j].append((i, slot))
        self.layers = []
        for n in self.nodes[len(inputs):]:
            if all(n.layer is not l for l in self.layers):
                self.layers.append(n.layer)
        self.width = [n.width for n in self.nodes]

    @property
    def output(self):
        return self.nodes[self.out]

    def is_input(self, i):
        return i < len(self.inputs)

    def plan(self, act):
        """How deltas move backward (see the module docstring), from the nodes' activation
        codes `act`. Returns a namespace of per-node lists:

        ``A_into[i]``: (c, offset) when node i writes straight into columns of Concatenate c;
        ``dA_share[i]``: ("same", c) when i's delta buffer is its consumer c's (Add,
        Activation), ("cols", c, offset) for columns of Concatenate c's, None for its own;
        ``mode[i][slot]``: what node i's backward does for that input: "skip" (an Input),
        "share" (nothing: the input shares the buffer), "write" or "accumulate";
        ``fuse[i][slot]``: whether it applies the input's f' in the same kernel;
        ``apply_df[i]``: whether node i applies its own f' (the loss does the output's);
        ``acc_grads[i]``: whether node i adds to its layer's gradients (a shared layer's
        later use in backward order).
        """
        from types import SimpleNamespace

        n = len(self.nodes)
        A_into, dA_share = [None] * n, [None] * n
        mode = [[None] * len(ins) for ins in self.ins]
        fuse = [[False] * len(ins) for ins in self.ins]
        written = [0] * n
        edges_left = [len(c) for c in self.consumers]
        fused = [False] * n
        for i in reversed(range(len(self.inputs), n)):  # backward order
            layer = self.nodes[i].layer
            shared_add = False
            offset = 0
            for slot, j in enumerate(self.ins[i]):
                sole = len(self.consumers[j]) == 1 and not self.is_input(j)
                if self.is_input(j):
                    mode[i][slot] = "skip"
                elif sole and isinstance(layer, Activation):
                    mode[i][slot], dA_share[j] = "share", ("same", i)
                elif sole and isinstance(layer, Add) and not shared_add:
                    mode[i][slot], dA_share[j], shared_add = "share", ("same", i), True
                elif sole and isinstance(layer, Concatenate):
                    mode[i][slot], dA_share[j] = "share", ("cols", i, offset)
                else:
                    mode[i][slot] = "write" if written[j] == 0 else "accumulate"
                    written[j] += 1
                    edges_left[j] -= 1
                    last = edges_left[j] == 0
                    if last and (isinstance(layer, Dense) or
                                 (mode[i][slot] == "write" and isinstance(layer, _FUSES_WRITE))):
                        fuse[i][slot] = fused[j] = True
                if sole and isinstance(layer, Concatenate):
                    A_into[j] = (i, offset)
                offset += self.width[j]
        apply_df = [not self.is_input(i) and i != self.out and act[i] != 0 and not fused[i]
                    for i in range(n)]
        acc_grads, seen = [False] * n, set()
        for i in reversed(range(len(self.inputs), n)):
            layer = self.nodes[i].layer
            if layer.param_shapes():
                acc_grads[i] = id(layer) in seen
                seen.add(id(layer))
        return SimpleNamespace(A_into=A_into, dA_share=dA_share, mode=mode, fuse=fuse,
                               apply_df=apply_df, acc_grads=acc_grads)




# ----------------------------------------------------------------------------------------
# the graph model


def _import_network():
    from .model import _Network

    return _Network


if TYPE_CHECKING:  # the base _import_network returns, for type checkers
    from ._network import _Network as _ModelBase
else:
    _ModelBase = _import_network()


class Model(_ModelBase):
    """A model over a graph of layers (Keras' functional API)::

        x = fm.Input(784)
        h = fm.Dense(256, activation="relu")(x)
        h = fm.Add()([h, fm.Dense(256, activation="relu")(h)])
        model = fm.Model(x, fm.Dense(10)(h), loss="cross_entropy", optimizer="adam")

    inputs: an Input node or a list of them (the order of the arrays fit/predict take; a dict
    keyed by input name works too). outputs: the output node. loss: as Sequential's (None:
    a softmax or sigmoid output names it, else the first targets choose it by Sequential's
    rule). The other arguments are Sequential's. Everything Sequential offers works the same way.

    Layers that already have weights keep them, as in Keras: ``Model(m.inputs, m.output)``
    is m's network on m's weights, ``Model(m.inputs, m.get_layer("h").output)`` a sub-model
    on them (loss None: predict gives h's outputs; fit's targets choose its loss), a new head on m's layers trains
    them with it unless frozen; only layers used for the first time are initialised from
    `seed`. On another device or dtype than those weights the model starts from copies.

    One training step::

        forward:   for node in order:            node.forward(its inputs' A)       -> A[node]
        loss:      loss_and_grad(A[out], T)                                         -> dA[out]
        backward:  for node in reversed order:   f' once where not fused;
                                                 node.backward(dA[node]) -> its dW, db and
                                                 the dA of its inputs (written, or added to)
        update:    one optimizer kernel over the flat parameter vector theta

    fit with plain SGD folds the update into backward where it can (_plain_sgd_fuses):
    each Dense node then adds -lr delta.T A straight into its W and b (Dense.backward_sgd).
    """

    def __init__(self, inputs: Union[Node, Sequence[Node]], outputs: Node,
                 loss: Optional[str] = None, optimizer: Optional[OptimizerLike] = None,
                 device: Device = "auto", dtype: DType = "float32",
                 seed: Optional[int] = None, label_smoothing: float = 0.0,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        g = self._graph = Graph(inputs, outputs)
        self.inputs = [g.nodes[i] for i in g.inputs]
        self.output = g.output
        self.layers = list(g.layers)
        for i, node in enumerate(g.nodes):
            if i != g.out and not node.is_input and node.layer.activation == "softmax":
                raise ValueError(f"layer {node.layer.name!r} has activation 'softmax', which only the "
                                 "output layer may have (fused into cross_entropy)")
        self._input_widths = tuple(n.width for n in self.inputs)
        self._input_names = tuple(n.name for n in self.inputs)
        self._output_layer, self._output_width = g.output.layer, g.output.width
        # layers that already have weights keep them: this model shares them (_Network's
        # _allocate_parameters); over a hidden layer of another model, predict gives its outputs
        made_by = self._output_layer._owner
        self._over_hidden = made_by is not None and made_by[0]._output_layer is not self._output_layer
        self._order = [i for i in range(len(g.nodes)) if not g.is_input(i)]
        self._sparse_first_layer = False  # graph models take dense input
        self._setup(loss, optimizer, device, dtype, seed, label_smoothing, reduction)
        where = {id(layer): l for l, layer in enumerate(self.layers)}
        self._node_slot = [None if n.is_input else self._slots[where[id(n.layer)]] for n in g.nodes]

    def _output_node_of(self, layer):
        """The node of this model's graph that `layer` outputs."""
        nodes = [n for n in self._graph.nodes if n.layer is layer]
        if len(nodes) != 1:
            raise ValueError(f"layer {layer.name!r} is called on {len(nodes)} nodes of this model "
                             "(shared weights), so it has several outputs: build a Model up to "
                             "the node you want")
        return nodes[0]

    def _set_loss(self, loss, label_smoothing=0.0):
        super()._set_loss(loss, label_smoothing)
        g = self._graph
        self._node_act = [IDENTITY if n.is_input else n.layer.act for n in g.nodes]
        self._plan = g.plan(self._node_act)

    def _check_X(self, X, name="X"):
        Xs = super()._check_X(X, name)
        if any(issparse(x) for x in Xs):
            raise TypeError(f"{name}: graph Models take dense arrays; got a SciPy sparse matrix "
                            "(use X.toarray(), or a Sequential / MLP without residual=True, which "
                            "multiplies it directly)")
        return Xs

    @property
    def sizes(self) -> list[int]:
        return [n.width for n in self._graph.nodes]

    # ------------------------------------------------------------------------------------
    # buffers: per node A (its output), Z (pre-activation, gelu), dA (d loss / d A, then its
    # delta once f' is applied) and the layer's scratch; shared and column views per the plan

    def _needs_Z(self, i):
        layer = self._graph.nodes[i].layer
        return isinstance(layer, (Dense, BatchNorm)) and self._node_act[i] in NEEDS_PREACTIVATION

    def _allocate_activations(self, capacity, training, sparse=False):
        k, dtype, g, p = self._kernels, self.dtype, self._graph, self._plan
        n = len(g.nodes)
        a = SimpleNamespace(A=[None] * n, Z=[None] * n, dA=[None] * n, scratch=[{} for _ in range(n)])

        def own_or_view(buffers, where, i):
            if where is None:
                return k.empty((capacity, g.width[i]), dtype)
            return buffers[where[0]][:, where[1] : where[1] + g.width[i]]

        for i in reversed(range(n)):  # a consumer's buffers before its producers' views of them
            a.A[i] = own_or_view(a.A, p.A_into[i], i)
            if self._needs_Z(i):
                a.Z[i] = k.empty((capacity, g.width[i]), dtype)
            if not training or g.is_input(i):
                continue
            share = p.dA_share[i]
            if share is not None and share[0] == "same":
                a.dA[i] = a.dA[share[1]]
            else:
                a.dA[i] = own_or_view(a.dA, None if share is None else share[1:], i)
            layer, ins = g.nodes[i].layer, g.ins[i]
            shapes = dict(layer.scratch_shapes(g.is_input(ins[0]))) if layer.n_inputs == 1 else {}
            if isinstance(layer, (Dropout, BatchNorm)) and "accumulate" in p.mode[i]:
                shapes["acc_delta"] = (True, (g.width[ins[0]],))
            if isinstance(layer, BatchNorm) and p.acc_grads[i]:
                shapes["acc_dgamma"] = shapes["acc_dbeta"] = (False, (g.width[i],))
            a.scratch[i] = {name: (per_row, k.empty((capacity,) + shape if per_row else shape, dtype))
                            for name, (per_row, shape) in shapes.items()}
        return a

    def _activation_views(self, a, n, v, training):
        g = self._graph
        v.A = [x[:n] for x in a.A]
        v.Z = [None if z is None else z[:n] for z in a.Z]
        v.D = [x if z is None else z for x, z in zip(v.A, v.Z)]  # what f' is computed from
        for i in self._order:  # an Activation's f' (gelu) is taken from its input
            if isinstance(g.nodes[i].layer, Activation) and self._node_act[i] in NEEDS_PREACTIVATION:
                v.D[i] = v.A[g.ins[i][0]]
        v.X = tuple(v.A[i] for i in g.inputs)
        v.out, v.D_out = v.A[g.out], v.D[g.out]
        v.cols = [self._columns(v.A, i) for i in range(len(g.nodes))]
        if training:
            v.dA = [None if x is None else x[:n] for x in a.dA]
            v.dout = v.dA[g.out]
            v.dcols = [self._columns(v.dA, i) for i in range(len(g.nodes))]
            v.s = [None if slot is None else
                   SimpleNamespace(**vars(slot), **{name: buf[:n] if per_row else buf
                                                    for name, (per_row, buf) in scratch.items()})
                   for slot, scratch in zip(self._node_slot, a.scratch)]
        else:
            v.s = ()

    def _inference_parameters(self, slots):
        where = {id(layer): l for l, layer in enumerate(self.layers)}
        return SimpleNamespace(node_slots=[None if n.is_input else slots[where[id(n.layer)]]
                                           for n in self._graph.nodes])

    def _columns(self, arrays, i):
        """A Concatenate's column views of arrays[i], one per input (None for other nodes)."""
        g = self._graph
        if not isinstance(g.nodes[i].layer, Concatenate):
            return None
        offsets = [0]
        for j in g.ins[i]:
            offsets.append(offsets[-1] + g.width[j])
        return [arrays[i][:, lo:hi] for lo, hi in zip(offsets, offsets[1:])]

    # ------------------------------------------------------------------------------------
    # the two passes over the graph

    def _forward(self, v, training, X0=None, params=None):
        """A of every node from the inputs' A; with `params` (a copy from
        _copy_parameters), inference on those weights instead of the model's own."""
        k, g = self._kernels, self._graph
        slots = v.s if training else self._node_slot if params is None else params.node_slots
        for i in self._order:
            layer, ins = g.nodes[i].layer, g.ins[i]
            if isinstance(layer, Add):
                layer.forward(k, [v.A[j] for j in ins], v.A[i])
            elif isinstance(layer, Concatenate):  # producers not writing in place are copied
                for j, cols in zip(ins, v.cols[i]):
                    if self._plan.A_into[j] is None:
                        k.activate(v.A[j], IDENTITY, cols)
            else:
                layer.forward(k, v.A[ins[0]], v.A[i], v.Z[i], slots[i], training)

    def _plain_sgd_fuses(self):
        """Whether fit may fold plain SGD's update into this graph's backward pass (each
        Dense node's weight-gradient GEMM adding -lr delta.T @ A straight into W, b; see
        Dense.backward_sgd): on the CPU, for graphs of Dense layers with a bias and Add
        nodes only, no layer used twice (its W must stay as it was until its last use's
        delta is made; a Concatenate's delta columns cannot be scaled in place). The
        optimizer's part is _fused_sgd_lr's."""
        g = self._graph
        return (self._kernels.name == "cpu" and not any(self._plan.acc_grads)
                and all(n.is_input or isinstance(n.layer, Add)
                        or (isinstance(n.layer, Dense) and n.layer.use_bias) for n in g.nodes))

    def _backward(self, v, X0=None, sgd_lr=None):
        """delta of every node, back from the output's; sgd_lr: plain SGD's learning rate
        when its update is folded in (_plain_sgd_fuses), else the gradients are written."""
        k, g, p = self._kernels, self._graph, self._plan
        for i in reversed(self._order):
            layer, ins, delta = g.nodes[i].layer, g.ins[i], v.dA[i]
            if p.apply_df[i]:  # f' once, after every consumer has added its part
                k.activation_backward(v.D[i], self._node_act[i], delta)
            if isinstance(layer, (Add, Concatenate)):  # delta (or its columns) to each input
                for slot, j in enumerate(ins):
                    part = delta if isinstance(layer, Add) else v.dcols[i][slot]
                    if p.mode[i][slot] == "write":
                        k.activate(part, IDENTITY, v.dA[j])
                    elif p.mode[i][slot] == "accumulate":
                        k.add(v.dA[j], part, v.dA[j])
                continue
            j, mode = ins[0], p.mode[i][0]
            if mode == "share":
                continue
            if sgd_lr is not None:  # a Dense layer (_plain_sgd_fuses), updated as it goes
                if mode == "skip":
                    layer.backward_sgd(k, delta, v.A[j], None, IDENTITY, None, v.s[i], sgd_lr)
                else:
                    layer.backward_sgd(k, delta, v.A[j], v.D[j],
                                       self._node_act[j] if p.fuse[i][0] else IDENTITY,
                                       v.dA[j], v.s[i], sgd_lr, mode == "accumulate")
            elif mode == "skip":  # the input is an Input: no delta to pass on
                layer.backward(k, delta, v.A[j], None, IDENTITY, None, v.s[i], p.acc_grads[i])
            else:
                layer.backward(k, delta, v.A[j], v.D[j], self._node_act[j] if p.fuse[i][0] else IDENTITY,
                               v.dA[j], v.s[i], p.acc_grads[i], mode == "accumulate")

    # ------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        g = self._graph
        where = {id(layer): l for l, layer in enumerate(self.layers)}
        nodes = [{"name": n.name, "layer": None if n.is_input else where[id(n.layer)],
                  "inputs": [g.nodes[j].name for j in g.ins[i]], "width": n.width}
                 for i, n in enumerate(g.nodes)]
        return {"layers": [{"type": type(layer).__name__, "name": layer.name, **layer.get_config()}
                           for layer in self.layers],
                "graph": {"inputs": list(self._input_names), "output": g.output.name, "nodes": nodes},
                **self._config_common()}

    def _summary_rows(self):
        g, seen = self._graph, set()
        for i, node in enumerate(g.nodes):
            params = 0
            if not node.is_input and id(node.layer) not in seen:
                seen.add(id(node.layer))
                params = sum(math.prod(s) for s in node.layer.param_shapes().values())
            yield node.name, node.kind, node.width, params, [g.nodes[j].name for j in g.ins[i]]

    def plot(self, path: Optional[PathLike] = None, ax: Any = None) -> Any:
        """Draw the graph (matplotlib, the ``plot`` extra): one box per node, in rows by
        depth, arrows along the edges. Saves to `path` when given; returns the figure."""
        from .plot import plot_graph

        return plot_graph(self, path, ax)

    def __repr__(self):
        loss = None if self._loss_pending else self.loss
        return (f"Model(inputs={list(self._input_names)}, output={self.output.name!r}, "
                f"nodes={len(self._graph.nodes)}, loss={loss!r}, device={self.device!r})")


def residual_mlp(sizes, activation="relu", output="identity", loss=None, optimizer=None,
                 device="auto", dtype="float32", seed=None, dropout=0.0, batch_norm=False,
                 label_smoothing=0.0, reduction="mean"):
    """``MLP(sizes, residual=True)``: MLP's layers, with h = h + block(h) around every hidden
    block (Dense [+ BatchNorm] [+ Dropout]) whose width equals the one before it."""
    from .model import mlp_layers

    layers = mlp_layers(sizes, activation, output, dropout, batch_norm)
    blocks = []
    for layer in layers:  # a block starts at each Dense
        if isinstance(layer, Dense):
            blocks.append([layer])
        else:
            blocks[-1].append(layer)
    x = h = Input(layers[0].in_features)
    skips = 0
    for block in blocks[:-1]:
        r = h
        for layer in block:
            r = layer(r)
        if r.width == h.width:
            h, skips = Add()([h, r]), skips + 1
        else:
            h = r
    if skips == 0:
        raise ValueError(f"residual=True needs a hidden layer as wide as the layer before it; "
                         f"got sizes {list(sizes)}")
    out = blocks[-1][0](h)
    return Model(x, out, loss=loss, optimizer=optimizer, device=device, dtype=dtype, seed=seed,
                 label_smoothing=label_smoothing, reduction=reduction)


__all__ = ["Input", "Node", "Graph", "Model", "Layer", "Add", "Concatenate", "Activation"]


def model_graph_from_config(layers, graph):
    """The Input nodes and the output node of a stored graph (format 3), rebuilt by calling
    the layers on the nodes in the stored order. Every edge must name a node defined before
    it (so no dangling or cyclic edges), every width must be what the layers compute."""
    from .io import _expect, _Invalid, _is_int

    _expect(isinstance(graph, dict), "config 'graph' must be an object")
    nodes, input_names, output = graph.get("nodes"), graph.get("inputs"), graph.get("output")
    _expect(isinstance(nodes, list) and nodes, "config graph 'nodes' must be a non-empty list")
    _expect(isinstance(input_names, list) and input_names and all(isinstance(n, str) for n in input_names),
            "config graph 'inputs' must be a list of node names")
    _expect(isinstance(output, str), "config graph 'output' must be a node name")
    built = {}
    for k, nd in enumerate(nodes):
        where = f"config graph nodes[{k}]"
        _expect(isinstance(nd, dict) and set(nd) == {"name", "layer", "inputs", "width"},
                f"{where} must be an object with keys name, layer, inputs, width")
        name, layer, ins, width = nd["name"], nd["layer"], nd["inputs"], nd["width"]
        _expect(isinstance(name, str) and name and name not in built,
                f"{where} has a missing or repeated name {name!r}")
        _expect(_is_int(width, 1), f"{where} ({name!r}) has the invalid width {width!r}")
        _expect(isinstance(ins, list) and all(isinstance(n, str) for n in ins),
                f"{where} ({name!r}): 'inputs' must be a list of node names")
        if layer is None:
            _expect(not ins, f"{where}: the Input {name!r} cannot have inputs")
            node = Input(width, name=name)
        else:
            _expect(_is_int(layer) and layer < len(layers),
                    f"{where} ({name!r}) names the layer {layer!r}; there are {len(layers)}")
            for n in ins:
                _expect(n in built, f"{where} ({name!r}) takes the node {n!r}, which is not defined "
                                    "before it (a dangling or cyclic edge)")
            args = [built[n] for n in ins]
            try:
                node = layers[layer](args[0] if len(args) == 1 and layers[layer].n_inputs == 1 else args)
            except (TypeError, ValueError) as exc:
                raise _Invalid(f"{where} ({name!r}) is invalid: {exc}") from None
            _expect(node.width == width, f"{where} ({name!r}) has width {node.width} from its layer; "
                                         f"the file says {width}")
            node = Node(node.layer, node.inputs, node.width, name)
        built[name] = node
    for n in input_names:
        _expect(n in built and built[n].is_input, f"config graph 'inputs' names {n!r}, which is not an Input node")
    _expect(output in built, f"config graph 'output' names {output!r}, which is not a node")
    return [built[n] for n in input_names], built[output]
