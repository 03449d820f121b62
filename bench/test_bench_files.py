"""Files (group ``files``): save, load, ONNX export and import of a trained model.

The README's 784-256-128-10 network (0.24 M parameters, 0.9 MB) and the wide
1024-4096-4096-10 one (21 M parameters, 84 MB), with Adam's state, float32. Loading checks
every size a file declares before it reads anything (docs/reliability.md): this group shows
what that costs. ``python bench/files_ab.py OLD_TREE`` times the same operations on another
checkout in the same run, interleaved, and prints the ratios.
"""

import pytest

from benchlib import SIZES, SMOKE

NETWORKS = {"mnist": SIZES, "wide": [1024, 512, 512, 10] if SMOKE else [1024, 4096, 4096, 10]}


@pytest.fixture(scope="module", params=list(NETWORKS))
def saved(request, tmp_path_factory):
    import fastmlp

    name = request.param
    model = fastmlp.MLP(NETWORKS[name], loss="cross_entropy", optimizer="adam", device="cpu",
                        seed=0)
    folder = tmp_path_factory.mktemp(f"files-{name}")
    model.save(folder / "m.npz")
    return name, model, folder


@pytest.mark.parametrize("operation", ["save", "load", "to_onnx", "from_onnx"])
def test_files(benchmark, saved, operation):
    import fastmlp

    name, model, folder = saved
    if operation in ("to_onnx", "from_onnx"):
        pytest.importorskip("onnx")
    if operation == "from_onnx":
        model.to_onnx(folder / "m.onnx")
    run = {"save": lambda: model.save(folder / "again.npz"),
           "load": lambda: fastmlp.load(folder / "m.npz", device="cpu"),
           "to_onnx": lambda: model.to_onnx(folder / "again.onnx"),
           "from_onnx": lambda: fastmlp.from_onnx(folder / "m.onnx", device="cpu")}[operation]
    run()  # warm up
    benchmark.group = f"files-{name}"
    benchmark.extra_info.update(kind="files", network=name, operation=operation)
    benchmark.pedantic(run, rounds=3 if SMOKE else 7, iterations=1)
