"""A small network's fit with its batches whole, as two halves on two threads, or as both halves
on one thread (kernels/cpu_split.py), in one run: the measurement behind fastmlp/_fast_fit.py's
SPLIT_ROWS and its choice between the two ways.

    python bench/split.py [--sizes 20 64 64 3] [--batch 200] [--dtype float64]
                          [--optimizer adam] [--rounds 3]

Random data (--rows rows, as many classes as the last size); each way is warmed up once,
then the rounds run the three ways interleaved, one epoch each, and print microseconds a
step. The halves run whatever SPLIT_ROWS says (this script lowers it to the batch's half),
"whole" is what a one-core machine runs.
"""

import argparse
import gc
import time

import numpy as np

import fastmlp as fm
from fastmlp import _fast_fit

WAYS = ("whole", "two threads", "one thread")


def per_step(way, sizes, X, y, batch, dtype, optimizer):
    n = len(X)
    cores, use_split = _fast_fit._cores, _fast_fit._Plan._use_split
    if way == "whole":
        _fast_fit._cores = lambda: 1
    else:
        two = way == "two threads"
        _fast_fit._Plan._use_split = lambda self, halves: (two, False)
    opt = fm.Adam(1e-3) if optimizer == "adam" else fm.SGD(0.01)
    model = fm.MLP(sizes, optimizer=opt, device="cpu", dtype=dtype, seed=0)
    try:
        t = time.perf_counter()
        model.fit(X, y, batch_size=batch, epochs=1, verbose=0)
        return (time.perf_counter() - t) / (n // batch) * 1e6
    finally:
        _fast_fit._cores, _fast_fit._Plan._use_split = cores, use_split


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 64, 64, 3])
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rows", type=int, default=65536)
    a = p.parse_args(argv)
    if a.batch % 2:
        p.error(f"--batch must be even to split in halves, got {a.batch}")
    _fast_fit.SPLIT_ROWS = min(_fast_fit.SPLIT_ROWS, a.batch // 2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.rows, a.sizes[0])).astype(a.dtype)
    y = rng.integers(0, a.sizes[-1], a.rows)
    args = (a.sizes, X, y, a.batch, a.dtype, a.optimizer)
    for way in WAYS:
        per_step(way, *args)  # compile, start the helper thread
    gc.collect()  # the compiler's garbage: its collection took ~0.1 s inside a timed fit
    print(f"{'-'.join(map(str, a.sizes))}, batch {a.batch}, {a.dtype}, {a.optimizer}: "
          f"µs a step")
    for r in range(a.rounds):
        print(f"round {r + 1}: " + ", ".join(f"{w} {per_step(w, *args):.1f}" for w in WAYS))


if __name__ == "__main__":
    main()
