"""fastmlp's compute kernels, one module per backend, all with the same functions.

``backend(device)`` returns the module for ``"cpu"`` (Numba), ``"reference"`` (NumPy, the
oracle of the tests) or ``"auto"``. The CUDA backend (``"cuda"``) is not part of this
release yet; asking for it raises a RuntimeError, and ``"auto"`` gives the CPU.

The contract every backend module fulfils (outputs are written into the arrays passed in):

==================================================  ===========================================
``matmul(A, B, C, trans_a, trans_b)``               C = op(A) @ op(B)
``linear_forward(A_in, W, b, act, A_out)``          A_out = f(A_in @ W.T + b)
``activate(Z, act, A)``                             A = f(Z)
``softmax(Z, P)``                                   P = softmax(Z) by rows
``softmax_cross_entropy(Z, T, dZ) -> loss``         T labels (B,) or targets (B, K)
``sigmoid_binary_cross_entropy(Z, T, dZ) -> loss``  mean over elements
``mse(Z, T, dZ) -> loss``                           mean over elements
``delta_backward(delta, W, A_prev, act, out)``      out = f'(A_prev) * (delta @ W)
``activation_backward(A, act, delta)``              delta *= f'(A)
``weight_grad(delta, A_prev, dW, db)``              dW = delta.T @ A_prev, db = sum(delta)
``sgd_update(p, g, buf, lr, momentum, wd, nest)``   torch.optim.SGD, in place
``adam_update(p, g, m, v, step, lr, b1, b2, eps,    torch.optim.Adam / AdamW, in place
wd, decoupled)``
``gather_rows(X, idx, out)``                        out = X[idx] (cast)
``count_correct(Z, y) -> int``                      right classifications in a batch
==================================================  ===========================================

The optimizer kernels take flat, contiguous 1-D arrays (a model keeps all its parameters,
gradients and optimizer state in such arrays, so one call updates everything).
"""

import importlib

from .codes import ACTIVATIONS, activation_code  # noqa: F401

DEVICES = ("auto", "cpu", "cuda", "reference")


def backend(device="auto"):
    """The kernel module for `device`: "auto", "cpu", "cuda" or "reference"."""
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string, one of {list(DEVICES)}; got {device!r} "
            f"of type {type(device).__name__}"
        )
    name = device.strip().lower()
    if name not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if name == "cuda":
        raise RuntimeError(
            "device='cuda' is not available: this fastmlp release has no CUDA backend yet; "
            "use device='cpu' (or 'auto', which picks the CPU)"
        )
    if name == "auto":
        name = "cpu"
    return importlib.import_module(f"{__name__}.{name}")
