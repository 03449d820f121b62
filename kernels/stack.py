"""A Dense layer over one backend's single-layer kernels, and the two layer loops of a stack
of them: the one definition that fastmlp.layers.Dense (the per-layer path of any model) and
the stack loops both call.

The loops are the definition of the contract's ``mlp_forward`` / ``mlp_backward``: the reference
backend runs it as it is; the CPU backend runs the same loop compiled (calling BLAS from
Numba) and falls back to this one without a BLAS it can reach; the CUDA backend fuses the
layers of narrow networks and falls back to this one for wide networks. ``k`` is the
backend module whose kernels are called.
"""

from .codes import IDENTITY, NEEDS_PREACTIVATION


def dense_forward(k, A_in, W, b, act, A_out, Z=None):
    """One Dense layer: A_out = f(A_in @ W.T + b). With Z given (the activations in
    NEEDS_PREACTIVATION), Z keeps the pre-activation A_in @ W.T + b for f'."""
    if Z is None:
        k.linear_forward(A_in, W, b, act, A_out)
    else:
        k.linear_forward(A_in, W, b, IDENTITY, Z)
        k.activate(Z, act, A_out)


def dense_backward(k, delta, A_in, W, dW, db, D_prev, act_prev, delta_prev,
                   acc_grads=False, acc_delta=False):
    """One Dense layer backward: dW = delta.T @ A_in, db = sum(delta) and, unless
    delta_prev is None (the first layer), delta_prev = f'_prev(D_prev) * (delta @ W).
    acc_grads adds to dW, db (a shared layer's later use); acc_delta adds to delta_prev (a
    producer feeding several consumers): both GEMMs with beta = 1."""
    k.weight_grad(delta, A_in, dW, db, acc_grads)
    if delta_prev is not None:
        k.delta_backward(delta, W, D_prev, act_prev, delta_prev, acc_delta)


def dense_backward_sgd(k, delta, A_in, W, b, lr, D_prev, act_prev, delta_prev, acc_delta=False):
    """One Dense layer's backward pass and plain SGD's step (no momentum, no weight decay) in
    one: delta_prev from the old W as dense_backward computes it, then delta *= -lr in place
    and the weight-gradient GEMM adds straight into the parameters, W += (-lr delta).T @ A_in,
    b += sum(-lr delta) (beta = 1). No dW is written and no update pass reads it back; the
    rounding differs from dW, then W -= lr dW, in the last bits."""
    if delta_prev is not None:
        k.delta_backward(delta, W, D_prev, act_prev, delta_prev, acc_delta)
    k.scale(delta.reshape(-1), -lr)
    k.weight_grad(delta, A_in, W, b, True)


def forward(k, A, D, W, b, acts):
    """for l in 0..L-1: A[l+1] = f_l(A[l] @ W[l].T + b[l]); D[l+1] gets Z where f' needs it."""
    for l in range(len(W)):
        Z = D[l + 1] if acts[l] in NEEDS_PREACTIVATION else None
        dense_forward(k, A[l], W[l], b[l], acts[l], A[l + 1], Z)


def backward(k, delta, A, D, W, dW, db, acts):
    """for l = L-1..0: dW[l], db[l] = weight_grad(delta[l], A[l]) and, for l > 0,
    delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l])."""
    for l in reversed(range(len(W))):
        if l > 0:
            dense_backward(k, delta[l], A[l], W[l], dW[l], db[l], D[l], acts[l - 1], delta[l - 1])
        else:
            dense_backward(k, delta[l], A[l], W[l], dW[l], db[l], None, IDENTITY, None)
