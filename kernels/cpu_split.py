"""One batch on two cores: each of two threads runs half of every batch through the whole
stack, then the two halves' gradients are summed and each thread updates half of the
parameters (the CPU backend's fast path for small networks; fastmlp/_fast_fit.py decides,
and runs the same loop on one thread, both halves in turn, when that is faster).

A small network's step (20-64-64-3 at batch 200: 6 MFLOP) is too small for the BLAS to
split each product across threads, so one core would run it all while the other waits.
Here thread ``part`` (0 or 1) trains on rows ``part*h : (part+1)*h`` of each batch of
B = 2h rows, in its own rows of the batch buffers, with one-thread BLAS calls:

    gather its h rows           forward, loss (scaled by 1/2: the batch mean is the
    backward -> its own dW, db  halves' mean), backward
    -- meet --
    dW = dW_0 + dW_1 and the optimizer's update, each thread over half of theta,
    then its part of the copies Wt = W.T
    -- meet --

The forward pass multiplies by the copies W.T, the backward pass by W itself: OpenBLAS's
small-matrix products run A @ W.T from W's (outputs, inputs) layout 1.5-2.2x slower than
from W.T stored as (inputs, outputs), and delta @ W the other way round (32 rows, 64 x 64,
float32: 4.0 us against 1.8). Keeping both costs a transposed copy of the updated weights
each step (1.3-1.5 us a thread for 32-64-64-64-2); the forward pass gains 5.7 us a half
(float32, 32 rows) and 7.5 (20-64-64-3, float64, 100 rows).

The two meetings are spin-waits on a shared counter per thread (an atomic store after the
thread's work, atomic loads of the other's), yielding the core after a short spin so that a
busy machine does not stall. One thread running both halves in turn computes the same
numbers, so the choice between the two never changes a fit; a step on the whole batch at
once (cpu_epoch.py) agrees with them to rounding (the halves' gradients are summed in
another order).
"""

import ctypes
import math
import sys

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .codes import CACHE
from .cpu_epoch import LOSSES, METRICS, _update
from .cpu import _mlp_backward, _mlp_forward, gather_rows
from .scalar import specialise

#: where each thread's counter sits in the shared int64 array (a cache line apart), and
#: the slot a failing thread sets to stop the other
MINE, ABORT = (0, 8), 16
FLAGS = 17
SPINS = 4000  # spins before each yield of the core


@intrinsic
def _load_acquire(typingctx, flags, i):
    """flags[i] as an atomic load with acquire ordering (later reads stay after it)."""
    sig = types.int64(flags, i)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def _store_release(typingctx, flags, i, value):
    """flags[i] = value as an atomic store with release ordering (earlier writes are
    visible to a thread that reads the value)."""
    sig = types.void(flags, i, types.int64)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


def _register_yield():
    """The OS call that gives the core to another runnable thread, registered with LLVM
    under a fixed name (as blas.py does for gemm), or None."""
    import llvmlite.binding as llvm

    try:
        if sys.platform == "win32":
            fn = ctypes.windll.kernel32.SwitchToThread
        else:
            fn = ctypes.CDLL(None).sched_yield
    except (OSError, AttributeError):
        return None
    llvm.add_symbol("fastmlp_yield", ctypes.cast(fn, ctypes.c_void_p).value)
    return types.ExternalFunction("fastmlp_yield", types.int32())


_yield = _register_yield()
AVAILABLE = _yield is not None


def _jit(fn):
    return njit(cache=CACHE, nogil=True, error_model="numpy")(fn)


if AVAILABLE:
    @_jit
    def _meet(flags, part, count):
        """Says this thread has done its work up to meeting `count`, then waits for the
        other thread to say the same. False when the other thread failed (ABORT)."""
        _store_release(flags, MINE[part], count)
        other = MINE[1 - part]
        spins = 0
        while _load_acquire(flags, other) < count:
            if _load_acquire(flags, ABORT) != 0:
                return False
            spins += 1
            if spins >= SPINS:
                _yield()
                spins = 0
        return True


_MADE = {}


def split_steps_for(loss, metric):
    """The halves' loop for one loss and one metric, made on first use:

    ``split_steps(part, alone, flags, shared_loss, X, T, order, start, steps, Xb, Tb, T_loss,
    T_metric, A, D, delta, W, Wt, w_at, b, dW, db, acts, smoothing, theta, grad, lo, hi, opt,
    hyper, state, step, decays, losses, correct, abs_err, sq_err) -> the steps done``

    Wt: a copy of each layer's W.T, equal to it when the call starts (the forward pass
    multiplies by Wt, the backward pass by W); w_at: where each W starts in theta.

    Xb, Tb, T_loss, T_metric, A, D, delta (rows p*h:(p+1)*h of the B-row batch buffers),
    grad (with dW and db views into it; part 0's is the model's), correct, abs_err and
    sq_err are pairs: one per half. With `alone`, one thread runs both halves of each step,
    one after the other, and updates all of theta (lo:hi = all): the same arithmetic, so the
    same weights bit for bit as two threads, each calling with its `part` and its range
    lo:hi of theta. Part 0 writes the batch's loss to losses[s]. A non-finite loss stops
    before that step's update and returns s; -1 when the other thread failed
    (flags[ABORT] set)."""
    key = (loss, metric)
    if key not in _MADE:
        if loss not in _MADE:  # one half step per loss (each compiled function its own name)
            _MADE[loss] = _jit(specialise(_half_step, f"half_step_{loss}", loss_fn=LOSSES[loss]))
        _MADE[key] = _jit(specialise(_split_steps, f"split_steps_{loss}_{metric}",
                                     half_step=_MADE[loss], metric_fn=METRICS[metric]))
    return _MADE[key]


loss_fn = metric_fn = half_step = None  # the globals the loops below call; each
                                       # specialised copy has its own (scalar.specialise)


def _half_step(X, T, idx, Xb, Tb, T_loss, A, D, delta, W, Wt, b, dW, db, acts, smoothing):
    """One half of a batch: its rows gathered, forward (on Wt, each layer's W.T), the loss
    (returned) and its gradient scaled by 1/2 (the batch mean is the halves' mean), backward
    (on W) into dW, db."""
    L = len(W)
    gather_rows(X, idx, Xb)
    gather_rows(T, idx, Tb)
    _mlp_forward(A, D, Wt, b, acts, True)
    loss = loss_fn(A[L], T_loss, delta[L - 1], None, smoothing)
    d = delta[L - 1]
    half = d.dtype.type(0.5)
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            d[i, j] *= half
    _mlp_backward(delta, A, D, W, dW, db, acts)
    return loss


@_jit
def _transpose_range(W, Wt, at, lo, hi):
    """Wt[l] = W[l].T for the weights whose positions in theta lie in lo:hi (W[l] starts at
    theta[at[l]]): after a thread's update of theta[lo:hi], its part of the copies. The
    whole rows of W in the range are copied column by column of Wt (contiguous writes: 3x
    faster than row by row at 64 x 64), the partial rows at its ends element by element."""
    for l in range(len(W)):
        n_out, n_in = W[l].shape
        first, last = max(lo - at[l], 0), min(hi - at[l], n_out * n_in)
        if first >= last:
            continue
        Wl, Wtl = W[l], Wt[l]
        o_a, o_b = (first + n_in - 1) // n_in, last // n_in  # the whole rows: o_a:o_b
        if o_a > o_b:  # first and last in one row
            o = o_b
            for i in range(first - o * n_in, last - o * n_in):
                Wtl[i, o] = Wl[o, i]
            continue
        if first % n_in:  # the end of row o_a - 1, from `first` on
            o = o_a - 1
            for i in range(first - o * n_in, n_in):
                Wtl[i, o] = Wl[o, i]
        rows, cols = Wl[o_a:o_b], Wtl[:, o_a:o_b]  # indices from 0: the loop vectorises
        for i in range(n_in):
            for o in range(rows.shape[0]):
                cols[i, o] = rows[o, i]
        for i in range(last - o_b * n_in):     # row o_b, up to `last`
            Wtl[i, o_b] = Wl[o_b, i]


def _split_steps(part, alone, flags, shared_loss, X, T, order, start, steps, Xb, Tb, T_loss,
                 T_metric, A, D, delta, W, Wt, w_at, b, dW, db, acts, smoothing, theta, grad,
                 lo, hi, opt, hyper, state, step, decays, losses, correct, abs_err, sq_err):
    h = Xb[0].shape[0]
    L = len(W)
    count = 0
    mine = (state[0][lo:hi], state[1][lo:hi], state[2][lo:hi])
    total, other = grad[0], grad[1]   # part 0's gradient takes the sum
    for s in range(steps):
        for p in range(2):
            if alone or p == part:
                first = start + (2 * s + p) * h
                shared_loss[p] = half_step(
                    X, T, order[first:first + h], Xb[p], Tb[p], T_loss[p], A[p], D[p],
                    delta[p], W, Wt, b, dW[p], db[p], acts, smoothing)
        count += 1
        if not alone and not _meet(flags, part, count):
            return -1
        loss = 0.5 * (shared_loss[0] + shared_loss[1])
        if part == 0:
            losses[s] = loss
        if not math.isfinite(loss):
            return s
        mine_sum, theirs = total[lo:hi], other[lo:hi]  # indices from 0: the loop vectorises
        for i in range(mine_sum.size):
            mine_sum[i] += theirs[i]
        _update(opt, theta[lo:hi], total[lo:hi], mine, hyper, step + s + 1, decays[s])
        _transpose_range(W, Wt, w_at, lo, hi)
        for p in range(2):
            if alone or p == part:
                metric_fn(A[p][L], T_metric[p], correct[p], abs_err[p], sq_err[p])
        count += 1
        if not alone and not _meet(flags, part, count):
            return -1
    return steps
