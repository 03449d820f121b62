"""Host (Python) time per training step of the CUDA path, measured without a GPU.

The GPU runs a small network's step in tens of microseconds; what the host spends issuing
that step's launches is then the step's real cost. This measures that host time with the
launcher mocked: ``kernels.cuda.device._run`` (the one place a kernel is launched) records
the launch and returns at once, and device arrays are host NumPy arrays standing in for
them (the same stand-ins as the PTX test in tests/test_cuda_gpu.py). Everything fastmlp
does on the host per step is timed: the model's step, the argument checks, launch grids,
scratch look-ups, the fused-path decision, the gathering of a batch and the metrics. Not
timed: numba-cuda's own dispatch of each launch (typing and packing its arguments), which
needs a GPU; ``bench/gpu.py`` measures the whole host time per step there.

    python bench/cuda_host.py            # prints a table (needs numba-cuda, no GPU)
    pytest bench/test_bench_cuda_host.py # the same as pytest-benchmarks

Networks: a narrow fused one, 32-64-64-64-2 (batch 64) and MNIST's 784-256-128-10 (batch
128, per-layer kernels), float32, ReLU, softmax cross-entropy, SGD with momentum.
Two timings each: ``step`` (forward, loss, backward, update on a batch already on the
device: ``model._step``, the median of 1400 steps) and ``fit`` (per step of fit's loop:
gathering the batch, the step, the metrics, the loop: the median time between the starts
of two steps, noted by a callback with a batch hook).
"""

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (name, sizes, batch, steps per timed epoch)
NETWORKS = (
    ("narrow 32-64-64-64-2", (32, 64, 64, 64, 2), 64, 100),
    ("mnist 784-256-128-10", (784, 256, 128, 10), 128, 50),
)


class HostArray(np.ndarray):
    """A NumPy array with the methods of a numba device array that fastmlp calls."""

    def copy_to_host(self):
        return np.array(self)

    def copy_to_device(self, other):
        self[...] = other

    def is_c_contiguous(self):
        return self.flags.c_contiguous


def host(a):
    return np.ascontiguousarray(a).copy().view(HostArray)


@contextlib.contextmanager
def mocked_cuda(sm_count=132):
    """Inside: the CUDA backend runs without a GPU, every launch recorded in the returned
    list as (kernel, grid, block, args) and not run; device arrays are HostArray."""
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    from fastmlp.kernels import cuda as kc

    if kc.SIM:
        raise RuntimeError("the mocked launcher measures the real CUDA path: unset "
                           "NUMBA_ENABLE_CUDASIM before numba is imported")
    if kc.cuda is None:
        raise RuntimeError(f"numba-cuda is needed: {kc.device._IMPORT_ERROR}")
    launches = []
    saved = {}

    def patch(module, name, value):
        saved.setdefault((module, name), getattr(module, name))
        setattr(module, name, value)

    def record(kernel, grid, block, args):
        launches.append((kernel, grid, block, args))

    alloc = lambda shape, dtype: np.zeros(shape, dtype).view(HostArray)  # noqa: E731
    for module in (kc.device, kc.memory):
        patch(module, "_alloc", alloc)
    for module in (kc, kc.device):
        patch(module, "why_unavailable", lambda: None)
    patch(kc.device, "_context", lambda: None)
    patch(kc.device, "_run", record)
    for module in (kc, kc.memory):
        patch(module, "to_device", host)
        patch(module, "synchronize", lambda: None)
    sm = kc.device._sm_count[:]
    kc.device._sm_count[:] = [sm_count]
    try:
        yield launches
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)
        kc.device._sm_count[:] = sm


def make_model(sizes, dtype="float32"):
    import fastmlp

    return fastmlp.MLP(list(sizes), activation="relu", loss="cross_entropy", device="cuda",
                       optimizer=fastmlp.SGD(lr=0.01, momentum=0.9), dtype=dtype, seed=0)


def make_data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, sizes[0]), dtype=np.float32),
            rng.integers(0, sizes[-1], size=n))


def _step_timer_class():
    from fastmlp.callbacks import Callback

    class StepTimer(Callback):
        """Notes when each step of an epoch starts."""

        def __init__(self):
            super().__init__()
            self.gaps, self.last = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self.last = None

        def on_batch_begin(self, batch, logs=None):
            now = time.perf_counter()
            if self.last is not None:
                self.gaps.append(now - self.last)
            self.last = now

    return StepTimer


def _StepTimer():
    return _step_timer_class()()


class StepCase:
    """One network on the mocked backend, ready to time ``step()`` and ``epoch()``."""

    def __init__(self, sizes, batch, steps, launches):
        self.launches = launches
        self.model = make_model(sizes)
        self.X, self.y = make_data(sizes, batch * steps)
        self.batch, self.steps = batch, steps
        k = self.model._kernels
        n = batch
        buffers = self.model._buffers_for(n, self.y)
        self.v = buffers.views(n)
        k.write(self.v.A[0], self.X[:n])
        k.write(self.v.T, self.y[:n])
        self.total = k.zeros(1, np.float64)
        self.epoch()  # warm: buffers, kernel objects, configured launches

    def step(self):
        self.model._step(self.v, self.total)

    def epoch(self, epochs=1, callbacks=None):
        self.model.fit(self.X, self.y, epochs=epochs, batch_size=self.batch, shuffle=True,
                       verbose=0, callbacks=callbacks)

    def fit_per_step(self, repeat):
        """Seconds per step of fit's loop: the median time between the starts of two
        consecutive steps of an epoch (a callback notes them), over `repeat` epochs."""
        timer = _StepTimer()
        self.epoch(repeat, [timer])
        return float(np.median(timer.gaps))

    def launches_per_step(self):
        self.launches.clear()
        self.step()
        return len(self.launches)


def median_call(fn, calls):
    """The median time of one call of fn over `calls` calls (seconds)."""
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.median(times))


def measure(repeat=7, networks=NETWORKS):
    """[(name, launches per step, step us, fit us per step)]."""
    rows = []
    with mocked_cuda() as launches:
        for name, sizes, batch, steps in networks:
            case = StepCase(sizes, batch, steps, launches)
            n_launch = case.launches_per_step()
            t_step = median_call(case.step, 200 * repeat)
            t_fit = case.fit_per_step(repeat)
            rows.append((name, batch, n_launch, t_step * 1e6, t_fit * 1e6))
            launches.clear()
    return rows


def main():
    rows = measure()
    print("host time per training step, CUDA path, launcher mocked (no GPU work)")
    print(f"{'network':<24} {'batch':>5} {'launches':>8} {'step us':>9} {'fit us/step':>12}")
    for name, batch, n_launch, t_step, t_fit in rows:
        print(f"{name:<24} {batch:>5} {n_launch:>8} {t_step:>9.1f} {t_fit:>12.1f}")


if __name__ == "__main__":
    main()
