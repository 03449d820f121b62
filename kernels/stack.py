"""The two layer loops of a stack of Dense layers, over one backend's single-layer kernels.

This is the definition of the contract's ``mlp_forward`` / ``mlp_backward``: the reference
backend runs it as it is; the CPU backend runs the same loop compiled (calling BLAS from
Numba) and falls back to this one without a BLAS it can reach; the CUDA backend fuses the
layers of narrow networks and falls back to this one for wide networks. ``k`` is the
backend module whose kernels are called.
"""

from .codes import IDENTITY, NEEDS_PREACTIVATION


def forward(k, A, D, W, b, acts):
    """for l in 0..L-1: A[l+1] = f_l(A[l] @ W[l].T + b[l]); D[l+1] gets Z where f' needs it."""
    for l in range(len(W)):
        if acts[l] in NEEDS_PREACTIVATION:
            k.linear_forward(A[l], W[l], b[l], IDENTITY, D[l + 1])
            k.activate(D[l + 1], acts[l], A[l + 1])
        else:
            k.linear_forward(A[l], W[l], b[l], acts[l], A[l + 1])


def backward(k, delta, A, D, W, dW, db, acts):
    """for l = L-1..0: dW[l], db[l] = weight_grad(delta[l], A[l]) and, for l > 0,
    delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l])."""
    for l in reversed(range(len(W))):
        k.weight_grad(delta[l], A[l], dW[l], db[l])
        if l > 0:
            k.delta_backward(delta[l], W[l], D[l], acts[l - 1], delta[l - 1])
