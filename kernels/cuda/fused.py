"""``mlp_forward`` / ``mlp_backward``: a stack of Dense layers, fully fused for narrow
networks, else the per-layer kernels."""

import functools
import sys
import weakref

import numpy as np

from .. import stack
from ..codes import NEEDS_PREACTIVATION
from .device import (_SMALL, _inlined, _launch, _multiprocessors, _reshape, activations,
                     cuda, numba)
from .gemm import weight_grad


# ---------------------------------------------------------------------------------------
# a stack of Dense layers in one call each way (contract: see reference.mlp_forward)
#
# For a narrow network the forward pass and the backward pass's delta chain each run in ONE
# launch, in the spirit of tiny-cuda-nn's FullyFusedMLP (without its tensor cores): a block
# takes R rows of the batch through every layer, and each layer's output for those rows
# stays in shared memory for the next one. Wider networks take the per-layer tiled GEMMs.
#
# Whether the fused kernels beat the per-layer GEMMs is a question of the GPU: the limits
# below are settings, and the first GPU run settles them (bench/gpu.py times both paths on
# the narrow networks; tests/test_cuda_gpu.py checks both at their real launch sizes).

#: widest layer (after the input) the fused kernels take: a block keeps its rows of every
#: layer's output in shared memory
FUSED_MAX_WIDTH = 32 if _SMALL else 256
#: widest input the fused training kernels take (the input rows are staged in shared
#: memory too); MNIST's 784 takes the tiled GEMMs
FUSED_MAX_INPUT = 64 if _SMALL else 256
#: most rows of the batch per block (fewer where two shared buffers of that many rows would
#: pass FUSED_SHARED_BYTES, as float64 at width 256, and fewer for small batches, so that
#: every multiprocessor gets a block)
FUSED_ROWS = 4 if _SMALL else 16
#: rows each thread computes: one weight load feeds this many multiply-adds per unit
FUSED_ROWS_PER_THREAD = 2 if _SMALL else 4
#: units (output columns) each thread computes: one activation read from shared memory
#: feeds this many multiply-adds
FUSED_UNITS_PER_THREAD = 2
#: most threads per block
FUSED_THREADS = 8 if _SMALL else 256
#: the static shared memory one block may use (CUDA's limit without opting in to more)
FUSED_SHARED_BYTES = 48 * 1024
_WARP = 1 if _SMALL else 32

_u = numba.uint32 if numba is not None else int  # an index the compiler knows is >= 0


def _pitch(sizes):
    """The row pitch of the shared buffers: the widest layer, input included, rounded up to
    an odd number, so that the threads of a warp, reading one column of rows a pitch
    apart, hit distinct banks."""
    return max(sizes) | 1


def _max_rows(dt, sizes):
    """FUSED_ROWS, halved until the two (rows, pitch) shared buffers fit FUSED_SHARED_BYTES."""
    rows = FUSED_ROWS
    while rows > 1 and 2 * rows * _pitch(sizes) * np.dtype(dt).itemsize > FUSED_SHARED_BYTES:
        rows //= 2
    return rows


def _fused_config(dt, sizes, batch):
    """The launch of the fused kernels for `batch` rows of the network `sizes`:
    (R, RT, C): R rows per block, each thread RT of them (R / RT row groups) and
    FUSED_UNITS_PER_THREAD units; C threads per row group, so (R // RT) * C threads.

    R is the most rows that fit the shared memory, halved while the batch would give fewer
    blocks than the GPU has multiprocessors (batch 128 on a 132-SM H100: 1 row per block,
    128 blocks; batch 2^14: 16 rows, 1024 blocks). The threads are as many as the widest
    layer needs, at most FUSED_THREADS, a whole number of warps."""
    R = _max_rows(dt, sizes)
    while R > 1 and -(-batch // R) < _multiprocessors():
        R //= 2
    RT = min(R, FUSED_ROWS_PER_THREAD)
    G = R // RT
    C = min(-(-max(sizes[1:]) // FUSED_UNITS_PER_THREAD), FUSED_THREADS // G)
    step = max(1, _WARP // G)
    C = max(step, -(-C // step) * step)
    return R, RT, C


@functools.lru_cache(maxsize=None)
def _stage_rows(dt, n, R, NT):
    """Device function: rows r0 .. r0+R-1 of M (n columns) into buf[0], coalesced; rows
    past the batch as zeros (so that no layer ever computes on garbage)."""
    ZERO = dt(0)

    def stage(M, buf, r0, nrows, t):
        for k in range(t, R * n, NT):
            r = k // n
            i = k - r * n
            v = ZERO
            if r < nrows:
                v = M[_u(r0 + r), _u(i)]
            buf[0, _u(r), _u(i)] = v

    return cuda.jit(device=True)(stage)


@functools.lru_cache(maxsize=None)
def _rows_times_weights(dt, n_sum, n_units, transposed, src, R, RT, C):
    """Device function: this thread's RT x UT tile of buf[src] @ W.T (or of buf[src] @ W
    when `transposed`): acc[j, m] = sum_k buf[src, j * G + g, k] * W[u, k] (W[k, u]) for
    the rows j * G + g and the units u = u0 + m * C, k over n_sum. Each weight loaded into
    w feeds RT multiply-adds, each activation UT. A unit past n_units reads the last
    unit's weights (never stored), so the inner loop has no branch. Inlined, so that acc
    and w stay in registers."""
    G = R // RT
    UT = FUSED_UNITS_PER_THREAD
    ZERO = dt(0)

    def product(W, buf, acc, w, u0, g):
        for j in range(RT):
            for m in range(UT):
                acc[j, m] = ZERO
        for k in range(n_sum):
            for m in range(UT):
                u = min(u0 + m * C, n_units - 1)
                if transposed:  # consecutive column threads: consecutive weights W[k, u]
                    w[m] = W[_u(k), _u(u)]
                else:
                    w[m] = W[_u(u), _u(k)]
            for j in range(RT):
                a = buf[src, _u(j * G + g), _u(k)]
                for m in range(UT):
                    acc[j, m] += a * w[m]

    return _inlined(product)


@functools.lru_cache(maxsize=None)
def _units_of_thread(dt, n_sum, n_units, transposed, src, R, RT, C, epilogue):
    """Device function ``units(W, outs, buf, r0, nrows, t)``: thread t's share of one layer
    on the block's R rows, read from buf[src] (the loop the forward layer and the delta step
    share). Thread t is row group g = t % G and column thread c = t // G; for each group
    of its units u0, u0 + C, ... (UT of them) it computes the RT x UT tile of products acc
    of the rows g, g + G, ... (_rows_times_weights) and hands every unit u < n_units on to
    ``epilogue(acc, m, u, g, outs, buf, r0, nrows)`` (m: the unit's column of acc; outs:
    the global arrays the epilogue reads and writes). Lanes of a warp with consecutive g
    read rows a pitch (odd) apart: distinct banks."""
    G = R // RT
    UT = FUSED_UNITS_PER_THREAD
    product = _rows_times_weights(dt, n_sum, n_units, transposed, src, R, RT, C)

    def units(W, outs, buf, r0, nrows, t):
        acc = cuda.local.array((RT, UT), dt)
        w = cuda.local.array(UT, dt)
        g = t % G
        for u0 in range(t // G, n_units, C * UT):
            product(W, buf, acc, w, u0, g)
            for m in range(UT):
                u = u0 + m * C
                if u < n_units:
                    epilogue(acc, m, u, g, outs, buf, r0, nrows)

    return cuda.jit(device=True)(units)


@functools.lru_cache(maxsize=None)
def _dense_rows(dt, n_in, n_out, act, src, keep_z, store, last, R, RT, C):
    """Device function ``dense(W, (b, A, Z), buf, r0, nrows, t)``: one Dense layer on the
    block's R rows, read from buf[src]: Z = rows @ W.T + b, A = f(Z), written to
    buf[1 - src] (unless `last`), to the global A (if `store` or `last`) and Z to the
    global Z (if `keep_z`). The thread's units as in _units_of_thread."""
    G = R // RT
    f = activations(dt).f_of[act]
    dst = 1 - src

    def epilogue(acc, m, o, g, outs, buf, r0, nrows):  # unit o of the thread's RT rows
        b, A, Z = outs
        bo = b[_u(o)]
        for j in range(RT):
            r = j * G + g
            z = acc[j, m] + bo
            a = f(z)
            if not last:
                buf[dst, _u(r), _u(o)] = a
            if r < nrows:
                if store or last:
                    A[_u(r0 + r), _u(o)] = a
                if keep_z:
                    Z[_u(r0 + r), _u(o)] = z

    return _units_of_thread(dt, n_in, n_out, False, src, R, RT, C, _inlined(epilogue))


@functools.lru_cache(maxsize=None)
def _delta_rows(dt, n_in, n_out, act, src, to_buf, R, RT, C):
    """Device function ``delta_rows(W, (D, out), buf, r0, nrows, t)``: one step of the
    delta chain on the block's R rows: delta[l] read from buf[src] (n_out wide),
    delta[l-1] = f'(D) * (delta[l] @ W[l]) (n_in wide) written to the global `out` and, if
    `to_buf`, to buf[1 - src] (zeros for rows past the batch).

    The same RT x UT tiles as the forward layer (_units_of_thread), over the units i of
    the layer's input: consecutive column threads read consecutive weights W[o, i]
    (coalesced)."""
    G = R // RT
    df = activations(dt).df_of[act]
    ZERO = dt(0)
    dst = 1 - src

    def epilogue(acc, m, i, g, outs, buf, r0, nrows):  # unit i of the thread's RT rows
        D, out = outs
        for j in range(RT):
            r = j * G + g
            d = ZERO
            if r < nrows:
                d = acc[j, m] * df(D[_u(r0 + r), _u(i)])
                out[_u(r0 + r), _u(i)] = d
            if to_buf:
                buf[dst, _u(r), _u(i)] = d

    return _units_of_thread(dt, n_out, n_in, True, src, R, RT, C, _inlined(epilogue))


def _no_layers(W, b, A_out, D_out, buf, r0, nrows, t):
    """The end of the chain of layers."""
    return  # not a docstring alone: see kernels/cpu.py's _unchanged


def _no_steps(delta, W, D_out, buf, r0, nrows, t):
    """The end of the delta chain."""
    return  # not a docstring alone: see kernels/cpu.py's _unchanged


@functools.lru_cache(maxsize=None)
def _forward_layers(dt, sizes, acts, store, l, R, RT, C):
    """Device function running layers l, l+1, ... of the forward pass on the tuples' first
    elements, handing the rest of each tuple on to the next layer's (every layer its own
    specialised device function; the tuples indexed and sliced by constants only, so that
    they may hold arrays of different layouts and no layer number is looked up at run
    time)."""
    if l == len(acts):
        return cuda.jit(device=True)(_no_layers)
    keep_z = store and acts[l] in NEEDS_PREACTIVATION
    last = l == len(acts) - 1
    dense = _dense_rows(dt, sizes[l], sizes[l + 1], acts[l], l % 2, keep_z, store, last,
                        R, RT, C)
    rest = _forward_layers(dt, sizes, acts, store, l + 1, R, RT, C)

    def layers(W, b, A_out, D_out, buf, r0, nrows, t):
        dense(W[0], (b[0], A_out[0], D_out[0]), buf, r0, nrows, t)
        cuda.syncthreads()
        rest(W[1:], b[1:], A_out[1:], D_out[1:], buf, r0, nrows, t)

    return cuda.jit(device=True)(layers)


@functools.lru_cache(maxsize=None)
def _delta_layers(dt, sizes, acts, s, R, RT, C):
    """Device function running steps s, s+1, ... of the delta chain (step s: layer
    l = L-1-s, from delta[l] in buf[s % 2] to delta[l-1]) on the tuples' last elements,
    handing the rest on."""
    L = len(acts)
    if s == L - 1:
        return cuda.jit(device=True)(_no_steps)
    l = L - 1 - s
    step = _delta_rows(dt, sizes[l], sizes[l + 1], acts[l - 1], s % 2, l > 1, R, RT, C)
    rest = _delta_layers(dt, sizes, acts, s + 1, R, RT, C)

    def layers(delta, W, D_out, buf, r0, nrows, t):
        # delta = delta[0..l], W = W[0..l], D_out = D_out[0..l-1] of the whole network
        step(W[-1], (D_out[-1], delta[-2]), buf, r0, nrows, t)
        cuda.syncthreads()
        rest(delta[:-1], W[:-1], D_out[:-1], buf, r0, nrows, t)

    return cuda.jit(device=True)(layers)


@functools.lru_cache(maxsize=None)
def _fused_forward_kernel(dt, sizes, acts, store_hidden, R, RT, C):
    """One kernel for the whole forward pass of the Dense network `sizes` / `acts`:
    for l = 0..L-1,  Z = A[l] @ W[l].T + b[l],  A[l+1] = f_l(Z),  with A[0] = X.

    Arguments ``(X, W, b, A_out, D_out)``: X (B, sizes[0]); W, b: tuples of the L weights
    (sizes[l+1], sizes[l]) and biases; A_out, D_out: tuples of L arrays (B, sizes[l+1]),
    A_out[l] = A[l+1] and D_out[l] = D[l+1] of the contract. A_out[L-1], the network's
    output, is always written. With `store_hidden` (training) so is every A_out[l], and
    D_out[l] = Z for the activations in NEEDS_PREACTIVATION (the backward pass needs them);
    without it (inference) the hidden layers never leave the chip and A_out, D_out may just
    repeat the output array.

    Launch: ceil(B / R) blocks of (R // RT) * C threads (see _fused_config). Block x takes
    rows x*R .. x*R+R-1: they are staged in buf[0] (two ping-pong buffers of (R, pitch) in
    shared memory), layer l reads buf[l % 2] and writes buf[(l + 1) % 2], a barrier between
    layers.
    """
    NT = (R // RT) * C
    P = _pitch(sizes)
    stage = _stage_rows(dt, sizes[0], R, NT)
    layers = _forward_layers(dt, tuple(sizes), tuple(acts), bool(store_hidden), 0, R, RT, C)

    def forward(X, W, b, A_out, D_out):
        buf = cuda.shared.array((2, R, P), dt)
        t = cuda.threadIdx.x
        r0 = cuda.blockIdx.x * R
        nrows = min(R, X.shape[0] - r0)
        stage(X, buf, r0, nrows, t)
        cuda.syncthreads()
        layers(W, b, A_out, D_out, buf, r0, nrows, t)

    return cuda.jit(forward)


@functools.lru_cache(maxsize=None)
def _fused_delta_kernel(dt, sizes, acts, R, RT, C):
    """One kernel for the whole delta chain of the Dense network `sizes` / `acts` (L >= 2):
    for l = L-1 down to 1,  delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l]).

    Arguments ``(delta, W, D_out)``: delta: tuple of the L arrays (B, sizes[l+1]), delta[L-1]
    read and every other one written; W: tuple of the L weights; D_out: tuple of L-1 arrays,
    D_out[l] = D[l+1] of the contract (what f'_l is computed from: A[l+1], or Z for GELU).

    Launch as the forward kernel: block x stages its rows of delta[L-1] in buf[0]; step s
    (layer l = L-1-s) reads delta[l] from buf[s % 2] and writes delta[l-1] to global memory
    and to buf[(s + 1) % 2].
    """
    NT = (R // RT) * C
    P = _pitch(sizes)
    L = len(acts)
    stage = _stage_rows(dt, sizes[L], R, NT)
    layers = _delta_layers(dt, tuple(sizes), tuple(acts), 0, R, RT, C)

    def backward(delta, W, D_out):
        buf = cuda.shared.array((2, R, P), dt)
        t = cuda.threadIdx.x
        r0 = cuda.blockIdx.x * R
        top = delta[-1]
        nrows = min(R, top.shape[0] - r0)
        stage(top, buf, r0, nrows, t)
        cuda.syncthreads()
        layers(delta, W, D_out, buf, r0, nrows, t)

    return cuda.jit(backward)


def _layer_sizes(W):
    return (int(W[0].shape[1]),) + tuple(int(w.shape[0]) for w in W)


def _fits(sizes):
    """Whether the fused kernels take the network `sizes` (the settings FUSED_MAX_WIDTH and
    FUSED_MAX_INPUT, read at every new buffer set)."""
    return max(sizes[1:]) <= FUSED_MAX_WIDTH and sizes[0] <= FUSED_MAX_INPUT


# The launch of a stack (fused or not, its kernel and grid) is worked out once per set of
# arrays and kept: a model passes the same buffers every step, and the host's time per
# launch is what a small network's step costs. Remembered by the arrays' ids, with weak
# references so that a new array at a reused address is looked at afresh.
_PLANS = {}


def _known_plan(key):
    hit = _PLANS.get(key)
    if hit is not None:
        for ref in hit[0]:
            if ref() is None:
                return None
        return hit[1]
    return None


def _remember(key, arrays, plan):
    if len(_PLANS) > 1024:
        _PLANS.clear()
    _PLANS[key] = (tuple(weakref.ref(a) for a in arrays), plan)
    return plan


def _plan_key(kind, arrays, acts):
    return (kind, acts, FUSED_MAX_WIDTH, FUSED_MAX_INPUT, FUSED_ROWS, FUSED_ROWS_PER_THREAD,
            FUSED_THREADS) + tuple(map(id, arrays))


def _make_plan(make_kernel, dt, sizes, batch):
    """("fused", (kernel, grid, block)) for `batch` rows, ("fused", None) for no rows, or
    ("loop", None) for a network the fused kernels do not take."""
    if not _fits(sizes):
        return "loop", None
    if not batch:
        return "fused", None
    R, RT, C = _fused_config(dt, sizes, batch)
    return "fused", (make_kernel(R, RT, C), -(-batch // R), (R // RT) * C)


def mlp_forward(A, D, W, b, acts):
    """Forward through L Dense layers: A[l+1] = f_l(A[l] @ W[l].T + b[l]), and D[l+1] = the
    pre-activation Z for the activations in NEEDS_PREACTIVATION (else D[l+1] is A[l+1]).

    Narrow networks (every width after the input at most FUSED_MAX_WIDTH, the input at most
    FUSED_MAX_INPUT): ONE launch of the fused forward kernel, which writes every A[l+1] (and
    Z) for the backward pass. Else one tiled-GEMM launch per layer (two for a GELU layer:
    Z, then A = f(Z))."""
    A, D, W, b, acts = tuple(A), tuple(D), tuple(W), tuple(b), tuple(acts)
    arrays = A + D + W + b
    key = _plan_key("forward", arrays, acts)
    plan = _known_plan(key)
    if plan is None:
        dt = np.dtype(A[-1].dtype).type
        codes = tuple(int(a) for a in acts)
        sizes = _layer_sizes(W)
        plan = _remember(key, arrays, _make_plan(
            lambda R, RT, C: _fused_forward_kernel(dt, sizes, codes, True, R, RT, C),
            dt, sizes, A[0].shape[0]))
    how, launch = plan
    if how == "loop":
        stack.forward(sys.modules[__package__], A, D, W, b, acts)
    elif launch is not None:
        kernel, grid, block = launch
        _launch(kernel, grid, block, A[0], W, b, A[1:], D[1:])


def mlp_backward(delta, A, D, W, dW, db, acts):
    """Backward through the L Dense layers from delta[L-1]: dW[l] = delta[l].T @ A[l],
    db[l] = sum(delta[l]) and, for l > 0, delta[l-1] = f'_{l-1}(D[l]) * (delta[l] @ W[l]).

    Narrow networks: ONE launch of the fused delta kernel for delta[L-2], ..., delta[0], then
    one ``weight_grad`` per layer (a tiled GEMM over the batch with the db column sums in its
    epilogue, no atomics): L + 1 launches. Else weight_grad and delta_backward per layer
    (2L - 1 launches)."""
    delta, W, acts = tuple(delta), tuple(W), tuple(acts)
    L = len(W)
    D_in = tuple(D[1:L])
    arrays = delta + D_in + W
    key = _plan_key("backward", arrays, acts)
    plan = _known_plan(key)
    if plan is None:
        dt = np.dtype(delta[0].dtype).type
        codes = tuple(int(a) for a in acts)
        sizes = _layer_sizes(W)
        plan = _remember(key, arrays, ("loop", None) if L == 1 else _make_plan(
            lambda R, RT, C: _fused_delta_kernel(dt, sizes, codes, R, RT, C),
            dt, sizes, delta[0].shape[0]))
    how, launch = plan
    if how == "loop":
        stack.backward(sys.modules[__package__], delta, A, D, W, dW, db, acts)
        return
    if launch is not None:
        kernel, grid, block = launch
        _launch(kernel, grid, block, delta, W, D_in)
    for l in range(L):
        weight_grad(delta[l], A[l], dW[l], db[l])


def _layer_views(params, sizes):
    """W and b of every layer as views into the flat parameter array `params`."""
    W, b, off = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W.append(_reshape(params[off:off + n_out * n_in], (n_out, n_in)))
        b.append(params[off + n_out * n_in:off + n_out * n_in + n_out])
        off += n_out * n_in + n_out
    return tuple(W), tuple(b)
