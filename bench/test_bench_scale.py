"""Speed at both ends of the scale: a small network (overhead-bound) and a wide one (GEMM-bound).

- ``small network``: 32-64-64-64-2 at batch 64, ReLU, softmax cross-entropy, plain SGD. The
  arithmetic is ~20 µs a step; what is measured is everything around it. Reported as time per
  training step (an epoch of `STEPS` steps divided by `STEPS`).
- ``wide network``: 1024-4096-4096-10 at batch 256: ~30 GFLOP a step, reported as a fraction
  of the physical limit (the step's products, bench/benchlib.sample_flop, at the sgemm rate
  measured in the same process).

Contenders: fastmlp's `fit`, JAX with the whole step under `jax.jit`, PyTorch eager (each
skipped cleanly when absent), built and warmed up once, rounds interleaved with a rotating
order as in bench/test_bench_epoch.py, so that a slow spell of the shared machine hits all
of them alike; bench/report.py takes the fastest round and the median per-round ratio.
"""

import pytest

from benchlib import CONTENDERS, EPOCH_ROUNDS, SMOKE, epoch_flop, make_data, min_time

PEERS = ["fastmlp", "jax", "torch"]

#: group -> (layer sizes, batch, steps per timed epoch)
NETWORKS = {
    "small network": ([32, 64, 64, 64, 2], 64, 4 if SMOKE else 300),
    "wide network": ([64, 256, 256, 10] if SMOKE else [1024, 4096, 4096, 10], 256, 1 if SMOKE else 3),
}
ROUNDS = 1 if SMOKE else max(3, EPOCH_ROUNDS)


def _schedule():
    for group in NETWORKS:
        for r in range(ROUNDS):
            k = r % len(PEERS)
            for contender in PEERS[k:] + PEERS[:k]:
                yield pytest.param(group, r, contender, id=f"{group.split()[0]}-r{r}-{contender}")


_models = {}
_data = {}


@pytest.mark.parametrize("group, round_, contender", list(_schedule()))
def test_scale(benchmark, request, ceiling, group, round_, contender):
    if contender != "fastmlp":
        request.getfixturevalue(contender)  # skips cleanly without PyTorch / JAX
    sizes, batch, steps = NETWORKS[group]
    if group not in _data:
        _data.clear()
        _models.clear()
        _data[group] = make_data(batch * steps, sizes, seed=2)
        if group == "wide network":
            ceiling.measure()  # under the load of this part of the run
    key = (group, contender)
    if key not in _models:
        _models[key] = CONTENDERS[contender](batch, sizes=sizes)
    X, y = _data[group]
    flop = epoch_flop(len(X), sizes)
    benchmark.group = group
    benchmark.extra_info.update(kind=group, contender=contender, round=round_, sizes=sizes,
                                batch=batch, steps=steps, flop=flop)
    benchmark.pedantic(_models[key].epoch, args=(X, y, batch), rounds=1, warmup_rounds=0)
    t = min_time(benchmark)
    if t:
        benchmark.extra_info.update(step_s=t / steps, gflops=flop / t / 1e9,
                                    ceiling_gflops=ceiling.best,
                                    fraction_of_ceiling=flop / t / 1e9 / ceiling.best)
