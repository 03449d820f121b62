"""One training epoch of the MNIST network, fastmlp next to NumPy, PyTorch and JAX, in one run.

    python bench/epoch.py [--batch 32 128 512] [--repeat 3]

A quick stand-alone version of the suite's epoch group (``pytest bench/ -k epoch``; the full
suite and ``bench/report.py`` make the README's tables). Same workloads (bench/benchlib.py):
MNIST-shaped random data (60000 x 784 float32, 10 classes), network 784-256-128-10, ReLU,
softmax cross-entropy, plain SGD (lr 0.01). Each contender is built and warmed up once, then
runs `repeat` epochs; the best is reported, with GFLOP/s counted from the products a step
really computes (forward and weight gradient of every layer, input gradient of every layer but
the first: 1.007 MFLOP per sample, 60.4 GFLOP per epoch; benchlib.sample_flop) and as a fraction of the machine's float32 GEMM rate (2048 x 2048 NumPy matmul), measured in
the same run.
"""

import argparse
import platform
import time

import numpy as np

from benchlib import CONTENDERS, N_MNIST, epoch_flop, gemm_gflops, jax_or_none, make_data, torch_or_none


def best_epoch(contender, X, y, batch, repeat):
    model = CONTENDERS[contender](batch)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        model.epoch(X, y, batch)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    X, y = make_data(N_MNIST)
    torch = torch_or_none()
    jax = jax_or_none()
    contenders = ["fastmlp", "numpy"] + (["torch"] if torch is not None else [])
    contenders += ["jax"] if jax is not None else []
    flop = epoch_flop(N_MNIST)
    ceiling = gemm_gflops()
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else None}, jax {jax.__version__ if jax else None}; float32 GEMM ceiling {ceiling:.1f} GFLOP/s")
    print("| batch | " + " | ".join(contenders) + " | fastmlp vs numpy | fastmlp vs torch | fastmlp vs jax |")
    for batch in args.batch:
        best = {name: best_epoch(name, X, y, batch, args.repeat) for name in contenders}
        cells = [f"{t:.3f} s ({flop / t / 1e9:.0f} GFLOP/s, {flop / t / 1e9 / ceiling:.0%})"
                 for t in best.values()]
        ratios = [f"{best['numpy'] / best['fastmlp']:.2f}x"]
        for peer in ("torch", "jax"):
            ratios.append(f"{best[peer] / best['fastmlp']:.2f}x" if peer in best else "-")
        print(f"| {batch} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
