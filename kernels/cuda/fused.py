"""``mlp_forward`` / ``mlp_backward``: a stack of Dense layers, fully fused for narrow
networks, else the per-layer kernels."""

import functools
import sys
import weakref

import numpy as np

from .. import stack
from ..codes import NEEDS_PREACTIVATION
from .device import THREADS, _SMALL, _launch, _reshape, activations, cuda, numba
from .gemm import weight_grad

# ---------------------------------------------------------------------------------------
# a stack of Dense layers in one call each way (contract: see reference.mlp_forward)
#
# For a narrow network the forward pass and the backward pass's delta chain each run in ONE
# launch, in the spirit of tiny-cuda-nn's FullyFusedMLP (without its tensor cores): a block
# takes a few rows of the batch through every layer, and each layer's output for those rows
# stays in shared memory for the next one. Wider networks take the per-layer tiled GEMMs.

#: widest layer (after the input) the fused kernels take: a block keeps its rows of every
#: layer's output in shared memory
FUSED_MAX_WIDTH = 32 if _SMALL else 256
#: widest input the fused training kernels take: their first layer reads its input row by
#: row from global memory with a few blocks only, which a wide input (MNIST's 784) makes
#: slower than the tiled GEMM it replaces (an estimate: no GPU has measured it yet)
FUSED_MAX_INPUT = 64 if _SMALL else 256
#: rows of the batch per block in the fused kernels (fewer where two shared buffers of that
#: many rows would pass FUSED_SHARED_BYTES, as float64 at width 256)
FUSED_ROWS = 4 if _SMALL else 16
#: the static shared memory one block may use (CUDA's limit without opting in to more)
FUSED_SHARED_BYTES = 48 * 1024


def _pitch(sizes):
    """The row pitch of the shared buffers: the widest layer rounded up to an odd number,
    so that the threads of a warp, reading one column of consecutive rows, hit distinct
    banks."""
    return max(sizes[1:]) | 1


def _fused_rows(dt, sizes):
    """Rows per block of the fused kernels for the network `sizes`: FUSED_ROWS, halved until
    the two (rows, widest + 1) shared buffers fit in FUSED_SHARED_BYTES."""
    width = _pitch(sizes)
    rows = FUSED_ROWS
    while rows > 1 and 2 * rows * width * np.dtype(dt).itemsize > FUSED_SHARED_BYTES:
        rows //= 2
    return rows


@functools.lru_cache(maxsize=None)
def _fused_forward_kernel(dt, sizes, acts, store_hidden):
    """One kernel for the whole forward pass of the Dense network `sizes` / `acts`:
    for l = 0..L-1,  Z = A[l] @ W[l].T + b[l],  A[l+1] = f_l(Z),  with A[0] = X.

    Arguments ``(X, W, b, A_out, D_out)``: X (B, sizes[0]); W, b: tuples of the L weights
    (sizes[l+1], sizes[l]) and biases; A_out, D_out: tuples of L arrays (B, sizes[l+1]),
    A_out[l] = A[l+1] and D_out[l] = D[l+1] of the contract. A_out[L-1], the network's
    output, is always written. With `store_hidden` (training) so is every A_out[l], and
    D_out[l] = Z for the activations in NEEDS_PREACTIVATION (the backward pass needs them);
    without it (inference) the hidden layers never leave the chip and A_out, D_out may just
    repeat the output array.

    Threads: block x takes rows x*R .. x*R+R-1 of the batch (grid: ceil(B / R) blocks; any
    block size works, THREADS is used). Layer l reads its input rows from buf[(l - 1) % 2]
    (layer 0 from X) and writes its output rows to buf[l % 2]: two ping-pong buffers of
    (R, widest + 1) in shared memory (padded against bank conflicts), a barrier between
    layers. Thread k computes unit o = k // R of row r = k % R (k steps by the block size),
    so the R threads of one unit share every weight W[l][o, i] (a broadcast read) and read
    consecutive buffer rows.
    """
    R = _fused_rows(dt, sizes)
    NL = len(acts)
    WP = _pitch(sizes)
    SIZES = tuple(int(s) for s in sizes)
    ACTS = tuple(int(a) for a in acts)
    KEEP_Z = tuple(bool(store_hidden) and a in NEEDS_PREACTIVATION for a in ACTS)
    STORE = bool(store_hidden)
    f = activations(dt).f

    def forward(X, W, b, A_out, D_out):
        buf = cuda.shared.array((2, R, WP), dt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        r0 = cuda.blockIdx.x * R
        nrows = min(R, X.shape[0] - r0)
        for l in range(NL):
            n_in = SIZES[l]
            n_out = SIZES[l + 1]
            act = ACTS[l]
            Wl = W[l]
            bl = b[l]
            Al = A_out[l]
            Dl = D_out[l]
            for k in range(tid, R * n_out, nt):
                o = k // R
                r = k - o * R
                if r < nrows:
                    z = bl[o]
                    if l == 0:
                        for i in range(n_in):
                            z += X[r0 + r, i] * Wl[o, i]
                    else:
                        src = (l - 1) % 2
                        for i in range(n_in):
                            z += buf[src, r, i] * Wl[o, i]
                    a = f(z, act)
                    if l < NL - 1:
                        buf[l % 2, r, o] = a
                    if STORE or l == NL - 1:
                        Al[r0 + r, o] = a
                    if KEEP_Z[l]:
                        Dl[r0 + r, o] = z
            cuda.syncthreads()

    return cuda.jit(forward)


@functools.lru_cache(maxsize=None)
def _fused_delta_kernel(dt, sizes, acts):
    """One kernel for the whole delta chain of the Dense network `sizes` / `acts` (L >= 2):
    for l = L-1 down to 1,  delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l]).

    Arguments ``(delta, W, D_out)``: delta: tuple of the L arrays (B, sizes[l+1]), delta[L-1]
    read and every other one written; W: tuple of the L weights; D_out: tuple of L-1 arrays,
    D_out[l] = D[l+1] of the contract (what f'_l is computed from: A[l+1], or Z for GELU).

    Threads: as in the forward kernel, block x takes R rows of the batch through every layer,
    here backwards: the rows of delta[L-1] are staged in buf[0]; step s (l = L-1-s) reads
    delta[l] from buf[s % 2] and writes delta[l-1] to global memory and to buf[(s + 1) % 2].
    Thread k computes unit i = k // R of row r = k % R: the sum over o of
    delta[l][r, o] * W[l][o, i], the R threads of one unit sharing each weight (a broadcast
    read), consecutive units reading consecutive columns of W.
    """
    R = _fused_rows(dt, sizes)
    NL = len(acts)
    WP = _pitch(sizes)
    SIZES = tuple(int(s) for s in sizes)
    ACTS = tuple(int(a) for a in acts)
    df = activations(dt).df
    ZERO = dt(0)

    def backward(delta, W, D_out):
        buf = cuda.shared.array((2, R, WP), dt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        r0 = cuda.blockIdx.x * R
        top = delta[NL - 1]
        nrows = min(R, top.shape[0] - r0)
        for k in range(tid, R * SIZES[NL], nt):
            o = k // R
            r = k - o * R
            if r < nrows:
                buf[0, r, o] = top[r0 + r, o]
        cuda.syncthreads()
        for s in range(NL - 1):
            l = NL - 1 - s
            n_in = SIZES[l]  # width of delta[l-1]
            n_out = SIZES[l + 1]  # width of delta[l]
            act = ACTS[l - 1]
            Wl = W[l]
            Dl = D_out[l - 1]
            out = delta[l - 1]
            src = s % 2
            for k in range(tid, R * n_in, nt):
                i = k // R
                r = k - i * R
                if r < nrows:
                    acc = ZERO
                    for o in range(n_out):
                        acc += buf[src, r, o] * Wl[o, i]
                    d = acc * df(Dl[r0 + r, i], act)
                    out[r0 + r, i] = d
                    if l > 1:
                        buf[1 - src, r, i] = d
            cuda.syncthreads()

    return cuda.jit(backward)


def _layer_sizes(W):
    return (int(W[0].shape[1]),) + tuple(int(w.shape[0]) for w in W)


_TYPES_AGREE = {}


def _fusable(sizes, *groups):
    """Whether the fused training kernels take this network: every width after the input at
    most FUSED_MAX_WIDTH, the input at most FUSED_MAX_INPUT, and every tuple of arrays in
    `groups` of one Numba type (they are indexed by the layer number inside the kernel,
    which Numba compiles only for such tuples; e.g. a non-contiguous array among contiguous
    ones falls back to the per-layer loop).

    The type check is made once per set of arrays (a model passes the same buffers every
    step) and remembered with weak references to them, so that a new array at a reused
    address is checked again."""
    if cuda is None or max(sizes[1:]) > FUSED_MAX_WIDTH or sizes[0] > FUSED_MAX_INPUT:
        return False
    key = tuple(id(a) for g in groups for a in g)
    hit = _TYPES_AGREE.get(key)
    if hit is not None and all(ref() is not None for ref in hit[0]):
        return hit[1]
    agree = all(len({numba.typeof(a) for a in g}) == 1 for g in groups)
    if len(_TYPES_AGREE) > 1024:
        _TYPES_AGREE.clear()
    _TYPES_AGREE[key] = (tuple(weakref.ref(a) for g in groups for a in g), agree)
    return agree


def _fused_grid(dt, sizes, batch):
    rows = _fused_rows(dt, sizes)
    return (batch + rows - 1) // rows


def mlp_forward(A, D, W, b, acts):
    """Forward through L Dense layers: A[l+1] = f_l(A[l] @ W[l].T + b[l]), and D[l+1] = the
    pre-activation Z for the activations in NEEDS_PREACTIVATION (else D[l+1] is A[l+1]).

    Narrow networks (every width after the input at most FUSED_MAX_WIDTH): ONE launch of
    the fused forward kernel, which writes every A[l+1] (and Z) for the backward pass. Else
    one tiled-GEMM launch per layer (two for a GELU layer: Z, then A = f(Z))."""
    W, b, acts = tuple(W), tuple(b), tuple(int(a) for a in acts)
    sizes = _layer_sizes(W)
    A_out, D_out = tuple(A[1:]), tuple(D[1:])
    if _fusable(sizes, W, b, A_out, D_out):
        batch = A[0].shape[0]
        if batch:
            dt = np.dtype(A_out[-1].dtype).type
            _launch(_fused_forward_kernel(dt, sizes, acts, True), _fused_grid(dt, sizes, batch),
                    THREADS, A[0], W, b, A_out, D_out)
        return
    stack.forward(sys.modules[__package__], A, D, W, b, acts)


def mlp_backward(delta, A, D, W, dW, db, acts):
    """Backward through the L Dense layers from delta[L-1]: dW[l] = delta[l].T @ A[l],
    db[l] = sum(delta[l]) and, for l > 0, delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l]).

    Narrow networks: ONE launch of the fused delta kernel for delta[L-2], ..., delta[0], then
    one ``weight_grad`` per layer (a tiled GEMM over the batch with the db column sums in its
    epilogue, no atomics): L + 1 launches. Else weight_grad and delta_backward per layer
    (2L - 1 launches)."""
    W, acts = tuple(W), tuple(int(a) for a in acts)
    L = len(W)
    sizes = _layer_sizes(W)
    if L > 1 and _fusable(sizes, W, tuple(delta), tuple(D[1:L])):
        batch = delta[0].shape[0]
        if batch:
            dt = np.dtype(delta[0].dtype).type
            _launch(_fused_delta_kernel(dt, sizes, acts), _fused_grid(dt, sizes, batch),
                    THREADS, tuple(delta), W, tuple(D[1:L]))
        for l in range(L):
            weight_grad(delta[l], A[l], dW[l], db[l])
        return
    stack.backward(sys.modules[__package__], delta, A, D, W, dW, db, acts)


def _layer_views(params, sizes):
    """W and b of every layer as views into the flat parameter array `params`."""
    W, b, off = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W.append(_reshape(params[off:off + n_out * n_in], (n_out, n_in)))
        b.append(params[off + n_out * n_in:off + n_out * n_in + n_out])
        off += n_out * n_in + n_out
    return tuple(W), tuple(b)
