"""What model.plot and History.plot draw (matplotlib, the plot extra): skip connections
drawn round the boxes they pass, not through them; whole epochs on the x-axes."""

import pytest

import fastmlp as fm
from _shared_graphs import dropout_batchnorm, residual

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.transforms import Bbox  # noqa: E402  (after importorskip)


def _drawn(model, tmp_path):
    """The figure of model.plot, saved and drawn: (axes, {node name: its box's outline in
    data coordinates}, {arrow label: the arrow's path in data coordinates})."""
    fig = model.plot(tmp_path / "model.png")
    assert (tmp_path / "model.png").stat().st_size > 1000
    fig.canvas.draw()
    ax = fig.axes[0]
    to_data = ax.transData.inverted()
    boxes = {text.get_text().split("\n")[0]: text.get_bbox_patch().get_window_extent()
             .transformed(to_data) for text in ax.texts}
    arrows = {patch.get_label(): patch.get_path() for patch in ax.patches}
    matplotlib.pyplot.close(fig)
    return ax, boxes, arrows


def _skips_clear_the_boxes(model, boxes, arrows):
    """Every skip edge's path misses the boxes of the nodes in the rows between its ends
    (their centres among them); returns how many skip edges there are."""
    g = model._graph
    names = [node.name for node in g.nodes]
    skips = [label for label in arrows if label.startswith("skip: ")]
    for label in skips:
        source, target = label[len("skip: "):].split(" -> ")
        y_top, y_bottom = boxes[source].y0, boxes[target].y1
        between = [n for n in names if y_bottom < boxes[n].y0 and boxes[n].y1 < y_top]
        assert between, label  # a skip edge has rows between its ends
        path = arrows[label]
        for n in between:
            box = Bbox(boxes[n].get_points())
            assert not path.intersects_bbox(box, filled=False), (label, n)  # no line crosses it
            inside = [box.contains(*xy) for poly in path.to_polygons(closed_only=False)
                      for xy in poly]
            assert not any(inside), (label, n)  # nor runs inside it
    return len(skips)


def test_a_skip_connection_goes_round_the_box_between(tmp_path):
    """x -> dense -> dense -> add(dense, dense): the edge from the first dense to the add
    passes the second dense; a straight arrow would run through its box."""
    x, out = residual()
    model = fm.Model(x, out)
    _, boxes, arrows = _drawn(model, tmp_path)
    assert _skips_clear_the_boxes(model, boxes, arrows) == 1
    edges = sum(len(ins) for ins in model._graph.ins)
    assert len(arrows) == edges  # one arrow per edge, the skip edge among them
    (skip,) = [path for label, path in arrows.items() if label.startswith("skip: ")]
    side = max(xy[0] for poly in skip.to_polygons(closed_only=False) for xy in poly)
    assert side > max(b.x1 for b in boxes.values())  # out to the side of the one column


def test_skip_connections_of_a_residual_mlp_and_of_nested_skips(tmp_path):
    model = fm.MLP([6, 8, 8, 8, 3], residual=True)
    _, boxes, arrows = _drawn(model, tmp_path)
    assert _skips_clear_the_boxes(model, boxes, arrows) == 2
    x, out = dropout_batchnorm()  # two skip edges into one Add, over overlapping rows
    model = fm.Model(x, out)
    _, boxes, arrows = _drawn(model, tmp_path)
    assert _skips_clear_the_boxes(model, boxes, arrows) == 2
    lines = sorted(max(xy[0] for poly in path.to_polygons(closed_only=False) for xy in poly)
                   for label, path in arrows.items() if label.startswith("skip: "))
    assert lines[1] > lines[0]  # the longer one outside the shorter


def test_a_plain_chain_has_no_skip_edges(tmp_path):
    _, boxes, arrows = _drawn(fm.MLP([4, 3, 2]), tmp_path)
    assert len(boxes) == 3
    assert len(arrows) == 2 and all(label.startswith("edge: ") for label in arrows)


def test_history_plots_whole_epochs(tmp_path):
    history = fm.History()
    history.on_train_begin()
    for epoch in range(3):  # 1, 2, 3 on the axis; matplotlib's default puts 1.25, 1.5...
        history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 1.1 / (epoch + 1),
                                     "accuracy": 0.5, "lr": 0.1})
    history.history["grad_norm/dense"] = [1.0, 0.5, 0.25]
    fig = history.plot(tmp_path / "curves.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "gradient norm per layer"]
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(t == int(t) for t in ticks), ticks
