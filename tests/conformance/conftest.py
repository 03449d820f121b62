"""The ``backend`` fixture: every test here runs once per backend this process compares with
the NumPy reference (helpers.BACKENDS: "reference" and "cpu" in the ordinary run, "cuda" in
the CUDA simulator's process that tests/test_cuda_simulator.py starts)."""

import pytest

from helpers import BACKENDS, Backend


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request):
    return Backend(request.param)

#: the CPU backend's own paths (its BLAS, its Python fallback) are tested where it is under test
collect_ignore = [] if "cpu" in BACKENDS else ["test_cpu_paths.py"]
