"""Data-parallel training over MPI: ``model.fit(X, y, ..., distributed="mpi")`` under
``mpiexec -n P python train.py``.

The model keeps its parameters in one flat array ``theta`` and their gradients in one flat
array ``grad``, so data parallelism is one in-place ``Allreduce`` of ``grad`` per step,
between backward and the optimizer update (the scheme of Horovod: one fused buffer, the
MPI library's ring or tree all-reduce). The update then runs on every process, on the same
summed gradient, so the weights stay identical everywhere.

Semantics::

    batch_size          per process; the global batch is P * batch_size (as DDP, Horovod)
    initial weights     rank 0's, broadcast at the start of fit (with the optimizer state)
    epoch order         rank 0's permutation, broadcast: seeds need not agree
    models              Sequential / MLP and the functional graph models (fastmlp.Model):
                        both train in _Network._train, which calls the hooks below; a graph
                        model's X is a list (or a dict by input name) of arrays, and every
                        array goes through the same rows, checksum and validation split
    shard="auto"        every process holds the same (X, y); at step k process r takes the
                        r-th consecutive slice of the k-th global batch, so P processes with
                        batch b take exactly the step one process takes with batch P * b.
                        A partial last global batch of B' samples is cut at r * B' // P.
    shard="local"       every process passes its own part; each shuffles its part, the step
                        count is the largest over the processes (a process whose part is
                        used up contributes nothing), the epoch ends together
    gradient            each process scales its batch's output delta by n_r / N_k (its
                        sample count over the global one), so that the SUM all-reduce gives
                        the mean over the global batch, partial batches included
    agreed              the epoch's loss and metrics (summed over processes), validation
                        scores, divergence (a non-finite loss on any process), the lr (rank
                        0's), stop_training (any process); every rank returns the same History
    rank 0 only         the progress bar and ModelCheckpoint
    sparse X            SciPy sparse input works as on one process (each process multiplies
                        its CSR rows); the overlapped all-reduce then waits for the whole
                        backward pass
    overlap             Sequential / MLP stacks on host backends only; sparse X, graph models
                        and resident (CUDA) training reduce the whole gradient after backward
    threads             cores / processes on the node for Numba and BLAS, unless the user
                        set NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or
                        MKL_NUM_THREADS
    failure             an exception on one process (other than an agreed divergence) prints
                        a message and ends the whole job with MPI_Abort

Not identical to one big batch: BatchNorm normalises each process's batch (as DDP without
SyncBatchNorm; the running statistics are averaged over the processes at each epoch's end)
and Dropout draws its masks from each process's own generator (give the processes
different seeds, e.g. ``seed=base + fastmlp.distributed.rank()``).

On CUDA each process drives one GPU; with a CUDA-aware MPI (``MPI(cuda_aware=True)`` or
``FASTMLP_MPI_CUDA_AWARE=1``) the device gradient goes to Allreduce as it is (mpi4py takes
``__cuda_array_interface__``), otherwise it goes through the host.

The scikit-learn estimators take the same ``distributed="mpi"`` (shard "auto"): their
own epoch loop (``fastmlp.sklearn._Epochs``) calls the same hooks of ``DataParallel`` as
``model.fit`` does, with scikit-learn's order of the samples drawn from rank 0's random
state; see ``fastmlp.MLPClassifier``. Full-batch L-BFGS (``fastmlp.fit_lbfgs(...,
distributed="mpi")``, the estimators' solver='lbfgs') splits the rows over the processes
and runs SciPy on rank 0 (see ``fastmlp.lbfgs``).

Importing this module never imports MPI; ``mpi4py`` is loaded on first use
(``pip install "fastmlp[distributed]"`` brings mpi4py and the MPICH wheel).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
import zlib
from contextlib import contextmanager
from typing import Any, Optional

import numpy as np

from .kernels.codes import IDENTITY

SHARDS = ("auto", "local")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_threads_set = False


def _mpi():
    """mpi4py's MPI module (initialises MPI on first use), or a clear ImportError."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "distributed training needs mpi4py and an MPI library: pip install "
            "'fastmlp[distributed]' (mpi4py + the MPICH wheel), or on a cluster mpi4py built "
            f"against the system MPI (pip install mpi4py). ({exc})"
        ) from None
    return MPI


def _has_mpi4py():
    try:
        import mpi4py  # noqa: F401  (the package only: MPI starts with mpi4py.MPI)
    except ImportError:
        return False
    return True


def rank() -> int:
    """This process's rank in MPI_COMM_WORLD (0 without mpi4py)."""
    return _mpi().COMM_WORLD.Get_rank() if _has_mpi4py() else 0


def size() -> int:
    """The number of processes in MPI_COMM_WORLD (1 without mpi4py)."""
    return _mpi().COMM_WORLD.Get_size() if _has_mpi4py() else 1


def is_main() -> bool:
    """True on rank 0: the process that prints and writes checkpoints."""
    return rank() == 0


def broadcast(value: Any, root: int = 0) -> Any:
    """`value` as the process `root` has it (any picklable object)."""
    return _mpi().COMM_WORLD.bcast(value, root=root)


class MPI:
    """The settings of data-parallel training; ``distributed="mpi"`` is ``MPI()``.

    comm: an mpi4py communicator (default COMM_WORLD).
    overlap: start each layer bucket's all-reduce (non-blocking Iallreduce) as soon as
        backward has produced it, as PyTorch DDP does; Sequential / MLP on host backends
        only (elsewhere one Allreduce after backward). Off by default: on this project's
        measurements it did not help (see docs/distributed.md).
    bucket_bytes: the size from which a bucket is closed (with overlap).
    check_sync: compare a checksum of the weights across processes at every epoch's end
        and raise when they differ (default: on when FASTMLP_DEBUG=1).
    cuda_aware: the MPI library reads device memory (default: FASTMLP_MPI_CUDA_AWARE=1).
    """

    def __init__(self, comm: Any = None, overlap: bool = False, bucket_bytes: int = 256 * 1024,
                 check_sync: Optional[bool] = None, cuda_aware: Optional[bool] = None) -> None:
        for name, value in (("overlap", overlap), ("check_sync", check_sync), ("cuda_aware", cuda_aware)):
            if value is not None and not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False; got {value!r}")
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) or bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be a positive integer; got {bucket_bytes!r}")
        self.comm = comm
        self.overlap = bool(overlap)
        self.bucket_bytes = int(bucket_bytes)
        self.check_sync = (os.environ.get("FASTMLP_DEBUG", "") == "1") if check_sync is None else bool(check_sync)
        self.cuda_aware = (os.environ.get("FASTMLP_MPI_CUDA_AWARE", "") == "1") if cuda_aware is None else bool(cuda_aware)

    def __repr__(self):
        return (f"MPI(overlap={self.overlap}, bucket_bytes={self.bucket_bytes}, "
                f"check_sync={self.check_sync}, cuda_aware={self.cuda_aware})")


def strategy(distributed):
    """An MPI settings object from fit's ``distributed`` argument ("mpi" or an MPI)."""
    if isinstance(distributed, MPI):
        return distributed
    if isinstance(distributed, str) and distributed.strip().lower() == "mpi":
        return MPI()
    raise ValueError(f"distributed must be None, 'mpi' or fastmlp.distributed.MPI(...); got {distributed!r}")


def check_shard(shard, distributed):
    if not isinstance(shard, str) or shard not in SHARDS:
        raise ValueError(f"shard must be one of {list(SHARDS)}; got {shard!r}")
    if distributed is None and shard != "auto":
        raise ValueError(f"shard={shard!r} needs distributed='mpi'")
    return shard


class _Agreed(Exception):
    """Marks an error every process raises at the same point (no abort needed)."""


def connect(distributed, shard="auto"):
    """The DataParallel state of one fit (or one estimator fit) from its ``distributed`` and
    ``shard`` arguments: the communicator, the settings, this process's rank."""
    settings = strategy(distributed)
    check_shard(shard, distributed)
    MPIlib = _mpi()
    comm = settings.comm if settings.comm is not None else MPIlib.COMM_WORLD
    return DataParallel(comm, settings, shard)


def fit(model, distributed, shard, *args, **kwargs):
    """model.fit(*args, **kwargs) as one process of a data-parallel job (see the module)."""
    run = connect(distributed, shard)
    if getattr(model, "_dist", None) is not None:
        raise RuntimeError("this model is already training over MPI (fit called from its own callback?)")
    model._dist = run
    try:
        with run.abort_on_failure():
            return model.fit(*args, **kwargs)
    finally:
        model._dist = None


def _set_threads(comm):
    """Share the node's cores between the processes on it (once per process)."""
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    MPIlib = _mpi()
    local = comm.Split_type(MPIlib.COMM_TYPE_SHARED).Get_size()
    if local <= 1:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per = max(1, cores // local)
    if "NUMBA_NUM_THREADS" not in os.environ:
        import numba

        numba.set_num_threads(min(per, numba.config.NUMBA_NUM_THREADS))
    if not any(v in os.environ for v in _THREAD_VARIABLES):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the BLAS keeps its own count; say how to set it
            return
        threadpool_limits(per, user_api="blas")


def _checksum(*arrays):
    """A CRC-32 of the arrays' bytes (SciPy sparse: of data, indices and indptr); None
    entries are skipped."""
    crc = 0
    for a in arrays:
        if a is None:
            continue
        parts = (a.data, a.indices, a.indptr) if hasattr(a, "indptr") else (a,)
        for part in parts:
            part = np.ascontiguousarray(part)
            crc = zlib.crc32(part.reshape(-1).view(np.uint8), crc)
    return crc


class DataParallel:
    """One fit's data-parallel state and the hooks that the two training loops call,
    ``_Network._train`` (fit of Sequential, MLP and graph Models) and the estimators'
    ``_Epochs.run`` (see the module)::

        begin            agree on the setup, rank 0's weights; the global steps per epoch
        order_for_epoch  rank 0's order and learning rate
        part             this process's positions in the epoch's order for global step k
        step             forward, loss, backward of the part; one Allreduce; the update
        agree_epoch      the epoch's loss (and metrics) summed over the processes
        evaluate / rows  validation split by rows over the processes
        end_epoch        stop when any process asks; the weights' checksum in debug mode
    """

    def __init__(self, comm, settings, shard):
        self.comm = comm
        self.settings = settings
        self.shard = shard
        self.P = comm.Get_size()
        self.r = comm.Get_rank()
        self.MPI = _mpi()
        self.diverged = False

    # ---------------------------------------------------------------------------------
    # failure

    def agreed(self, exc):
        """Whether every process raises `exc` at the same point (divergence, or a check
        that compared values gathered from all processes)."""
        return isinstance(exc, _Agreed) or (isinstance(exc, FloatingPointError) and (
            self.diverged or str(exc).startswith("training diverged")))

    @contextmanager
    def abort_on_failure(self):
        """Errors every process raises together pass through; any other error (one process
        failing alone would leave the others waiting in a collective) ends the MPI job."""
        try:
            yield self
        except BaseException as exc:
            if self.agreed(exc):
                raise
            self.abort(exc)
            raise  # Abort does not return; should an MPI library's return, fail all the same

    def abort(self, exc):
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        sys.stderr.write("".join(lines))
        sys.stderr.write(
            f"fastmlp: process {self.r} of {self.P} failed during fit "
            f"({type(exc).__name__}: {exc}); ending the MPI job (MPI_Abort)\n")
        sys.stderr.flush()
        # mpiexec forwards a process's stderr asynchronously and Abort tears the job's pipes
        # down: without a moment's wait the message above is lost now and then (seen with
        # MPICH's hydra, about 1 run in 4)
        time.sleep(0.5)
        self.comm.Abort(1)

    def agreed_random_state(self, random_state, state):
        """A scikit-learn random state every process shares: an int seed is shared already;
        otherwise (None, a RandomState) rank 0 draws a seed from `state` and broadcasts it."""
        if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
            return state
        seed = int(state.randint(np.iinfo(np.int32).max)) if self.r == 0 else None
        return np.random.RandomState(self.comm.bcast(seed, root=0))

    def main_value(self, value):
        """Rank 0's `value` on every process (what decides a branch must not differ)."""
        return self.comm.bcast(value, root=0)

    def reduce_to_main(self, values):
        """The sum over the processes of a float64 array, on rank 0 (None elsewhere)."""
        values = np.ascontiguousarray(values, np.float64)
        total = np.empty_like(values) if self.r == 0 else None
        self.comm.Reduce(values, total, op=self.MPI.SUM, root=0)
        return total

    def allgather(self, value):
        """[every process's value] in rank order, on every process (small picklable values)."""
        return self.comm.allgather(value)

    def _fail(self, message):
        """Raise the same ValueError on every process (a check over gathered values)."""
        error = type("AgreedValueError", (_Agreed, ValueError), {})
        raise error(message)

    # ---------------------------------------------------------------------------------
    # start: agreement on the setup, rank 0's weights, the step count

    def begin(self, model, n, batch, T, X=None, w=None):
        """Check that the processes agree (with shard='auto' and X given: on the data
        itself, by a checksum of every input array, T and w; X is one array or a tuple of
        them, one per model input), start them from rank 0's weights and optimizer state,
        and return the global number of steps per epoch."""
        _set_threads(self.comm)
        self.model = model
        self.k = model._kernels
        self.resident = model._resident
        auto = self.shard == "auto"
        Xs = X if isinstance(X, tuple) else (X,)
        setup = (model.n_parameters, list(model._input_widths), model.dtype.name, model.loss,
                 type(model.optimizer).__name__, model.device, batch, n if auto else None,
                 _checksum(*Xs, T, w) if auto and X is not None else None)
        everyone = self.comm.allgather(setup)
        names = ("parameters", "input widths", "dtype", "loss", "optimizer", "device", "batch_size",
                 "samples", "the data (checksums of every input array, y and sample_weight)")
        for i, name in enumerate(names):
            values = [s[i] for s in everyone]
            if any(v != values[0] for v in values):
                hint = " (shard='auto' needs the same data on every process; use shard='local')" \
                    if name in names[-2:] else ""
                self._fail(f"distributed fit: the processes disagree on {name}: {values} (by rank){hint}")
        if self.shard == "auto" and n < self.P:
            self._fail(f"distributed fit: {n} samples for {self.P} processes; each needs >= 1")
        snapshot = self.comm.bcast(model._snapshot() if self.r == 0 else None, root=0)
        if self.r != 0:
            model._restore(snapshot)
        self.batch = batch
        self.global_batch = self.P * batch
        self.n = n
        self.counts = np.array(self.comm.allgather(n)) if self.shard == "local" else None
        self.N = n if self.shard == "auto" else int(self.counts.sum())
        self.ss_tot = self._ss_tot(model, T)
        if self.shard == "auto":
            steps = -(-n // (self.P * batch))
        else:
            steps = int(max(-(-c // batch) for c in self.counts))
        self.steps = steps
        self._zeros = np.zeros(model.n_parameters, model.dtype)
        self._nan = np.full(model.n_parameters, np.nan, model.dtype)
        from .model import Sequential

        # overlap follows Sequential's layer stack; a graph Model reduces after its backward
        overlap = self.settings.overlap and not self.resident and isinstance(model, Sequential)
        self._buckets = self._make_buckets(model) if overlap else None
        return steps

    def _ss_tot(self, model, T):
        """Per-output sum of squares about the mean of all processes' targets (regression's
        R^2), by Chan's pairwise combination of each part's count, mean and sum of squares."""
        if model.loss != "mse" or self.shard == "auto":
            return None
        T64 = np.asarray(T, np.float64).reshape(T.shape[0], -1)
        mean = T64.mean(axis=0)
        parts = self.comm.allgather((T64.shape[0], mean, ((T64 - mean) ** 2).sum(axis=0)))
        N = sum(c for c, _, _ in parts)
        grand = sum(c * m for c, m, _ in parts) / N
        return sum(M2 + c * (m - grand) ** 2 for c, m, M2 in parts)

    def callbacks(self, model, cbs):
        """The callbacks of this process: the progress bar and checkpoints on rank 0 only;
        the run's parameters say the global samples, batch and process count."""
        from .callbacks import ModelCheckpoint, ProgressBar

        extra = {"samples": self.N, "processes": self.P, "global_batch_size": self.P * self.batch}
        model._fit_params.update(extra)
        cbs[0].params.update(extra)  # the History
        if self.r == 0:
            return cbs
        return [cb for cb in cbs if not isinstance(cb, (ProgressBar, ModelCheckpoint))]

    # ---------------------------------------------------------------------------------
    # each epoch and step

    def order_for_epoch(self, order):
        """Rank 0's order of the samples (shard='auto'); each process's own (shard='local')."""
        if self.shard == "auto":
            order = np.ascontiguousarray(order, np.int64)
            self.comm.Bcast(order, root=0)
        lr = self.comm.bcast(self.model.optimizer.lr, root=0)  # rank 0's schedule
        if lr != self.model.optimizer.lr:
            self.model.optimizer.lr = lr
        return order

    def rows(self, n):
        """This process's consecutive part [lo, hi) of n rows: the r-th of P (shard='auto')."""
        return self.r * n // self.P, (self.r + 1) * n // self.P

    def part(self, step):
        """The positions [lo, hi) in the epoch's order of this process's samples at global
        step `step` (shard='auto': the r-th consecutive slice of the step's global batch of
        P * batch, or of what is left of the epoch; shard='local': its own next batch), and
        sets the step's global sample count."""
        if self.shard == "auto":
            start = step * self.global_batch
            Bk = min(self.global_batch, self.n - start)
            self.n_global = Bk
            lo, hi = self.rows(Bk)
            return start + lo, start + hi
        start = step * self.batch
        self.n_global = int(np.clip(self.counts - start, 0, self.batch).sum())
        return min(start, self.n), min(start + self.batch, self.n)

    def step(self, model, v, total=None, X0=None):
        """forward, loss, backward of this process's part of the global batch (X0: its CSR
        rows, for sparse input), the summed gradient, the update; returns the local batch's
        mean loss, or a non-finite value when the loss was not finite on any process (then
        nothing was updated)."""
        k = self.k
        loss = 0.0 if total is None else None
        backward = False
        if v.n:
            model._forward(v, True, X0)
            loss = model._loss_and_grad(v, total)
            backward = loss is None or math.isfinite(loss)
            if backward:
                k.scale(v.dout.reshape(-1), v.n / self.n_global)  # this part's share
        if not backward:  # a used-up part contributes zero; a non-finite loss a NaN
            k.write(model._grad, self._zeros if v.n == 0 else self._nan)
        if self._buckets is not None and X0 is None:
            self._backward_overlapped(model, v, backward)
        else:
            if backward:
                model._backward(v, X0)
            self.allreduce_gradient(model._grad)
        if not self.resident and not math.isfinite(model._grad[0]):
            losses = self.comm.allgather(loss)
            bad = [x for x in losses if x is not None and not math.isfinite(x)]
            if bad:  # the same value, hence the same message, on every process
                self.diverged = True
                return bad[0]
        model._update()
        return loss

    def allreduce_gradient(self, grad):
        """grad = the sum of every process's grad, in place (one Allreduce)."""
        MPIlib = self.MPI
        if not self.resident:
            self.comm.Allreduce(MPIlib.IN_PLACE, grad, op=MPIlib.SUM)
        elif self.settings.cuda_aware:  # the device buffer as it is
            self.k.synchronize()
            self.comm.Allreduce(MPIlib.IN_PLACE, grad, op=MPIlib.SUM)
        else:  # through the host
            host = self.k.to_host(grad)
            self.comm.Allreduce(MPIlib.IN_PLACE, host, op=MPIlib.SUM)
            self.k.write(grad, host)

    # overlap: each bucket of layers reduced while backward goes on to the layers before it

    def _make_buckets(self, model):
        """[(first layer, lo, hi)] from the last layer back: layers whose parameters together
        reach bucket_bytes, as slices of the flat gradient."""
        offsets, offset = [], 0
        for layer in model.layers:
            size = sum(math.prod(s) for s in layer.param_shapes().values())
            offsets.append((offset, offset + size))
            offset += size
        buckets, hi = [], None
        for l in reversed(range(len(model.layers))):
            lo_l, hi_l = offsets[l]
            hi = hi_l if hi is None else hi
            if (hi - lo_l) * model.dtype.itemsize >= self.settings.bucket_bytes or l == 0:
                buckets.append((l, lo_l, hi))
                hi = None
        return buckets

    def _backward_overlapped(self, model, v, backward=True):
        """Backward layer by layer from the last; each bucket's Iallreduce starts when its
        first layer is done (every process issues the same buckets in the same order)."""
        MPIlib, k = self.MPI, self.k
        starts = {l: (lo, hi) for l, lo, hi in self._buckets}
        requests = []
        for l in reversed(range(len(model.layers))):
            if backward and l > 0:
                model.layers[l].backward(k, v.delta[l], v.A[l], v.D[l], model._act[l - 1],
                                         v.delta[l - 1], v.s[l])
            elif backward:
                model.layers[0].backward(k, v.delta[0], v.A[0], None, IDENTITY, None, v.s[0])
            if l in starts and starts[l][1] > starts[l][0]:
                lo, hi = starts[l]
                requests.append(self.comm.Iallreduce(MPIlib.IN_PLACE, model._grad[lo:hi], op=MPIlib.SUM))
            for req in requests:  # let MPI move the ones in flight
                req.Test()
        MPIlib.Request.Waitall(requests)

    # ---------------------------------------------------------------------------------
    # the epoch's end

    def _metric_sums(self, metrics):
        """[seen, correct, abs_err..., sq_err...] of a _Metrics (float64, on the host)."""
        k = self.k
        if metrics.poisson:  # its loss is its metric
            return np.array([metrics.seen, 0.0])
        if metrics.classification:
            correct = int(k.to_host(metrics.correct_total)[0]) if metrics.resident else metrics.correct
            return np.array([metrics.seen, correct], np.float64)
        return np.concatenate([[metrics.seen, 0.0], k.to_host(metrics.abs_err), k.to_host(metrics.sq_err)])

    def _set_metric_sums(self, metrics, sums, ss_tot=None):
        k = self.k
        metrics.seen = int(sums[0])
        if metrics.poisson:
            return
        if metrics.classification:
            if metrics.resident:
                k.write(metrics.correct_total, np.array([int(sums[1])], np.int64))
            metrics.correct = int(sums[1])
            return
        K = (sums.size - 2) // 2
        k.write(metrics.abs_err, sums[2 : 2 + K])
        k.write(metrics.sq_err, sums[2 + K :])
        if ss_tot is not None:
            metrics.ss_tot = ss_tot
        metrics.n_total = metrics.seen

    def _sum(self, values):
        values = np.ascontiguousarray(values, np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.SUM)
        return values

    def agree_epoch(self, model, loss_sum, loss_total, metrics=None):
        """The epoch's loss sum and metrics (when given) summed over the processes, in place
        (loss_total on the device); BatchNorm's running statistics averaged. Returns the loss
        sum; a non-finite one is a divergence every process sees."""
        k = self.k
        local = loss_sum if loss_total is None else float(k.to_host(loss_total)[0])
        mine = [local] if metrics is None else np.concatenate([[local], self._metric_sums(metrics)])
        sums = self._sum(mine)
        if metrics is not None:
            self._set_metric_sums(metrics, sums[1:], self.ss_tot)
        if loss_total is not None:
            k.write(loss_total, sums[:1])
        if not math.isfinite(sums[0]):
            self.diverged = True
        for slot, layer in zip(model._slots, model.layers):
            for name in layer.state_shapes():
                arr = getattr(slot, name)
                k.write(arr, (self._sum(k.to_host(arr)) / self.P).astype(model.dtype))
        return float(sums[0])

    def evaluate(self, model, X, T, labels):
        """Validation scores over all processes: with shard='auto' process r evaluates the
        r-th part of the (shared) validation set; with 'local' its own; the sums are added."""
        from ._metrics import _Metrics

        Xs = X if isinstance(X, tuple) else (X,)  # one array per model input
        n = Xs[0].shape[0]
        lo, hi = self.rows(n) if self.shard == "auto" else (0, n)
        metrics = _Metrics(model, T if labels is None else None)
        if hi > lo:
            part = model._evaluate_sums(tuple(x[lo:hi] for x in Xs), T[lo:hi],
                                        None if labels is None else labels[lo:hi])
            loss_sum, sums = part[0], self._metric_sums(part[1])
        else:
            loss_sum, sums = 0.0, self._metric_sums(metrics) * 0
        sums = self._sum(np.concatenate([[loss_sum], sums]))
        ss_tot = self._ss_tot(model, T) if self.shard == "local" else None
        self._set_metric_sums(metrics, sums[1:], ss_tot)
        return {"loss": float(sums[0]) / metrics.seen, **metrics.result(final=True)}

    def end_epoch(self, model, stop):
        """Whether any process asks to stop; in debug mode, the weights' checksum."""
        stop = self.comm.allreduce(bool(stop), op=self.MPI.LOR)
        if self.settings.check_sync:
            self.check_in_sync(model)
        return stop

    def check_in_sync(self, model):
        """Raise (on every process) when the weights differ between processes."""
        crc = zlib.crc32(np.ascontiguousarray(self.k.to_host(model._theta)).view(np.uint8))
        crcs = self.comm.allgather(crc)
        if len(set(crcs)) > 1:
            self._fail(f"distributed fit: the weights differ between processes (checksums by rank: "
                       f"{crcs}); the MPI library's Allreduce did not give every process the same sum")
