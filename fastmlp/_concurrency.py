"""What makes one model safe to use from several threads at once.

Inference (predict, predict_proba, evaluate, score) keeps nothing on the model while it runs:
each call takes its buffers from a free-list (``BufferPool``) and gives them back. Training
changes the weights in place, so a model has one ``TrainingGuard``:

- one thread at a time trains (``fit``, ``train_step``, ``set_weights``, ``gradcheck``);
  another thread that tries gets a RuntimeError saying the model is being trained;
- each whole training step (and every other write of the weights) runs under ``step_lock``;
- inference from the training thread itself (validation, callbacks) reads the live weights;
  inference from any other thread while training runs works on a copy of the parameters
  taken under ``step_lock``, so it sees the weights of one whole step, never a half-updated
  parameter vector; with no training under way it reads the live weights, and training
  waits (at its start) for such reads to finish.

A KeyboardInterrupt (Ctrl-C) during ``fit`` in the main thread is held back until the step
under way has finished (``deferred_sigint``), so the model stays usable: its weights and
optimizer state are those after a whole step, and fit can be called again.
"""

import signal
import threading
from contextlib import contextmanager

#: at most this many idle inference buffer sets are kept per model
POOL_SIZE = 8


class BufferPool:
    """A free-list of inference buffers: ``take`` pops one (or makes one), ``give`` puts it
    back. list.pop and list.append are atomic, so no lock is needed; a buffer is only ever
    used by the one call that took it. ``clear`` starts a new list (buffers taken from the
    old one go back to the old one and are dropped with it)."""

    def __init__(self):
        self._free = []

    def take(self, make, capacity, sparse=False):
        """A buffer set for `capacity` rows (of sparse input: no dense first layer)."""
        free = self._free
        try:
            buf = free.pop()
        except IndexError:
            buf = None
        if buf is None or buf.capacity < capacity or buf.sparse != sparse:
            buf = make(capacity)
        buf.pool = free
        return buf

    @staticmethod
    def give(buf):
        if len(buf.pool) < POOL_SIZE:
            buf.pool.append(buf)

    def clear(self):
        self._free = []


class TrainingGuard:
    """One model's training guard (see the module's docstring)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._trainer = None  # the thread that trains, or None
        self._depth = 0  # nested training sections of that thread (fit -> set_weights)
        self._readers = 0  # inference calls of other threads reading the live weights
        #: held through each whole training step and every other write of the weights
        self.step_lock = threading.RLock()

    @contextmanager
    def training(self, what="fit"):
        me = threading.get_ident()
        with self._cond:
            if self._trainer not in (None, me):
                raise RuntimeError(
                    f"{what}: this model is being trained in another thread; train one model "
                    "from one thread at a time (inference from other threads is fine)"
                )
            self._depth += 1
            if self._trainer is None:
                self._trainer = me
                self._cond.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._trainer = None

    @contextmanager
    def reading(self, copy_parameters):
        """Inference: yields None to read the live weights, or `copy_parameters()` (taken
        under step_lock) when another thread is training."""
        me = threading.get_ident()
        with self._cond:
            live = self._trainer in (None, me)
            if live:
                self._readers += 1
        if not live:
            with self.step_lock:
                params = copy_parameters()
            yield params
            return
        try:
            yield None
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()


@contextmanager
def deferred_sigint():
    """Hold SIGINT back inside the block (main thread only); ``check()`` on the yielded
    object raises the KeyboardInterrupt (or runs the previous handler) at a safe point."""
    pending = _Pending()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    try:
        previous = signal.signal(signal.SIGINT, pending.record)
    except (ValueError, OSError):  # e.g. an embedding interpreter without signals
        yield pending
        return
    pending.previous = previous
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, previous)
    pending.check()  # a Ctrl-C during the last step is not lost


class _Pending:
    def __init__(self):
        self.signals = []
        self.previous = None

    def record(self, signum, frame):
        self.signals.append((signum, frame))

    def check(self):
        if not self.signals:
            return
        signum, frame = self.signals[0]
        self.signals.clear()
        previous = self.previous
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        else:
            raise KeyboardInterrupt
