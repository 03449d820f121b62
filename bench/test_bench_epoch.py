"""Whole training: one epoch of MNIST-shaped data, fastmlp vs hand-written NumPy, PyTorch, JAX.

Network 784-256-128-10, ReLU, softmax cross-entropy, plain SGD (lr 0.01), float32; groups
``epoch batch=B``. Every contender is built and warmed up once (kernels compiled, buffers
allocated) outside the clock and reused; each benchmark is one full epoch, shuffle included.

The rounds are interleaved: round r runs one epoch of every contender back to back (in an
order that rotates with r), then round r + 1 follows, so that a slow spell of a shared
machine hits all contenders alike. bench/report.py takes each contender's fastest round and
also the median over rounds of the per-round ratio. The GEMM ceiling is measured in the
same process (group ``ceiling``).
"""

import numpy as np
import pytest

from benchlib import CONTENDERS, SMOKE, epoch_flop, min_time, n_parameters, schedule

NAMES = list(CONTENDERS)


def test_gemm_ceiling(benchmark, ceiling):
    """The machine's float32 GEMM rate: NumPy matmul of two 2048 x 2048 matrices."""
    n = 256 if SMOKE else 2048
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    benchmark.group = "ceiling"
    benchmark.extra_info.update(kind="ceiling", n=n, flop=2 * n**3)
    benchmark(np.matmul, a, a, out=c)
    t = min_time(benchmark)
    if t:
        ceiling.best = max(ceiling.best, 2 * n**3 / t / 1e9)
    benchmark.extra_info["gflops"] = ceiling.best


def test_gemm_torch(benchmark, torch):
    """For reference: PyTorch's own float32 GEMM rate (torch.mm, its BLAS), same shape."""
    n = 256 if SMOKE else 2048
    a = torch.rand(n, n)
    c = torch.empty(n, n)
    benchmark.group = "ceiling"
    benchmark.extra_info.update(kind="gemm torch", n=n, flop=2 * n**3)
    benchmark(torch.mm, a, a, out=c)
    t = min_time(benchmark)
    if t:
        benchmark.extra_info["gflops"] = 2 * n**3 / t / 1e9




_models = {}


@pytest.mark.parametrize("batch, round_, contender", schedule(NAMES))
def test_epoch(benchmark, request, data, ceiling, batch, round_, contender):
    if contender in ("torch", "jax"):
        request.getfixturevalue(contender)  # skips cleanly without PyTorch / JAX
    X, y = data
    key = (batch, contender)
    if key not in _models:
        for old in [k for k in _models if k[0] != batch]:  # done with that batch size
            del _models[old]
        _models[key] = CONTENDERS[contender](batch)
    if round_ == 0 and contender == NAMES[0]:
        ceiling.measure()  # once more per batch size, under the load of this part of the run
    model = _models[key]
    flop = epoch_flop(len(X))
    benchmark.group = f"epoch batch={batch}"
    benchmark.extra_info.update(kind="epoch", contender=contender, batch=batch, round=round_,
                                samples=len(X), parameters=n_parameters(), flop=flop)
    benchmark.pedantic(model.epoch, args=(X, y, batch), rounds=1, warmup_rounds=0)
    t = min_time(benchmark)
    if t:
        gflops = flop / t / 1e9
        benchmark.extra_info.update(gflops=gflops, ceiling_gflops=ceiling.best,
                                    fraction_of_ceiling=gflops / ceiling.best)
