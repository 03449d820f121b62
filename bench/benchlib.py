"""The workloads the benchmark suite and ``bench/epoch.py`` time, in one place.

- the machine's ceiling: float32 GEMM (2048 x 2048 NumPy matmul) in GFLOP/s;
- one training epoch of the MNIST network for fastmlp, a hand-written NumPy MLP and PyTorch;
- the FLOP count of an epoch (the products a training step really computes) and the memory
  budget.

Nothing here imports torch at module level: PyTorch is optional (``torch_or_none``).
"""

import importlib
import os

import numpy as np

#: the network of the README and the benchmarks: MNIST 784-256-128-10, ReLU, softmax cross-entropy
SIZES = [784, 256, 128, 10]
#: MNIST's training set size
N_MNIST = 60000
#: plain SGD learning rate of the epoch benchmarks
LR = 0.01

# the suite's settings (bench/conftest.py documents the environment variables)
SMOKE = os.environ.get("FASTMLP_BENCH_SMOKE", "").strip() not in ("", "0")
#: samples of the epoch benchmarks: MNIST's 60000, or 512 in a smoke run
N = 512 if SMOKE else N_MNIST
#: the batch sizes every per-batch group is measured at
BATCHES = (32, 128, 512)
#: interleaved rounds of the whole-epoch benchmarks (bench/test_bench_epoch.py)
EPOCH_ROUNDS = 1 if SMOKE else int(os.environ.get("FASTMLP_BENCH_ROUNDS", "7"))


def min_time(benchmark):
    """Fastest round of a finished pytest-benchmark run, or None (--benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.min


def n_parameters(sizes=SIZES):
    """Weights and biases of the MLP with these layer sizes."""
    return sum(o * i + o for i, o in zip(sizes, sizes[1:]))


def sample_flop(sizes=SIZES):
    """FLOP of one training sample: the products a step really computes.

    Per layer l with weights W (out x in): forward Z = A W^T (2 in out), weight gradient
    dW = delta^T A (2 in out), and the input gradient delta W (2 in out) for every layer
    but the first (nobody computes d loss / d X). 784-256-128-10: 1.007 MFLOP per sample.
    Element-wise work (bias, activation, loss, update) is not counted: it is memory-bound.
    """
    from fastmlp.profile import step_flop  # the one definition of the count

    return step_flop(sizes, 1)


def epoch_flop(n_samples, sizes=SIZES):
    """FLOP of one epoch: sample_flop x samples (60.4 GFLOP for MNIST's 60000)."""
    return sample_flop(sizes) * n_samples


def make_data(n=N_MNIST, sizes=SIZES, seed=0):
    """MNIST-shaped random data: X float32 (n, 784) in [0, 1), y int64 labels in 0..9.

    The time of an epoch does not depend on the values.
    """
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], n)
    return X, y


def gemm_gflops(n=2048, repeat=5):
    """The machine's float32 matrix-product rate: best of `repeat` n x n NumPy matmuls (the
    measurement model.profile uses, at the suite's size)."""
    from fastmlp.profile import sgemm_gflops

    return sgemm_gflops(n, repeat)


def optional_module(name):
    """The module `name` (a peer: "torch", "jax"), or None when it is not installed or is
    hidden with FASTMLP_BENCH_NO_<NAME>=1."""
    if os.environ.get(f"FASTMLP_BENCH_NO_{name.upper()}", "").strip() not in ("", "0"):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def jax_or_none():
    """The jax module, or None when it is not installed (or hidden with FASTMLP_BENCH_NO_JAX=1)."""
    return optional_module("jax")


def torch_or_none():
    """The torch module, or None when it is not installed (or hidden with FASTMLP_BENCH_NO_TORCH=1)."""
    return optional_module("torch")


# ---------------------------------------------------------------------------------------
# one epoch, three ways. Each contender is an object built once (weights, optimizer,
# compiled kernels) whose `epoch(X, y, batch)` runs one full pass over the data: shuffle,
# then forward, softmax cross-entropy, backward and an SGD update per mini-batch.


class FastmlpMLP:
    """fastmlp's MLP trained with `fit` (the user's API), kernels compiled in __init__."""

    name = "fastmlp"

    def __init__(self, batch=None, sizes=SIZES, lr=LR, device="cpu", seed=0):
        import fastmlp

        self.model = fastmlp.MLP(sizes, optimizer=fastmlp.SGD(lr=lr), device=device, seed=seed)
        if batch is not None:  # compile the kernels, allocate the buffers
            X, y = make_data(4 * batch, sizes, seed=1)
            self.model.fit(X, y, epochs=1, batch_size=batch, verbose=0)

    def epoch(self, X, y, batch):
        self.model.fit(X, y, epochs=1, batch_size=batch, verbose=0)

    def predict(self, X, batch_size=1024):
        return self.model.predict(X, batch_size=batch_size)


class NumpyMLP:
    """The MLP as a student writes it in NumPy: forward, softmax-CE, backward, SGD
    (fastmlp/_numpy_mlp.py, the copy `fastmlp bench` runs too)."""

    name = "numpy"

    def __init__(self, batch=None, sizes=SIZES, lr=LR, seed=0):
        from fastmlp._numpy_mlp import sgd_epoch  # here: importing benchlib imports no fastmlp

        self._sgd_epoch = sgd_epoch
        self.rng = np.random.default_rng(seed)
        self.lr = np.float32(lr)
        self.W = [self.rng.normal(0, np.sqrt(2 / i), (o, i)).astype(np.float32)
                  for i, o in zip(sizes, sizes[1:])]
        self.b = [np.zeros(o, np.float32) for o in sizes[1:]]

    def epoch(self, X, y, batch):
        self._sgd_epoch(self.W, self.b, X, y, batch, self.lr, order=self.rng.permutation(len(X)))

    def predict(self, X, batch_size=1024):
        batch = batch_size
        out = np.empty(len(X), np.int64)
        for start in range(0, len(X), batch):
            A = X[start : start + batch]
            for l in range(len(self.W)):
                A = A @ self.W[l].T + self.b[l]
                if l < len(self.W) - 1:
                    A = np.maximum(A, 0)
            out[start : start + batch] = A.argmax(axis=1)
        return out


class TorchMLP:
    """The same network and update in PyTorch (CPU): nn.Linear + ReLU, CrossEntropyLoss, SGD."""

    name = "torch"

    def __init__(self, batch=None, sizes=SIZES, lr=LR, seed=0):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers.append(torch.nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        if batch is not None:  # warm up the allocator and the kernels
            X, y = make_data(4 * batch, sizes, seed=1)
            self.epoch(X, y, batch)

    def epoch(self, X, y, batch):
        torch = self.torch
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        order = torch.randperm(len(X))
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            self.opt.zero_grad()
            self.loss_fn(self.net(Xt[idx]), yt[idx]).backward()
            self.opt.step()

    def predict(self, X, batch_size=1024):
        batch = batch_size
        torch = self.torch
        out = []
        with torch.inference_mode():
            Xt = torch.from_numpy(X)
            for start in range(0, len(X), batch):
                out.append(self.net(Xt[start : start + batch]).argmax(dim=1))
        return torch.cat(out).numpy()


class JaxMLP:
    """The same network and update in JAX as its users write it: parameters a pytree of
    (W, b) pairs, the whole step (gather, forward, loss, grad, SGD) one `jax.jit` function,
    the parameters' buffers donated to the update, data on the device once."""

    name = "jax"

    def __init__(self, batch=None, sizes=SIZES, lr=LR, seed=0):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.rng = np.random.default_rng(seed)
        keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
        self.params = [(jax.random.normal(k, (n_out, n_in), jnp.float32) * np.sqrt(2 / n_in),
                        jnp.zeros(n_out, jnp.float32))
                       for k, n_in, n_out in zip(keys, sizes, sizes[1:])]

        def loss(params, xb, yb):
            A = xb
            for W, b in params[:-1]:
                A = jax.nn.relu(A @ W.T + b)
            W, b = params[-1]
            logp = jax.nn.log_softmax(A @ W.T + b)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        def step(params, X, y, idx):
            grads = jax.grad(loss)(params, X[idx], y[idx])
            return jax.tree.map(lambda p, g: p - lr * g, params, grads)

        self.step = jax.jit(step, donate_argnums=0)
        self._data = (None, None, None)
        if batch is not None:  # compile the step for this batch size
            X, y = make_data(4 * batch, sizes, seed=1)
            self.epoch(X, y, batch)

    def _on_device(self, X, y):
        if self._data[0] is not X:  # once per data set, as a user would
            self._data = (X, self.jnp.asarray(X), self.jnp.asarray(y.astype(np.int32)))
        return self._data[1:]

    def epoch(self, X, y, batch):
        Xd, yd = self._on_device(X, y)
        order = self.rng.permutation(len(X)).astype(np.int32)
        params = self.params
        for start in range(0, len(X), batch):
            params = self.step(params, Xd, yd, order[start : start + batch])
        self.params = self.jax.block_until_ready(params)

    def predict(self, X, batch_size=1024):
        jnp = self.jnp
        out = []
        for start in range(0, len(X), batch_size):
            A = jnp.asarray(X[start : start + batch_size])
            for W, b in self.params[:-1]:
                A = self.jax.nn.relu(A @ W.T + b)
            W, b = self.params[-1]
            out.append(np.asarray((A @ W.T + b).argmax(axis=1)))
        return np.concatenate(out)


CONTENDERS = {"fastmlp": FastmlpMLP, "numpy": NumpyMLP, "torch": TorchMLP, "jax": JaxMLP}


def schedule(names, batches=BATCHES, rounds=EPOCH_ROUNDS):
    """pytest params (batch, round, contender) in run order: rounds interleaved, the order
    of the contenders rotating per round (so none always runs first)."""
    import pytest

    params = []
    for batch in batches:
        for r in range(rounds):
            k = r % len(names)
            for contender in names[k:] + names[:k]:
                params.append(pytest.param(batch, r, contender, id=f"{batch}-r{r}-{contender}"))
    return params


def memory_budget(data_bytes, n_params, n_state):
    """The peak-memory budget of training: data + 2 x (parameters + optimizer state) + 64 MiB.

    n_params and n_state count float32 elements (optimizer state: e.g. one momentum buffer
    of n_params for SGD with momentum).
    """
    return data_bytes + 2 * 4 * (n_params + n_state) + 64 * 2**20
