"""One process of the data-parallel tests (tests/test_distributed.py starts it with
``mpiexec -n 2``). Usage: ``mpi_worker.py OUTDIR SCENARIO...``; each scenario writes
``OUTDIR/<scenario>-<rank>.npz`` (the flat weights, the History as JSON, notes).

The data and models are made by the functions the test file imports, so both sides see the
same problem."""

import json
import os
import sys

import numpy as np

import fastmlp as fm
from fastmlp import distributed

N, FEATURES, CLASSES, BATCH, EPOCHS = 301, 10, 3, 64, 3
LOCAL_SPLIT = 170  # shard="local": rank 0 holds rows [0, 170), rank 1 rows [170, 301)


def data(dtype="float64"):
    rng = np.random.default_rng(5)
    return rng.normal(size=(N, FEATURES)).astype(dtype), rng.integers(0, CLASSES, N)


def model(optimizer, dtype, seed, device="cpu", sizes=(FEATURES, 16, CLASSES)):
    opt = fm.SGD(lr=0.1, momentum=0.9) if optimizer == "sgd" else fm.Adam(lr=0.01)
    return fm.MLP(list(sizes), optimizer=opt, dtype=dtype, seed=seed, device=device)


def flat(m):
    return np.concatenate([w.ravel().astype(np.float64) for w in m.get_weights()])


def save(outdir, name, m, history=None, **notes):
    r = distributed.rank()
    h = {} if history is None else {"history": history.history, "epoch": history.epoch,
                                    "params": history.params}
    np.savez(os.path.join(outdir, f"{name}-{r}.npz"), weights=flat(m),
             meta=json.dumps({**h, **notes}))


def auto(outdir, name, optimizer, dtype):
    X, y = data(dtype)
    m = model(optimizer, dtype, seed=distributed.rank())  # seeds need not agree: rank 0's rules
    cbs = [fm.ExponentialDecay(0.9)]
    h = m.fit(X, y, epochs=EPOCHS, batch_size=BATCH, validation_split=0.1, callbacks=cbs,
              verbose=0, distributed="mpi")
    save(outdir, name, m, h)


def overlap(outdir):
    """Each layer's gradient reduced (Iallreduce) while backward goes on."""
    X, y = data("float64")
    m = model("sgd", "float64", seed=0)
    h = m.fit(X, y, epochs=EPOCHS, batch_size=BATCH, verbose=0,
              distributed=distributed.MPI(overlap=True, bucket_bytes=1, check_sync=True))
    save(outdir, "overlap", m, h)


def local(outdir, name, optimizer, dtype):
    X, y = data(dtype)
    r = distributed.rank()
    part = slice(0, LOCAL_SPLIT) if r == 0 else slice(LOCAL_SPLIT, N)
    m = model(optimizer, dtype, seed=10 + r)
    h = m.fit(X[part], y[part], epochs=EPOCHS, batch_size=BATCH, verbose=0, distributed="mpi",
              shard="local")
    save(outdir, name, m, h)


def diverge(outdir):
    """Rank 1's part holds a sample that overflows float32: both processes must stop."""
    X, y = data("float32")
    r = distributed.rank()
    part = slice(0, LOCAL_SPLIT) if r == 0 else slice(LOCAL_SPLIT, N)
    Xp = X[part].copy()
    if r == 1:
        Xp[7] = 3e38
    m = model("sgd", "float32", seed=0)
    try:
        m.fit(Xp, y[part], epochs=2, batch_size=BATCH, verbose=0, distributed="mpi", shard="local")
        message = None
    except FloatingPointError as exc:
        message = str(exc)
    save(outdir, "diverge", m, message=message)


class CountingCheckpoint(fm.ModelCheckpoint):
    saves = 0

    def on_epoch_end(self, epoch, logs=None):
        CountingCheckpoint.saves += 1
        super().on_epoch_end(epoch, logs)


def resume(outdir):
    """Three epochs with checkpoints; then a restart from the first checkpoint for two."""
    X, y = data("float64")
    path = os.path.join(outdir, "ckpt-{epoch}.npz")
    m = model("sgd", "float64", seed=0)
    m.fit(X, y, epochs=3, batch_size=BATCH, verbose=0, distributed="mpi",
          callbacks=[CountingCheckpoint(path)])
    distributed._mpi().COMM_WORLD.Barrier()
    resumed = fm.load(os.path.join(outdir, "ckpt-1.npz"))
    resumed.fit(X, y, epochs=2, batch_size=BATCH, verbose=0, distributed="mpi")
    save(outdir, "resume", m, saves=CountingCheckpoint.saves, resumed=flat(resumed).tolist())


def stop(outdir):
    """Rank 1 alone asks to stop after the first epoch: both stop."""
    X, y = data("float64")
    r = distributed.rank()
    asker = fm.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(m, "stop_training", r == 1))
    m = model("sgd", "float64", seed=0)
    h = m.fit(X, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, distributed="mpi", callbacks=[asker])
    save(outdir, "stop", m, h)


def sklearn(outdir):
    X, y = data("float64")
    clf = fm.MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", batch_size=BATCH, max_iter=3,
                           random_state=0, learning_rate_init=0.1, device="cpu", distributed="mpi")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    save(outdir, "sklearn", clf.model_, loss_curve=clf.loss_curve_)


def fail(outdir):
    """Rank 1 raises in a callback: the job must end with MPI_Abort and a message."""
    X, y = data("float64")
    r = distributed.rank()

    def boom(epoch, logs):
        if r == 1:
            raise RuntimeError("callback failed on purpose")

    m = model("sgd", "float64", seed=0)
    m.fit(X, y, epochs=50, batch_size=BATCH, verbose=0, distributed="mpi",
          callbacks=[fm.LambdaCallback(on_epoch_end=boom)])


def cuda(outdir):
    """Under the CUDA simulator: the device gradient through the host and as it is (what a
    CUDA-aware MPI takes); rank 0 also trains the single-process reference."""
    rng = np.random.default_rng(3)
    n, sizes = 21, (4, 8, 3)
    X, y = rng.normal(size=(n, 4)), rng.integers(0, 3, n)
    for aware in (False, True):
        m = model("sgd", "float64", seed=distributed.rank(), device="cuda", sizes=sizes)
        h = m.fit(X, y, epochs=2, batch_size=4, verbose=0,
                  distributed=distributed.MPI(cuda_aware=aware, check_sync=True))
        save(outdir, f"cuda-aware{int(aware)}", m, h)
    if distributed.rank() == 0:
        ref = model("sgd", "float64", seed=0, device="cuda", sizes=sizes)
        h = ref.fit(X, y, epochs=2, batch_size=8, verbose=0)
        save(outdir, "cuda-single", ref, h)


SCENARIOS = {
    "auto-sgd64": lambda out: auto(out, "auto-sgd64", "sgd", "float64"),
    "auto-adam32": lambda out: auto(out, "auto-adam32", "adam", "float32"),
    "local-sgd64": lambda out: local(out, "local-sgd64", "sgd", "float64"),
    "local-adam32": lambda out: local(out, "local-adam32", "adam", "float32"),
    "overlap": overlap, "diverge": diverge, "resume": resume, "stop": stop, "sklearn": sklearn, "fail": fail,
    "cuda": cuda,
}

if __name__ == "__main__":
    outdir, names = sys.argv[1], sys.argv[2:]
    for name in names:
        SCENARIOS[name](outdir)
