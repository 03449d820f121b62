"""One MNIST-shaped epoch (784-256-128-10 relu, float32, SGD momentum, global batch 128) in
one process or as one process of ``mpiexec -n P``; prints one JSON line (rank 0).

    python bench/mpi_epoch.py single            # one process, the threads it is given
    mpiexec -n 2 python bench/mpi_epoch.py mpi  # P processes, batch 128 / P each

In "mpi" mode it also times the Allreduce of the gradient buffer (0.94 MB in float32)
alone, and the epoch with the all-reduce overlapped with backward (Iallreduce per bucket).
Data: MNIST from $FASTMLP_DATA/mnist, else ../shared/datasets/mnist (beside the checkout), or
the path in argv[2].
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

import fastmlp
from fastmlp import distributed
from fastmlp._download import local_copy
from fastmlp.datasets import load_idx

SIZES = [784, 256, 128, 10]
GLOBAL_BATCH = 128
#: MNIST: $FASTMLP_DATA/mnist when it holds the four files, else ../shared/datasets/mnist
SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist"
MNIST = Path(local_copy("mnist", SHARED_MNIST) or SHARED_MNIST)


def new_model():
    return fastmlp.MLP(SIZES, optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), seed=0, device="cpu")


def epoch_seconds(X, y, batch, dist, repeat=2):
    model = new_model()
    model.fit(X[:8 * GLOBAL_BATCH], y[:8 * GLOBAL_BATCH], epochs=1, batch_size=batch, verbose=0,
              distributed=dist)  # compile, buffers
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch, verbose=0, distributed=dist)
        best = min(best, time.perf_counter() - start)
    return best


def allreduce_seconds(n_params, repeat=50):
    MPI = distributed._mpi()
    comm = MPI.COMM_WORLD
    buf = np.ones(n_params, np.float32)
    times = []
    for _ in range(repeat):
        comm.Barrier()
        start = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    mode = sys.argv[1]
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else MNIST
    X, y = load_idx(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    if len(sys.argv) > 3:
        X, y = X[: int(sys.argv[3])], y[: int(sys.argv[3])]
    steps = -(-len(X) // GLOBAL_BATCH)
    if mode == "single":
        t = epoch_seconds(X, y, GLOBAL_BATCH, None)
        out = {"processes": 1, "epoch_s": t, "step_s": t / steps}
    else:
        P = distributed.size()
        batch = GLOBAL_BATCH // P
        t = epoch_seconds(X, y, batch, "mpi")
        t_overlap = epoch_seconds(X, y, batch, distributed.MPI(overlap=True))
        n_params = new_model().n_parameters
        out = {"processes": P, "epoch_s": t, "step_s": t / steps, "epoch_overlap_s": t_overlap,
               "allreduce_s": allreduce_seconds(n_params), "gradient_bytes": 4 * n_params}
    out["samples"] = len(X)
    if mode == "single" or distributed.rank() == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
