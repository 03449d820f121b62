"""bench/gpu.py --smoke: the GPU benchmark runs end to end at tiny sizes under numba-cuda's
simulator (no GPU, no PyTorch-CUDA), so that it never rots before a GPU runs it. It measures
nothing; it checks that every row of the table is there and filled for fastmlp."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_run():
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    assert "CUDA simulator" in out and "PyTorch with CUDA: not available" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "case" not in line]
    kinds = ["epoch ", "step ", "train ", "float32 GEMM"]
    assert [next(k for k in kinds if r[2:].startswith(k)) for r in rows] == \
        ["epoch ", "step ", "train ", "float32 GEMM"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] != "-", row  # fastmlp measured
    train = next(r for r in rows if r[2:].startswith("train "))
    assert [c.strip() for c in train.strip("|").split("|")][2] != "-"  # the per-layer path too


def test_gpu_benchmark_without_a_gpu_says_so():
    """Without --smoke on a machine with no GPU: exit 2 and the reason, no traceback."""
    if importlib.util.find_spec("numba_cuda") is not None:
        from fastmlp.kernels import cuda as kc

        if kc.why_unavailable() is None and not kc.SIM:
            pytest.skip("this machine has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--skip-tests"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no GPU to benchmark" in proc.stderr and "Traceback" not in proc.stderr
