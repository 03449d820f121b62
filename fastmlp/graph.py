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

from .layers import Activation, Add, BatchNorm, Concatenate, Dense, Dropout, Layer, _unique_name

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


def Input(width=None, name=None, *, shape=None):
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
    return Node(layer, nodes, width, layer.name if uses == 0 else f"{layer.name}[{uses}]")


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


__all__ = ["Input", "Node", "Graph", "Layer", "Add", "Concatenate", "Activation"]
