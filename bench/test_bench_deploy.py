"""Deployment: fastmlp's own inference against onnxruntime running the model's ONNX export
(group ``deploy``).

The 784-256-128-10 ReLU network, exported with ``model.to_onnx``; both sides compute the
class probabilities (``predict_proba``; the ONNX graph ends in Softmax) of one batch of
1 or 1024 samples per call, in the same run. onnxruntime runs with its default session
options (CPU execution provider, all graph optimisations, one intra-op thread per core).
Targets: fastmlp at least as fast as onnxruntime at batch 1024, and its batch-1 latency
within 2x of onnxruntime's. Skipped cleanly without onnx / onnxruntime.
"""

import pytest

from benchlib import SIZES, make_data, min_time

BATCHES = (1, 1024)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(fastmlp model, onnxruntime session) of the same weights."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastmlp

    model = fastmlp.MLP(SIZES, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("deploy") / "mlp.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, session


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("contender", ["fastmlp", "onnxruntime"])
def test_deploy(benchmark, exported, contender, batch):
    model, session = exported
    X, _ = make_data(batch, seed=3)
    if contender == "fastmlp":
        run, args = model.predict_proba, (X,)
    else:
        run, args = session.run, (None, {"input": X})
    run(*args)  # compile / allocate / warm up
    benchmark.group = "deploy"
    benchmark.extra_info.update(kind="deploy", contender=contender, batch=batch)
    benchmark(run, *args)
    t = min_time(benchmark)
    if t:
        benchmark.extra_info["samples_per_s"] = batch / t
