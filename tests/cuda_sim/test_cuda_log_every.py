"""fit(log_every=N) on the CUDA backend (under the simulator): the batch-level callbacks get
the running loss after every N-th step and the epoch's last, one device read each time,
and empty logs in between; the values are the CPU's running losses."""

import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import cuda as kcuda

r = np.random.default_rng(0)
X = r.normal(size=(18, 4)).astype(np.float32)
y = r.integers(0, 3, 18)


class Recorder(fastmlp.Callback):
    def __init__(self, reads):
        self.logs, self.reads, self.at = [], reads, []

    def on_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs or {}))
        self.at.append(self.reads[0])


def _counting(monkeypatch):
    reads = [0]
    original = kcuda.to_host

    def to_host(arr):
        reads[0] += 1
        return original(arr)

    monkeypatch.setattr(kcuda, "to_host", to_host)
    return reads


@pytest.mark.parametrize("log_every", [None, 1, 2])
def test_running_loss_every_n_steps(monkeypatch, log_every):
    gpu, cpu = (fastmlp.MLP([4, 5, 3], device=d, seed=0, optimizer=fastmlp.SGD(lr=0.1)) for d in ("cuda", "cpu"))
    gpu.set_weights(cpu.get_weights())
    reads = _counting(monkeypatch)
    rec, ref = Recorder(reads), Recorder([0])
    h = gpu.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0, callbacks=[rec], log_every=log_every)
    cpu.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0, callbacks=[ref])
    steps = 5
    logged = [s for s in range(steps) if log_every is not None and ((s + 1) % log_every == 0 or s == steps - 1)]
    assert [s for s, logs in enumerate(rec.logs) if logs] == logged
    for s in logged:
        assert set(rec.logs[s]) == {"loss"}
        assert rec.logs[s]["loss"] == pytest.approx(ref.logs[s]["loss"], rel=1e-5)
    # one device read per logged step, none on the others
    steps_reads = np.diff([rec.at[0] - (1 if 0 in logged else 0)] + rec.at)
    assert list(steps_reads) == [1 if s in logged else 0 for s in range(steps)]
    if logged:
        assert rec.logs[-1]["loss"] == pytest.approx(h.history["loss"][0], rel=1e-6)


def test_log_every_bad_input():
    m = fastmlp.MLP([4, 3], device="cuda", seed=0)
    with pytest.raises(ValueError, match="log_every"):
        m.fit(X, y, log_every=0, verbose=0)
    with pytest.raises(TypeError, match="log_every"):
        m.fit(X, y, log_every=1.5, verbose=0)
