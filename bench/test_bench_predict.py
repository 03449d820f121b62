"""Inference throughput: predict() of 10000 MNIST-shaped samples at batch 1024 (group ``predict``).

fastmlp's `model.predict` next to the same forward pass in NumPy and PyTorch (inference mode).
"""

import pytest

from benchlib import CONTENDERS, SMOKE, make_data, min_time

N_PREDICT = 512 if SMOKE else 10000
BATCH = 1024


@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_predict(benchmark, request, contender):
    if contender == "torch":
        request.getfixturevalue("torch")  # skips cleanly without PyTorch
    X, _ = make_data(N_PREDICT, seed=2)
    model = CONTENDERS[contender]()
    model.predict(X, batch_size=BATCH)  # compile, allocate
    benchmark.group = "predict"
    benchmark.extra_info.update(kind="predict", contender=contender, batch=BATCH, samples=len(X))
    benchmark(model.predict, X, batch_size=BATCH)
    t = min_time(benchmark)
    if t:
        benchmark.extra_info["samples_per_s"] = len(X) / t
