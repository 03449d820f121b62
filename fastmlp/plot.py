"""Drawing a graph model with matplotlib (the ``plot`` extra): ``model.plot("model.png")``."""


def plot_graph(model, path=None, ax=None):
    """One box per node (name, type, width), placed in rows by depth (the longest path from
    an input), an arrow per edge; saved to `path` when given. Returns the figure."""
    try:
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("model.plot needs matplotlib: pip install 'fastmlp[plot]'") from None
    g = model._graph
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
    if ax is None:
        width = max(len(m) for m in rows.values())
        fig, ax = plt.subplots(figsize=(max(4, 2.6 * width), max(3, 1.1 * len(rows))))
    else:
        fig = ax.figure
    for i, ins in enumerate(g.ins):
        for j in ins:
            ax.annotate("", xy=pos[i], xytext=pos[j],
                        arrowprops=dict(arrowstyle="->", color="0.4", shrinkA=14, shrinkB=14))
    for i, node in enumerate(g.nodes):
        label = f"{node.name}\n{node.kind}" + (f" ({node.layer.activation})" if getattr(
            node.layer, "activation", "identity") != "identity" else "") + f"\n{node.width}"
        color = "#cde" if node.is_input else "#fdb" if i == g.out else "#eee"
        ax.text(*pos[i], label, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc=color, ec="0.3"))
    xs = [p[0] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(-max(depth) - 0.7, 0.7)
    ax.axis("off")
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=120)
    return fig
