"""One training epoch of the MNIST network, fastmlp next to NumPy and PyTorch, in one run.

    python bench/epoch.py [--batch 32 128 512] [--repeat 3]

Data: MNIST-shaped random data (60000 x 784 float32, 10 classes): the time of an epoch does
not depend on the values. Network 784-256-128-10, ReLU, softmax cross-entropy, plain SGD
(lr 0.01). Each contender runs `repeat` epochs; the best is reported, with GFLOP/s counted
as 6 x parameters x samples and as a fraction of the machine's float32 GEMM rate
(2048 x 2048 NumPy matmul), measured in the same run.
"""

import argparse
import platform
import time

import numpy as np

import fastmlp

SIZES = [784, 256, 128, 10]
N = 60000


def gemm_gflops(n=2048, repeat=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.matmul(a, a, out=c)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def fastmlp_epoch(X, y, batch):
    model = fastmlp.MLP(SIZES, optimizer=fastmlp.SGD(lr=0.01), seed=0)
    model.fit(X[: batch * 4], y[: batch * 4], epochs=1, batch_size=batch, verbose=0)  # compile
    t = time.perf_counter()
    model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
    return time.perf_counter() - t


def numpy_epoch(X, y, batch, lr=0.01):
    """The MLP as a student writes it in NumPy: forward, softmax-CE, backward, SGD."""
    rng = np.random.default_rng(0)
    W = [rng.normal(0, np.sqrt(2 / i), (o, i)).astype(np.float32) for i, o in zip(SIZES, SIZES[1:])]
    b = [np.zeros(o, np.float32) for o in SIZES[1:]]
    order = rng.permutation(len(X))
    t = time.perf_counter()
    for start in range(0, len(X), batch):
        idx = order[start : start + batch]
        A = [X[idx]]
        for l in range(3):
            Z = A[l] @ W[l].T + b[l]
            A.append(np.maximum(Z, 0) if l < 2 else Z)
        Z = A[3] - A[3].max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(len(idx)), y[idx]] -= 1
        delta = P / len(idx)
        for l in reversed(range(3)):
            dW, db = delta.T @ A[l], delta.sum(axis=0)
            if l > 0:
                delta = (delta @ W[l]) * (A[l] > 0)
            W[l] -= lr * dW
            b[l] -= lr * db
    return time.perf_counter() - t


def torch_epoch(X, y, batch):
    import torch

    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    t = time.perf_counter()
    order = torch.randperm(len(X))
    for start in range(0, len(X), batch):
        idx = order[start : start + batch]
        opt.zero_grad()
        loss_fn(net(Xt[idx]), yt[idx]).backward()
        opt.step()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((N, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], N)
    contenders = {"fastmlp": fastmlp_epoch, "numpy": numpy_epoch}
    try:
        import torch

        contenders["torch"] = torch_epoch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    params = sum(o * i + o for i, o in zip(SIZES, SIZES[1:]))
    flop = 6 * params * N
    ceiling = gemm_gflops()
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}, "
          f"torch {torch_version}; float32 GEMM ceiling {ceiling:.1f} GFLOP/s")
    print("| batch | " + " | ".join(contenders) + " | fastmlp vs numpy | fastmlp vs torch |")
    for batch in args.batch:
        best = {name: min(f(X, y, batch) for _ in range(args.repeat)) for name, f in contenders.items()}
        cells = [f"{t:.3f} s ({flop / t / 1e9:.0f} GFLOP/s, {flop / t / 1e9 / ceiling:.0%})" for t in best.values()]
        ratios = [f"{best['numpy'] / best['fastmlp']:.2f}x"]
        ratios.append(f"{best['torch'] / best['fastmlp']:.2f}x" if "torch" in best else "-")
        print(f"| {batch} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
