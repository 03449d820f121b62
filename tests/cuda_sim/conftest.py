"""CUDA-only tests (the module, memory, the fused MLP kernels, models and transfers on the
CUDA backend) under numba-cuda's simulator: collected only in a process that has
NUMBA_ENABLE_CUDASIM=1 set before numba was imported (tests/test_cuda_simulator.py starts
such a process from the normal test run, see tests/conftest.py); elsewhere this folder is
skipped whole. What every backend must compute alike is in tests/conformance/."""

from helpers import SIMULATED

if not SIMULATED:
    collect_ignore_glob = ["test_*.py"]
