"""Shared set-up of the benchmark suite (``pytest bench/``; not collected by plain ``pytest``).

Environment:
    FASTMLP_BENCH_SMOKE=1      tiny data (512 samples) and one round everywhere: checks that
                               the suite runs, measures nothing (tests/test_bench_smoke.py)
    FASTMLP_BENCH_NO_TORCH=1   behave as if PyTorch were not installed
    FASTMLP_BENCH_NO_JAX=1     behave as if JAX were not installed
    FASTMLP_BENCH_ROUNDS=k     interleaved rounds of the epoch benchmarks (default 7)

Benchmark groups (``--benchmark-group-by=group``, the default) and what ``bench/report.py``
makes of them: ``ceiling``, ``epoch batch=B``, ``small network``, ``wide network``, ``kernels batch=B``, ``kernels optimizer``,
``predict``, ``cold start``, ``memory``, ``mnist recipe``.
"""

import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

from benchlib import EPOCH_ROUNDS, N, SMOKE  # noqa: E402


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The SIMD extensions that matter for float32 kernels, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(f for f in ("avx2", "fma", "avx512f") if f in have)
    except OSError:
        pass
    return ""


def blas_name():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informative only
        name = "?"
    from fastmlp.kernels.blas import openblas_core

    core, pinned = openblas_core(), os.environ.get("OPENBLAS_CORETYPE")
    if core:  # the kernel set decides the product rate (AVX2 vs AVX-512: up to 2x)
        name += f", {core} kernels" + (f" (OPENBLAS_CORETYPE={pinned})" if pinned else "")
    return name


def pytest_benchmark_update_machine_info(config, machine_info):
    import numba

    torch = benchlib.torch_or_none()
    machine_info["fastmlp_bench"] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_name(),
        "numba": numba.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "jax": getattr(benchlib.jax_or_none(), "__version__", None),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "smoke": SMOKE,
        "samples": N,
        "epoch_rounds": EPOCH_ROUNDS,
    }


@pytest.fixture(scope="session")
def data():
    """MNIST-shaped random training data (N x 784 float32, labels 0..9)."""
    return benchlib.make_data(N)


class Ceiling:
    """The machine's float32 GEMM rate; the best seen in this session is the ceiling."""

    def __init__(self):
        self.best = 0.0

    def measure(self, repeat=3):
        n = 256 if SMOKE else 2048
        self.best = max(self.best, benchlib.gemm_gflops(n, 1 if SMOKE else repeat))
        return self.best


@pytest.fixture(scope="session")
def ceiling():
    c = Ceiling()
    c.measure(repeat=5)
    return c


def _installed_or_skip(module, name):
    """The peer's module, or a clean skip of the benchmark when it is not installed."""
    if module is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[bench]')")
    return module


@pytest.fixture
def torch():
    """PyTorch, or a clean skip when it is not installed."""
    return _installed_or_skip(benchlib.torch_or_none(), "PyTorch")


@pytest.fixture
def jax():
    """JAX, or a clean skip when it is not installed."""
    return _installed_or_skip(benchlib.jax_or_none(), "JAX")
