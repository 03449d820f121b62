"""Host (Python) time per training step of the CUDA path, launcher mocked (no GPU needed):
see bench/cuda_host.py. Group ``cuda host``; each benchmark's extra_info holds the network,
the batch and the launches per step.

Needs numba-cuda (not the simulator: the real CUDA path is what is timed); skipped
without it.
"""

import importlib.util

import pytest

import cuda_host
from benchlib import SMOKE

if importlib.util.find_spec("numba_cuda") is None:
    pytest.skip("numba-cuda is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def mocked():
    from fastmlp.kernels import cuda as kc

    if kc.SIM:
        pytest.skip("under the CUDA simulator: the mocked launcher times the real CUDA path")
    with cuda_host.mocked_cuda() as launches:
        yield launches


@pytest.mark.parametrize("network", cuda_host.NETWORKS, ids=lambda n: n[0].split()[0])
@pytest.mark.parametrize("what", ["step", "fit"])
def test_host_time_per_step(benchmark, mocked, network, what):
    name, sizes, batch, steps = network
    case = cuda_host.StepCase(sizes, batch, 4 if SMOKE else steps, mocked)
    benchmark.group = "cuda host"
    benchmark.extra_info.update(kind="cuda host", network=name, batch=batch, what=what,
                                launches=case.launches_per_step())
    if what == "step":
        benchmark(case.step)
    else:  # one epoch; the per-step time is the median gap between steps
        timer = cuda_host._StepTimer()
        benchmark.pedantic(case.epoch, args=(1, [timer]), rounds=1 if SMOKE else 5)
        benchmark.extra_info["us_per_step"] = float(cuda_host.np.median(timer.gaps)) * 1e6
