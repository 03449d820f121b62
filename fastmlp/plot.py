"""Drawing a graph model with matplotlib (the ``plot`` extra): ``model.plot("model.png")``.

The layout: one box per node, in rows by depth (the longest path from an input), the
members of a row side by side. An edge between neighbouring rows is a straight arrow. An
edge that skips rows (a residual connection: ``Add()([h, f(h)])``) would run straight
through the boxes between its ends, so it is drawn as a bracket to the side instead, with
rounded corners, far enough out to clear every box it passes.
"""

FONT_SIZE = 8  # points
LANE = 10  # points: from the boxes a skip edge passes to its side line; between two such lines
ROUND = 6  # points: the radius of a skip edge's corners


def _label(node):
    activation = getattr(node.layer, "activation", "identity")
    kind = node.kind + (f" ({activation})" if activation != "identity" else "")
    return f"{node.name}\n{kind}\n{node.width}"


def _layout(g):
    """Each node's depth and position (x: its place in its row, centred; y: minus depth)."""
    depth = [0] * len(g.nodes)
    for i in range(len(g.nodes)):  # topological order: inputs' depths are known
        depth[i] = max((depth[j] + 1 for j in g.ins[i]), default=0)
    rows = {}
    for i, d in enumerate(depth):
        rows.setdefault(d, []).append(i)
    pos = {}
    for d, members in rows.items():
        for k, i in enumerate(members):
            pos[i] = (k - (len(members) - 1) / 2, -d)
    return depth, rows, pos


def _skip_routes(skips, depth, pos):
    """For each skip edge (j, i): the side it goes round on (+1 right, -1 left: away from
    the middle), the nodes whose boxes it must clear (its ends, and those in the rows
    between in its column(s)), and its lane: 1, or one more than the lanes of the skip edges
    already on that side over an overlapping range of rows (shorter edges go inside)."""
    routes, taken = {}, []  # taken: (side, first row, last row, lane)
    for j, i in sorted(skips, key=lambda e: depth[e[1]] - depth[e[0]]):
        lo, hi = depth[j], depth[i]
        x_lo, x_hi = sorted((pos[j][0], pos[i][0]))
        side = 1 if x_lo + x_hi >= 0 else -1
        passed = [n for n in pos if lo <= depth[n] <= hi
                  and x_lo - 0.5 <= pos[n][0] <= x_hi + 0.5]
        lane = 1 + max((t_lane for t_side, t_lo, t_hi, t_lane in taken
                        if t_side == side and t_lo < hi and lo < t_hi), default=0)
        taken.append((side, lo, hi, lane))
        routes[j, i] = side, passed, lane
    return routes


def _bracket_style(fig, boxes, side, lane):
    """A connection style (matplotlib's "arc", decided at draw time, in display units) for
    a skip edge: out of the source box sideways, along a line `lane` LANEs beyond every box
    in `boxes` (their outlines as drawn: the boxes are drawn before the arrows), and back
    into the target box, with an arrow. It leaves the source below its centre and enters
    the target above it, so that the skip edges of a chain of residual blocks stay apart."""
    from matplotlib.patches import ConnectionStyle

    class Bracket(ConnectionStyle.Arc):
        def connect(self, posA, posB):
            points = fig.dpi / 72  # display units per point, at this drawing
            extents = [box.get_window_extent() for box in boxes]
            edge = max(e.x1 for e in extents) if side > 0 else min(e.x0 for e in extents)
            line = edge + side * lane * LANE * points
            (xa, ya), (xb, yb) = posA, posB
            # outer lanes further from the centre: two skip edges into one box stay apart
            shift = min(0.04 + 0.18 * lane, 0.42) * min(extents[0].height, extents[1].height)
            posA, posB = (xa, ya - shift), (xb, yb + shift)
            self.armA, self.armB = abs(line - xa), abs(line - xb)
            self.rad = ROUND * points
            return super().connect(posA, posB)

    angle = 0 if side > 0 else 180
    return Bracket(angleA=angle, angleB=angle)


def plot_graph(model, path=None, ax=None):
    """One box per node (name, type, width), placed in rows by depth, an arrow per edge
    (skip connections as brackets to the side: see the module's docstring); saved to `path`
    when given. Returns the figure. The arrows carry labels ``"edge: a -> b"`` or
    ``"skip: a -> b"`` (node names) for whoever inspects the figure."""
    try:
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.patches import FancyArrowPatch
    except ImportError:
        raise ImportError("model.plot needs matplotlib: pip install 'fastmlp[plot]'") from None
    g = model._graph
    depth, rows, pos = _layout(g)
    if ax is None:
        width = max(len(m) for m in rows.values())
        fig, ax = plt.subplots(figsize=(max(4, 2.6 * width), max(3, 1.1 * len(rows))))
    else:
        fig = ax.figure

    # the boxes first: the arrows are clipped to their outlines (patchA / patchB), and are
    # drawn after them (a higher zorder), when the outlines have their places
    boxes = []
    for i, node in enumerate(g.nodes):
        color = "#cde" if node.is_input else "#fdb" if i == g.out else "#eee"
        text = ax.text(*pos[i], _label(node), ha="center", va="center", fontsize=FONT_SIZE,
                       zorder=3, bbox=dict(boxstyle="round", fc=color, ec="0.3"))
        boxes.append(text.get_bbox_patch())

    edges = [(j, i) for i, ins in enumerate(g.ins) for j in ins]
    skips = [(j, i) for j, i in edges if depth[i] - depth[j] > 1]  # rows between its ends
    routes = _skip_routes(skips, depth, pos)
    for j, i in edges:
        name = f"{g.nodes[j].name} -> {g.nodes[i].name}"
        if (j, i) in routes:
            side, passed, lane = routes[j, i]
            style = _bracket_style(fig, [boxes[j], boxes[i]] + [boxes[n] for n in passed], side,
                                   lane)
            color, label = "tab:blue", "skip: " + name
        else:
            style, color, label = "arc3", "0.4", "edge: " + name
        ax.add_patch(FancyArrowPatch(pos[j], pos[i], arrowstyle="-|>", mutation_scale=10,
                                     connectionstyle=style, patchA=boxes[j], patchB=boxes[i],
                                     shrinkA=1, shrinkB=1, color=color, lw=1.1, zorder=4,
                                     clip_on=False, label=label))
    xs = [p[0] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(-max(depth) - 0.7, 0.7)
    ax.axis("off")
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=120)
    return fig
