"""Runs tests/conformance with backend "cuda" (every CUDA kernel against the NumPy reference)
and tests/cuda_sim (what only CUDA has) under numba-cuda's CUDA simulator, in a separate
pytest process: the simulator must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba is
imported, which this process has done already."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_kernels_under_the_simulator():
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda)")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() == "1":
        pytest.skip("this run is under the simulator already: the CUDA tests run in it")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/conformance", "tests/cuda_sim"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    summary = proc.stdout.strip().splitlines()[-1:] or [""]
    print(f"tests/conformance and tests/cuda_sim under the CUDA simulator: {summary[0]}")
    assert proc.returncode == 0, (
        f"the CUDA tests failed under the CUDA simulator (exit {proc.returncode}):\n"
        f"{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    )
