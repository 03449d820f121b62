"""Kernel level: every kernel of a training step, fastmlp-cpu (Numba + BLAS) vs the NumPy reference.

Shapes are those of the MNIST network 784-256-128-10 (float32) at batch 32, 128 and 512
(groups ``kernels batch=B``); each benchmark is the kernel's share of one training step:

- matmul: the three forward products A[l] @ W[l].T (trans_b=True);
- linear_forward <act>: the three fused layers A[l+1] = f(A[l] @ W[l].T + b[l]), f = act;
- softmax_cross_entropy: loss and dZ of the (B, 10) logits, integer labels;
- delta_backward: the two hidden deltas, (B,10)@(10,128) and (B,128)@(128,256), relu's f';
- weight_grad: dW, db of the three layers;
- mlp_forward relu / mlp_backward relu: the whole forward pass (relu, relu, identity), and
  the whole backward pass from the output delta, as the one call each a training step makes.

The optimizer updates do not depend on the batch: group ``kernels optimizer``, one update of
the flat parameter vector of the whole network (235146 float32): SGD with momentum 0.9, Adam.
"""

import numpy as np
import pytest

from benchlib import BATCHES, SIZES, n_parameters

import fastmlp
from fastmlp.kernels import ACTIVATIONS

BACKENDS = ("cpu", "reference")
KERNELS = (["matmul"] + [f"linear_forward {a}" for a in ACTIVATIONS]
           + ["softmax_cross_entropy", "delta_backward", "weight_grad", "mlp_forward relu",
              "mlp_backward relu"])
RELU = ACTIVATIONS["relu"]


def _network(batch, seed=0):
    """Weights, activations, deltas and gradients of the MNIST network at this batch size."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    W = [rng.normal(0, np.sqrt(2 / i), (o, i)).astype(f32) for i, o in zip(SIZES, SIZES[1:])]
    b = [rng.normal(0, 0.1, o).astype(f32) for o in SIZES[1:]]
    A = [rng.random((batch, s), dtype=f32) for s in SIZES]  # nonnegative: "after relu"
    delta = [rng.normal(0, 0.01, (batch, s)).astype(f32) for s in SIZES[1:]]
    dW = [np.empty_like(w) for w in W]
    db = [np.empty_like(v) for v in b]
    labels = rng.integers(0, SIZES[-1], batch)
    return W, b, A, delta, dW, db, labels


def make_kernel_call(kernel, k, batch):
    """A no-argument callable running `kernel` of backend module `k` at this batch size."""
    W, b, A, delta, dW, db, labels = _network(batch)
    L = len(W)
    if kernel == "matmul":
        def run():
            for l in range(L):
                k.matmul(A[l], W[l], A[l + 1], False, True)
    elif kernel.startswith("linear_forward"):
        act = ACTIVATIONS[kernel.split()[1]]

        def run():
            for l in range(L):
                k.linear_forward(A[l], W[l], b[l], act, A[l + 1])
    elif kernel == "softmax_cross_entropy":
        Z = np.random.default_rng(1).normal(0, 3, (batch, SIZES[-1])).astype(np.float32)
        dZ = np.empty_like(Z)

        def run():
            k.softmax_cross_entropy(Z, labels, dZ)
    elif kernel == "delta_backward":
        def run():
            for l in reversed(range(1, L)):
                k.delta_backward(delta[l], W[l], A[l], RELU, delta[l - 1])
    elif kernel == "weight_grad":
        def run():
            for l in range(L):
                k.weight_grad(delta[l], A[l], dW[l], db[l])
    elif kernel.startswith("mlp_"):
        A, W, b, delta, dW, db = tuple(A), tuple(W), tuple(b), tuple(delta), tuple(dW), tuple(db)
        acts = (RELU,) * (L - 1) + (ACTIVATIONS["identity"],)

        def run():
            if kernel == "mlp_forward relu":
                k.mlp_forward(A, A, W, b, acts)  # no gelu: D is A
            else:
                k.mlp_backward(delta, A, A, W, dW, db, acts)
    else:
        raise ValueError(kernel)
    return run


def make_optimizer_call(update, k):
    """One update of the whole network's flat parameter vector (float32)."""
    rng = np.random.default_rng(0)
    P = n_parameters()
    p = rng.normal(0, 0.05, P).astype(np.float32)
    g = rng.normal(0, 0.01, P).astype(np.float32)
    if update == "sgd_update momentum":
        buf = np.zeros_like(p)
        return lambda: k.sgd_update(p, g, buf, 0.01, 0.9, 0.0, False)
    if update == "adam_update":
        m, v = np.zeros_like(p), np.zeros_like(p)
        return lambda: k.adam_update(p, g, m, v, 10, 1e-3, 0.9, 0.999, 1e-8, 0.0, True)
    raise ValueError(update)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("batch", BATCHES)
def test_kernel(benchmark, batch, kernel, backend):
    run = make_kernel_call(kernel, fastmlp.kernels.backend(backend), batch)
    run()  # compile (cpu) and warm the caches outside the clock
    benchmark.group = f"kernels batch={batch}"
    benchmark.extra_info.update(kind="kernel", kernel=kernel, backend=backend, batch=batch)
    benchmark(run)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("update", ["sgd_update momentum", "adam_update"])
def test_optimizer(benchmark, update, backend):
    run = make_optimizer_call(update, fastmlp.kernels.backend(backend))
    run()
    benchmark.group = "kernels optimizer"
    benchmark.extra_info.update(kind="kernel", kernel=update, backend=backend,
                                parameters=n_parameters())
    benchmark(run)
