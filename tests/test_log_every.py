"""fit(log_every=N): checked on every backend; on the host backends the batch logs carry the
loss after every step anyway (the CUDA behaviour is tested under the simulator,
tests/cuda_sim/test_cuda_log_every.py)."""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(18, 4)).astype(np.float32)
y = rng.integers(0, 3, 18)


class Recorder(fm.Callback):
    def __init__(self):
        self.logs = []

    def on_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs or {}))


def test_cpu_batch_logs_every_step_with_or_without_log_every():
    for log_every in (None, 3):
        rec = Recorder()
        fm.MLP([4, 5, 3], device="cpu", seed=0).fit(X, y, epochs=1, batch_size=4, verbose=0,
                                                  callbacks=[rec], log_every=log_every)
        assert len(rec.logs) == 5 and all("loss" in logs for logs in rec.logs)


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError),
                                       (True, TypeError)])
def test_log_every_bad_input(bad, error):
    with pytest.raises(error, match="log_every"):
        fm.MLP([4, 3], device="cpu").fit(X, y, verbose=0, log_every=bad)


def test_log_every_with_mpi_is_refused():
    with pytest.raises(ValueError, match="log_every"):
        fm.MLP([4, 3], device="cpu").fit(X, y, verbose=0, log_every=2, distributed="mpi")
