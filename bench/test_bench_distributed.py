"""Data parallel over MPI on this machine (group ``distributed``; skipped without MNIST,
mpi4py or mpiexec): one MNIST epoch (784-256-128-10, float32, global batch 128) with
1 process x 2 threads and with 2 processes x 1 thread (batch 64 each), in the same run; the
Allreduce of the 0.94 MB gradient against the step time; the all-reduce overlapped with
backward (Iallreduce per bucket). The numbers go to extra_info; docs/distributed.md
projects them to clusters."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchlib import SMOKE
from fastmlp._download import local_copy

HERE = Path(__file__).resolve().parent
#: MNIST: $FASTMLP_DATA/mnist when it holds the four files, else ../shared/datasets/mnist
SHARED_MNIST = HERE.parents[0] / ".." / "shared" / "datasets" / "mnist"
MNIST = Path(local_copy("mnist", SHARED_MNIST) or SHARED_MNIST)
sys.path.insert(0, str(HERE.parents[0] / "tests"))


def _run(cmd, env):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_distributed_epoch(benchmark):
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in $FASTMLP_DATA/mnist nor in {MNIST}: put its files there")
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed: pip install 'fastmlp[distributed]'")
    from test_distributed import find_mpiexec

    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec beside this Python nor on PATH")
    script = str(HERE / "mpi_epoch.py")
    extra = [str(MNIST)] + (["1024"] if SMOKE else [])
    base = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    two_threads = dict(base, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    result = {}

    def run():
        result["single"] = _run([sys.executable, script, "single", *extra], two_threads)
        # 2 processes: fastmlp gives each cores / 2 = 1 thread (nothing set by the user)
        result["mpi"] = _run([mpiexec, "-n", "2", sys.executable, script, "mpi", *extra], base)

    benchmark.group = "distributed"
    benchmark.pedantic(run, rounds=1)
    one, two = result["single"], result["mpi"]
    benchmark.extra_info.update(
        kind="distributed", single=one, mpi=two,
        speedup_2proc=one["epoch_s"] / two["epoch_s"],
        allreduce_over_step=two["allreduce_s"] / two["step_s"],
        overlap_over_plain=two["epoch_overlap_s"] / two["epoch_s"])
    print(json.dumps(benchmark.extra_info))
