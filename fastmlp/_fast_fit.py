"""fit's fast path on the CPU: runs of full batches in one compiled call each
(kernels/cpu_epoch.py), instead of one Python round of kernel calls per step.

``plan(...)`` says whether a fit qualifies (else None, and fit runs step by step as
before): a Sequential of Dense layers on the CPU with a BLAS Numba can call, dense input,
reduction "mean", an output the loss fuses (or the identity), SGD or Adam/AdamW without
gradient clipping, every layer trainable, and no callback that wants each batch (the
progress bar is drawn between runs). The weights, losses and metrics are the per-step
path's bit for bit -- plain SGD (no momentum, no weight decay) to rounding, its update fused
into the weight-gradient products, which train each layer's W.T (see TRANSPOSE_PARAMS) --
and only the progress bar moves in coarser steps.

A small network's batches (see SPLIT_PARAMS) run as two halves on a machine with two cores
for the BLAS (kernels/cpu_split.py): on two threads, or both on one when that is faster
(timed as the fit goes, see PROBE_EVERY). Both ways give the same numbers, so a fit gives the
same weights in every run on one machine; they agree with the per-step path to rounding
(the halves' gradients are summed), as a different BLAS thread count would.

A run is sized to take about ``RUN_SECONDS`` (measured on the first run of a fit), so
Ctrl-C, the progress bar and other threads' whole-step reads wait no longer than that.
"""

import contextlib
import os
import threading
import time
from types import SimpleNamespace

import numpy as np

from ._validation import reads_directly
from .callbacks import Callback, ProgressBar, _any_reads_gradients
from .optim import SGD, Adam, AdamW

RUN_SECONDS = 0.1
#: X as a view (a memmap's column slice...): each run's rows are first copied, in the
#: epoch's order, into a contiguous buffer of the model's dtype of at most this many bytes
#: (which bounds the run's steps), which the compiled loop reads as any C-contiguous X
STAGED_BYTES = 1 << 24
FIRST_RUN = 8  # steps in a fit's first run, which measures the time per step

#: a batch is split across two cores (kernels/cpu_split.py) when its network has at most
#: SPLIT_PARAMS parameters -- both cores read all the weights, which must stay in each
#: core's cache: MNIST's 784-256-128-10 (235 K) gains nothing -- its step fewer than
#: SPLIT_MACS multiply-adds (larger products the BLAS splits itself), and each half at
#: least SPLIT_ROWS rows. On a 2-core Zen 4 VM (`python bench/split.py`), 20-64-64-3 with
#: adam trains 1.6x faster on two threads at batch 200 (halves of 100: 105 us a step against
#: 168), 1.4x at batch 100, 1.3x at batch 64 and at fit's default 32; 32-64-64-64-2 with
#: plain SGD 1.3x at batch 64 (42 us against 54) and 32. Both halves on one thread (when
#: another process takes a core) cost 1.05x the whole batch at halves of 100, 1.1-1.25x at
#: halves of 16 to 32. Halves of 8 are slower either way (1.3x on two threads, 1.3-1.6x on one).
SPLIT_PARAMS = 65536
SPLIT_MACS = 4_000_000
SPLIT_ROWS = 16
#: plain SGD's runs (its update fused into backward) train each layer's W.T, copied at the
#: start of a run and back at its end, on networks of at most TRANSPOSE_PARAMS parameters:
#: OpenBLAS multiplies by W.T stored as (inputs, outputs) faster than by W stored as
#: (outputs, inputs) -- MNIST's 784-256-128-10 trains an epoch 1.14x faster at batch 32,
#: 1.03x at 128, 1.02x at 512 on a Zen 4 VM; small networks the same or 1-3 % faster -- and
#: two copies per run (RUN_SECONDS) cost little up to 1 M parameters (4 MB in float32)
TRANSPOSE_PARAMS = 1_000_000
#: with two ways to run a step, the faster (by its last run's time per step) runs, and
#: the other is timed again on PROBE_STEPS steps after 1, 2, 4, then every PROBE_EVERY
#: times RUN_SECONDS of the runs that were no probe: two threads that meet twice a step slow
#: down badly when another process takes a core (20-64-64-3: 1.5 ms a step against 0.2 ms
#: on one thread), and win by 1.5x on a quiet machine. Counted in seconds, not runs: an
#: epoch's end cuts runs short (scikit-learn's tabular fit: 100 steps, 8 ms an epoch), and
#: a probe every 8 such runs ran 7 % of that fit's steps the slower way (4 % of its time)
PROBE_EVERY = 8
PROBE_STEPS = 32


def _blas_available():
    from .kernels import blas  # the CPU backend is loaded already when its model exists

    return blas.AVAILABLE


_HELPER = None
_HELPER_FREE = threading.Lock()  # held while a run uses the helper thread


def _helper():
    """The thread that runs the second halves, kept from run to run (a new thread would
    make OpenBLAS set up its buffers for it again: 2x slower runs of 32 steps), or None
    while another fit's run is using it (that run then takes both halves on its thread)."""
    global _HELPER
    if not _HELPER_FREE.acquire(blocking=False):
        return None
    if _HELPER is None:
        from concurrent.futures import ThreadPoolExecutor

        _HELPER = ThreadPoolExecutor(1, thread_name_prefix="fastmlp-half-batch")
    return _HELPER


def _forget_helper():
    """In a child made by fork: the helper thread was not copied, only its executor's state
    (which could claim an idle thread that does not exist, and a run would wait forever)."""
    global _HELPER, _HELPER_FREE
    _HELPER, _HELPER_FREE = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)


def _cores():
    """The cores a step may use: this process's CPUs, at most the BLAS's thread count (which
    OPENBLAS_NUM_THREADS, threadpoolctl and joblib's workers limit); 1 when the BLAS's threads
    cannot be read or set, or two threads cannot meet (kernels/cpu_split.py)."""
    from .kernels import blas, cpu_split

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cpus = os.cpu_count() or 1
    threads = blas.max_threads()
    if threads is None or not blas.one_thread().works or not cpu_split.AVAILABLE:
        return 1
    return min(cpus, threads)


def _wants_batches(cb):
    """Does the callback do anything per batch (other than the progress bar)?"""
    kind = type(cb)
    return (kind.on_batch_begin is not Callback.on_batch_begin
            or (kind.on_batch_end is not Callback.on_batch_end and not isinstance(cb, ProgressBar)))


def _loss_name(model, T):
    if model.loss == "cross_entropy":
        return "cross_entropy_labels" if T.ndim == 1 else "cross_entropy_targets"
    return model.loss


def _metric_name(model):
    if model.loss == "poisson":
        return "none"
    if model.loss in ("cross_entropy", "kl_divergence", "binary_cross_entropy"):
        multilabel = model.loss == "binary_cross_entropy" and model.n_outputs > 1
        return "binary_accuracy" if multilabel else "accuracy"
    return "regression"


def plan(model, T, labels, dense_labels, callbacks, sparse, dist, metric=None):
    """A _Plan for this fit, or None when it must run step by step. metric: "none" when
    the caller keeps no metrics (the scikit-learn estimators), else the model's."""
    k = model._kernels
    opt = model.optimizer
    if (k.name != "cpu" or not _blas_available() or not getattr(model, "_dense_only", False)
            or sparse or dist is not None or model.reduction != "mean" or model._out_act != 0
            or type(opt) not in (SGD, Adam, AdamW) or opt.clip_norm is not None
            or model._trainable_runs() is not None or any(_wants_batches(cb) for cb in callbacks)):
        return None
    metric = metric or _metric_name(model)
    if dense_labels or (metric == "accuracy" and labels is None):
        return None  # accuracy read from one-hot rows: the per-step path's own gather
    # plain SGD's update fused into backward writes no gradients (not when a callback reads
    # them) and moves every b (not with a Dense(use_bias=False), whose b is a fixed zero)
    fuse = (not _any_reads_gradients(callbacks)
            and all(getattr(layer, "use_bias", True) for layer in model.layers))
    return _Plan(model, _loss_name(model, T), metric, labels is not None, fuse)


class _Plan:
    def __init__(self, model, loss, metric, has_labels, fuse=True):
        from .kernels import cpu_epoch

        self.model = model
        self.kernels = cpu_epoch
        self.metric = metric
        self.train_steps = cpu_epoch.train_steps_for(loss, metric)
        self.has_labels = has_labels
        self.fuse = fuse
        self.smoothing = float(model.label_smoothing) if loss.startswith("cross_entropy") else 0.0
        self.run = {}  # by way (split or not): steps of a run of about RUN_SECONDS
        self.losses = np.empty(0)
        self.correct = np.zeros(1, np.int64)
        self.no_sums = np.zeros(0, np.float64)
        self.loss, self.cores, self._halves = loss, _cores(), {}
        self.per_step, self.since_probe = {}, 0.0  # by way (split or not): seconds a step
        self.probe_gap = 1  # RUN_SECONDS between probes: soon at first (the first timings may be
        # of a machine still busy, e.g. OpenBLAS's threads spinning after a large product)
        self.warm = False  # whether a run has split a batch yet (its time is not counted)
        self._Wt = None  # the layers' W.T while a run trains them (see _transposed)
        self._stage = None  # the buffers of a view's rows for a run (see _staged)

    def _hyper(self, opt):
        if isinstance(opt, SGD):
            plain = self.fuse and opt.momentum == 0  # the update can be fused into backward
            return (self.kernels.PLAIN_SGD if plain else self.kernels.SGD,
                    np.array([opt.lr, opt.momentum, float(opt.nesterov)]))
        return self.kernels.ADAM, np.array([opt.lr, opt.beta1, opt.beta2, opt.eps,
                                                 float(opt.decoupled), float(opt.amsgrad)])

    def _state(self, opt):
        state = self.model._opt_state
        if isinstance(opt, SGD):
            buf = state["momentum_buffer"]
            return (buf, buf, buf)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        return (m, v, state.get("max_exp_avg_sq", v))

    def epoch(self, data, v, full, metrics, decays=None):
        """The epoch's first `full` batches (all full) in runs of steps; yields after each run
        (the steps done so far, the sum of their losses times the batch size, None) -- or,
        last, (steps, sum, (step, loss)) for the first step whose loss is not finite, whose
        update was not made. `decays`: each step's weight decay (None: the optimizer's)."""
        step, loss_sum = 0, 0.0
        while step < full:
            done, losses, bad = self.steps(data, v, step * v.n, full - step, metrics,
                                           None if decays is None else decays[step:])
            for loss in losses[:done]:
                loss_sum += float(loss) * v.n
            if bad is not None:
                yield step + done, loss_sum, (step + bad, float(losses[bad]))
                return
            step += done
            yield step, loss_sum, None

    def steps(self, data, v, start, steps, metrics, decays=None):
        """Up to `steps` full batches from position `start` of the epoch's order, as long
        as one run takes (at most RUN_SECONDS once measured). Returns (steps done, losses
        of those steps, the first non-finite loss's step or None)."""
        model, opt = self.model, self.model.optimizer
        X, T, w, order = data
        halves = self._split(v, w)  # None: each step on the whole batch at once
        split, probe = self._use_split(halves)
        first = FIRST_RUN if halves is None else PROBE_STEPS
        steps = min(steps, self.run.get(split, first), PROBE_STEPS if probe else steps)
        if not reads_directly(X):
            X, T, w, order, start, steps = self._staged(X, T, w, order, start, steps, v.n)
        if self.losses.shape[0] < steps:
            self.losses = np.empty(steps)
        code, hyper = self._hyper(opt)
        if decays is None:
            decays = np.full(steps, opt.weight_decay)
        self.correct[0] = 0
        T_metric = v.T0 if self.has_labels else v.T
        sums = (metrics.abs_err, metrics.sq_err) if self.metric == "regression" else (self.no_sums,) * 2
        clock = time.perf_counter()
        with model._guard.step_lock:  # readers in other threads see whole runs
            if halves is not None:
                done, split = self._split_steps(halves, split, X, T, order, start, steps, code,
                                                hyper, decays, sums)  # split: as it ran
            else:
                with self._transposed(code, decays) as W, self.blas_threads(v):
                    done = self.train_steps(
                        X, T, w, order, start, steps, v.A[0], v.T2d, v.w2d, v.T, T_metric, v.A,
                        v.D, v.delta, W, model.b, model.dW, model.db, model._act, self.smoothing,
                        model._theta, model._grad, code, hyper, self._state(opt),
                        model._opt_state["step"], decays, self.losses, self.correct, *sums,
                        W is not model.W)
            model._opt_state["step"] += done
        self._timed(split, probe, done, time.perf_counter() - clock)
        metrics.seen += done * v.n
        metrics.correct += int(self.correct[0])
        diverged = done if done < steps else None
        return done, self.losses[:done + (diverged is not None)], diverged

    def _staged(self, X, T, w, order, start, steps, B):
        """For a view X: (X, T, w, order, 0, steps) for the next `steps` batches (fewer
        where STAGED_BYTES holds fewer), their rows copied in the epoch's order into buffers
        (X's converted to the model's dtype, as gather_rows converts them) that the run
        reads in turn."""
        dtype = self.model.dtype
        row = X.shape[1] * max(X.itemsize, dtype.itemsize)
        steps = min(steps, max(STAGED_BYTES // (B * row), 1))
        n = steps * B
        if self._stage is None or self._stage[0].shape[0] < n:
            self._stage = (np.empty((n, X.shape[1]), dtype), np.empty((n, T.shape[1]), T.dtype),
                           None if w is None else np.empty((n, 1), w.dtype),
                           np.arange(n, dtype=order.dtype))
        idx = order[start : start + n]
        Xs, Ts, ws, rows = self._stage
        Xs[:n] = X[idx]
        np.take(T, idx, axis=0, out=Ts[:n])
        if w is not None:
            np.take(w, idx, axis=0, out=ws[:n])
        return Xs[:n], Ts[:n], None if w is None else ws[:n], rows[:n], 0, steps

    @contextlib.contextmanager
    def _transposed(self, code, decays):
        """The weights a run trains: for plain SGD's fused update (no weight decay, so every
        step takes it) on at most TRANSPOSE_PARAMS parameters, each layer's W.T, copied into
        buffers of the plan and back into W when the run ends; else W itself."""
        model = self.model
        if code != self.kernels.PLAIN_SGD or decays.any() or model._theta.size > TRANSPOSE_PARAMS:
            yield model.W
            return
        if self._Wt is None:
            self._Wt = tuple(np.empty(W.shape[::-1], W.dtype) for W in model.W)
        for W, Wt in zip(model.W, self._Wt):
            np.copyto(Wt, W.T)
        try:
            yield self._Wt
        finally:
            for W, Wt in zip(model.W, self._Wt):
                np.copyto(W, Wt.T)

    def _timed(self, split, probe, done, seconds):
        """A run of `done` steps, two threads or not (`split`), a probe or not, took
        `seconds`: the time per step of its way, the steps of the next run of that way, the
        seconds since the last probe."""
        per_step = seconds / max(done, 1)
        if split and not self.warm:  # the first run on two threads wakes the second core
            self.warm = True
        else:
            self.per_step[split] = per_step
        if not probe:
            self.since_probe += seconds
        self.run[split] = max(1, int(RUN_SECONDS / max(per_step, 1e-7)))

    def _use_split(self, halves):
        """(whether the next run puts each batch's halves on two threads rather than both on
        this one, whether it is a probe of the slower way). `halves` is None when steps do
        not run as halves. Each way is timed on its first run, then the faster runs, and
        the other is timed again once the runs that are no probe have taken probe_gap times
        RUN_SECONDS since the last (see PROBE_EVERY; `_timed` adds up their seconds). Both
        ways compute the same numbers: the choice changes the time, never the fit."""
        if halves is None:
            return False, False
        timed = self.per_step
        if True not in timed or False not in timed:
            return True not in timed, False
        faster = timed[True] < timed[False]
        if self.since_probe >= self.probe_gap * RUN_SECONDS:  # after 1, 2, 4, then PROBE_EVERY
            self.since_probe, self.probe_gap = 0.0, min(2 * self.probe_gap, PROBE_EVERY)
            return not faster, True
        return faster, False

    def blas_threads(self, v):
        """One BLAS thread for a step of fewer than SPLIT_MACS multiply-adds (its products
        are too small to split, and OpenBLAS's threads spin for ~0.1 s after a product on
        several threads, slowing down the next run on two threads); the BLAS's own count
        for larger ones. fit runs an epoch's last, partial batch under it too: that step on
        two BLAS threads made the next epoch's two-thread runs 1.5-2x slower."""
        from .kernels import blas

        small = v.n * sum(W.size for W in self.model.W) < SPLIT_MACS
        return blas.one_thread() if small else contextlib.nullcontext()

    def _split(self, v, w):
        """The two halves of the B-row batch buffers and part 1's own gradient, when this
        fit's steps run as two halves (see SPLIT_PARAMS), else None."""
        B, model = v.n, self.model
        if (self.cores < 2 or w is not None or B % 2 or B // 2 < SPLIT_ROWS
                or model._theta.size > SPLIT_PARAMS
                or B * sum(W.size for W in model.W) >= SPLIT_MACS):
            return None
        key = (B, v.A[0].ctypes.data)  # the buffers of this fit's batches
        if key not in self._halves:
            from .kernels import cpu_split

            h = B // 2
            grad1 = np.zeros_like(model._grad)
            # where array a starts in the flat array `flat` (the model's grad or theta)
            at = lambda a, flat: (a.ctypes.data - flat.ctypes.data) // a.itemsize  # noqa: E731
            view = lambda gs: tuple(grad1[at(g, model._grad):][:g.size].reshape(g.shape)  # noqa: E731
                                    for g in gs)
            T_metric = v.T0 if self.has_labels else v.T
            rows = (slice(0, h), slice(h, B))
            pair = lambda arrays: tuple(tuple(a[r] for a in arrays) for r in rows)  # noqa: E731
            A = pair(v.A)
            self._halves[key] = SimpleNamespace(
                A=A, Xb=tuple(a[0] for a in A), D=pair(v.D), delta=pair(v.delta),
                Tb=tuple(v.T2d[r] for r in rows), T_loss=tuple(v.T[r] for r in rows),
                T_metric=tuple(T_metric[r] for r in rows), grad=(model._grad, grad1),
                dW=(model.dW, view(model.dW)), db=(model.db, view(model.db)),
                correct=(self.correct, np.zeros(1, np.int64)),
                Wt=tuple(np.empty(W.shape[::-1], W.dtype) for W in model.W),
                w_at=np.array([at(W, model._theta) for W in model.W], np.int64),
                cut=(model._theta.size // 2) // 16 * 16,  # each thread updates half of theta
                flags=np.zeros(cpu_split.FLAGS, np.int64), shared_loss=np.zeros(2),
                fn=cpu_split.split_steps_for(self.loss, self.metric))
        return self._halves[key]

    def _split_steps(self, halves, two_threads, X, T, order, start, steps, code, hyper, decays,
                     sums):
        """`steps` steps, each batch as two halves (kernels/cpu_split.py): on two threads,
        or on this one, both halves in turn (the same numbers) -- also when another fit's run
        holds the helper thread. Returns (steps done, whether two threads ran them)."""
        from .kernels import blas, cpu_split

        model = self.model
        code = self.kernels.SGD if code == self.kernels.PLAIN_SGD else code  # no fused update
        state = self._state(model.optimizer)
        step, size = model._opt_state["step"], model._theta.size
        halves.flags[:] = 0
        for W, Wt in zip(model.W, halves.Wt):  # the forward pass multiplies by W.T
            np.copyto(Wt, W.T)
        sums1 = tuple(np.zeros_like(x) for x in sums)
        halves.correct[1][0] = 0
        done, errors = [None, None], []
        helper = _helper() if two_threads else None  # None: busy with another fit's run
        alone = helper is None

        def run(p, lo, hi):
            try:
                done[p] = halves.fn(
                    p, alone, halves.flags, halves.shared_loss, X, T, order, start,
                    steps, halves.Xb, halves.Tb, halves.T_loss, halves.T_metric, halves.A,
                    halves.D, halves.delta, model.W, halves.Wt, halves.w_at, model.b,
                    halves.dW, halves.db, model._act, self.smoothing, model._theta,
                    halves.grad, lo, hi, code, hyper, state, step, decays, self.losses,
                    halves.correct, *zip(sums, sums1))
            except BaseException as e:  # the other thread must not wait for this one
                errors.append(e)
                halves.flags[cpu_split.ABORT] = 1

        with blas.one_thread():  # each thread's products on its own core
            if helper is not None:
                try:
                    second = helper.submit(run, 1, halves.cut, size)
                    run(0, 0, halves.cut)
                    second.result()
                finally:
                    _HELPER_FREE.release()
            else:
                run(0, 0, size)
        if errors:
            raise errors[0]
        for x, x1 in zip(sums, sums1):
            x += x1
        self.correct[0] += halves.correct[1][0]
        return done[0], not alone
