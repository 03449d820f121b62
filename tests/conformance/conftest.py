"""The ``backend`` fixture: every test here runs once per backend this process compares with
the NumPy reference (helpers.BACKENDS: "reference" and "cpu" in the ordinary run, "cuda" in
the CUDA simulator's process that tests/test_cuda_simulator.py starts)."""

import pytest

from helpers import BACKENDS, Backend


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request):
    return Backend(request.param)


#: test_cpu_paths.py (BLAS called from the CPU's compiled code, and the switch that turns it
#: off) runs where the CPU backend is under test: not in the CUDA simulator's process
collect_ignore = [] if "cpu" in BACKENDS else ["test_cpu_paths.py"]
