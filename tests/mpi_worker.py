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


def graph_model(kind, seed, dtype="float64", device="cpu"):
    """The functional models: "residual" (h + Dense(h), Adam) on X; "concat" (two inputs,
    columns [0, 4) and [4, 10) of X, each through its own Dense, concatenated; SGD with
    momentum)."""
    if kind == "residual":
        x = fm.Input(FEATURES, name="x")
        h = fm.Dense(16, activation="relu")(x)
        h = fm.Add()([h, fm.Dense(16, activation="tanh")(h)])
        return fm.Model(x, fm.Dense(CLASSES)(h), loss="cross_entropy", optimizer=fm.Adam(lr=0.01),
                        dtype=dtype, seed=seed, device=device)
    a, b = fm.Input(4, name="a"), fm.Input(FEATURES - 4, name="b")
    h = fm.Concatenate()([fm.Dense(8, activation="relu")(a), fm.Dense(8, activation="tanh")(b)])
    return fm.Model([a, b], fm.Dense(CLASSES)(h), loss="cross_entropy",
                    optimizer=fm.SGD(lr=0.1, momentum=0.9), dtype=dtype, seed=seed, device=device)


def two_inputs(X):
    return [X[:, :4], X[:, 4:]]


def graph_auto(outdir, kind):
    """Every process passes the same data (the two-input model as a dict by input name);
    overlap=True falls back to one Allreduce after the graph's backward."""
    X, y = data("float64")
    m = graph_model(kind, seed=distributed.rank())
    inputs = X if kind == "residual" else dict(zip(("a", "b"), two_inputs(X)))
    h = m.fit(inputs, y, epochs=EPOCHS, batch_size=BATCH, validation_split=0.1,
              callbacks=[fm.ExponentialDecay(0.9)], verbose=0,
              distributed=distributed.MPI(overlap=kind == "concat", check_sync=True))
    save(outdir, f"graph-{kind}", m, h)


def graph_local(outdir):
    """shard="local" for the two-input model: each process its own rows of both inputs."""
    X, y = data("float64")
    r = distributed.rank()
    part = slice(0, LOCAL_SPLIT) if r == 0 else slice(LOCAL_SPLIT, N)
    m = graph_model("concat", seed=10 + r)
    h = m.fit(two_inputs(X[part]), y[part], epochs=EPOCHS, batch_size=BATCH, verbose=0,
              distributed=distributed.MPI(check_sync=True), shard="local")
    save(outdir, "graph-local", m, h)


def graph_batchnorm(outdir):
    """A residual block with BatchNorm, shard="local": each process normalises its own
    batches; the running statistics are averaged at each epoch's end, so the weights and
    statistics stay identical on both processes."""
    X, y = data("float64")
    r = distributed.rank()
    part = slice(0, LOCAL_SPLIT) if r == 0 else slice(LOCAL_SPLIT, N)
    x = fm.Input(FEATURES, name="x")
    h = fm.Dense(16, activation="relu")(x)
    h = fm.Add()([h, fm.BatchNorm(activation="relu", name="bn")(fm.Dense(16)(h))])
    m = fm.Model(x, fm.Dense(CLASSES)(h), loss="cross_entropy", optimizer=fm.Adam(lr=0.01),
                 dtype="float64", seed=r, device="cpu")
    h = m.fit(X[part] + r, y[part], epochs=2, batch_size=BATCH, verbose=0, distributed="mpi",
              shard="local")
    running = {name: w.tolist() for (name, _), w in zip(m._weight_slots(), m.get_weights())
               if "running" in name}
    save(outdir, "graph-batchnorm", m, h, running=running)


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


def sparse(outdir):
    """Sparse X (CSR): each process multiplies its rows; overlap falls back to one Allreduce."""
    X, y, _ = sparse_data()
    m = model("adam", "float64", seed=distributed.rank())
    h = m.fit(X, y, epochs=2, batch_size=BATCH, verbose=0,
              distributed=distributed.MPI(overlap=True, check_sync=True))
    save(outdir, "sparse", m, h)


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


def regression_data():
    X, _ = data("float64")
    rng = np.random.default_rng(6)
    return X, X @ rng.normal(size=FEATURES) + 0.1 * rng.normal(size=N)


def sparse_data():
    """X with about 70 % zeros as a CSR matrix, labels, and sample weights in [0, 2)."""
    import scipy.sparse as sp

    X, y = data("float64")
    rng = np.random.default_rng(7)
    X[rng.random(X.shape) < 0.7] = 0.0
    return sp.csr_matrix(X), y, rng.uniform(0, 2, N)


def estimator(kind, batch, **extra):
    """The estimators of the sklearn scenarios; `batch` is per process."""
    common = dict(hidden_layer_sizes=(16,), batch_size=batch, device="cpu")
    if kind == "sgd":
        args = dict(solver="sgd", max_iter=3, random_state=0, learning_rate_init=0.1)
        return fm.MLPClassifier(**{**common, **args, **extra})
    if kind == "adam":  # early stopping: the validation score is agreed; stops at iteration 4
        args = dict(solver="adam", max_iter=6, random_state=1, learning_rate_init=0.01,
                    alpha=1e-3, early_stopping=True, tol=10.0, n_iter_no_change=2)
        return fm.MLPRegressor(**{**common, **args, **extra})
    if kind == "weighted":  # sample weights, the L2 term per global batch, sparse X
        args = dict(solver="sgd", max_iter=3, random_state=2, learning_rate_init=0.1,
                    alpha=1e-2, momentum=0.5)
        return fm.MLPClassifier(**{**common, **args, **extra})
    if kind == "lbfgs":  # rank 0 runs SciPy; every process computes its rows' gradient
        args = dict(solver="lbfgs", max_iter=15, random_state=3, alpha=1e-3)
        return fm.MLPRegressor(**{**common, **args, **extra})
    raise ValueError(kind)


def fit_quietly(est, *args, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args, **kwargs)


def save_estimator(outdir, name, est, **notes):
    save(outdir, name, est.model_, loss_curve=est.loss_curve_, n_iter=est.n_iter_, t=est.t_,
         validation_scores=getattr(est, "validation_scores_", None), **notes)


def sklearn(outdir):
    X, y = data("float64")
    save_estimator(outdir, "sklearn", fit_quietly(estimator("sgd", BATCH, distributed="mpi"), X, y))


def sklearn_adam(outdir):
    X, y = regression_data()
    est = fit_quietly(estimator("adam", BATCH // 2, distributed="mpi"), X, y)
    save_estimator(outdir, "sklearn-adam", est)


def sklearn_weighted(outdir):
    """Sparse X with sample weights; then random_state=None: rank 0's draws everywhere."""
    X, y, w = sparse_data()
    est = fit_quietly(estimator("weighted", BATCH, distributed="mpi"), X, y, sample_weight=w)
    other = fit_quietly(estimator("weighted", BATCH, distributed="mpi", random_state=None,
                                  max_iter=1), X, y)
    save_estimator(outdir, "sklearn-weighted", est, unseeded=flat(other.model_).tolist())


def sklearn_lbfgs(outdir):
    X, y = regression_data()
    save_estimator(outdir, "sklearn-lbfgs", fit_quietly(estimator("lbfgs", BATCH, distributed="mpi"), X, y))
    Xc, yc = data("float64")
    m = model("sgd", "float64", seed=distributed.rank())  # rank 0's initial weights
    res = fm.fit_lbfgs(m, Xc, yc, max_iter=10, l2=1e-3, chunk_size=50, distributed="mpi")
    save(outdir, "fit-lbfgs", m, loss_curve=res.loss_curve, n_iter=res.n_iter)


def sklearn_diverge(outdir):
    """One sample overflows the loss: with adam the process whose part holds it sees an
    infinite loss; with lbfgs the sum does. Both processes raise the same DivergenceError."""
    X, y = regression_data()
    X[11] = 1e200
    messages = {}
    for kind in ("adam", "lbfgs"):
        est = estimator(kind, BATCH, distributed="mpi", early_stopping=False)
        try:
            fit_quietly(est, X, y)
            messages[kind] = None
        except fm.DivergenceError as exc:
            messages[kind] = str(exc)
    save(outdir, "sklearn-diverge", est.model_, messages=messages)


def mismatch(outdir):
    """Rank 1 passes other data of the same size: with shard='auto' both raise the same
    ValueError (model.fit, an estimator, and a two-input graph Model whose inputs differ in
    the second array only)."""
    X, y = data("float64")
    X2 = X.copy()
    if distributed.rank() == 1:
        X[5, 2] += 1.0
        X2[5, 7] += 1.0  # column 7: the second input ("b") of the two-input model
    messages = []
    for fit in (lambda: model("sgd", "float64", seed=0).fit(X, y, batch_size=BATCH, verbose=0,
                                                            distributed="mpi"),
                lambda: fit_quietly(estimator("sgd", BATCH, distributed="mpi"), X, y),
                lambda: graph_model("concat", seed=0).fit(two_inputs(X2), y, batch_size=BATCH,
                                                          verbose=0, distributed="mpi")):
        try:
            fit()
            messages.append(None)
        except ValueError as exc:
            messages.append(str(exc))
    np.savez(os.path.join(outdir, f"mismatch-{distributed.rank()}.npz"), weights=np.zeros(1),
             meta=json.dumps({"messages": messages}))


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
    # a two-input graph Model on the device (its gradient through the host)
    Xg = rng.normal(size=(n, FEATURES))
    g = graph_model("concat", seed=distributed.rank(), device="cuda")
    h = g.fit(two_inputs(Xg), y, epochs=2, batch_size=4, verbose=0,
              distributed=distributed.MPI(check_sync=True))
    save(outdir, "cuda-graph", g, h)
    # the estimators' loop on the device: the epoch's loss summed on the device, read once
    clf = estimator("sgd", 4, hidden_layer_sizes=(8,), max_iter=2, device="cuda",
                    distributed=distributed.MPI(check_sync=True))
    save_estimator(outdir, "cuda-sklearn", fit_quietly(clf, X, y))
    if distributed.rank() == 0:
        ref = model("sgd", "float64", seed=0, device="cuda", sizes=sizes)
        h = ref.fit(X, y, epochs=2, batch_size=8, verbose=0)
        save(outdir, "cuda-single", ref, h)
        ref = graph_model("concat", seed=0, device="cuda")
        h = ref.fit(two_inputs(Xg), y, epochs=2, batch_size=8, verbose=0)
        save(outdir, "cuda-graph-single", ref, h)
        ref = fit_quietly(estimator("sgd", 8, hidden_layer_sizes=(8,), max_iter=2, device="cuda"), X, y)
        save_estimator(outdir, "cuda-sklearn-single", ref)


SCENARIOS = {
    "auto-sgd64": lambda out: auto(out, "auto-sgd64", "sgd", "float64"),
    "auto-adam32": lambda out: auto(out, "auto-adam32", "adam", "float32"),
    "local-sgd64": lambda out: local(out, "local-sgd64", "sgd", "float64"),
    "local-adam32": lambda out: local(out, "local-adam32", "adam", "float32"),
    "overlap": overlap, "sparse": sparse, "diverge": diverge, "resume": resume, "stop": stop, "sklearn": sklearn, "fail": fail,
    "sklearn-adam": sklearn_adam, "sklearn-weighted": sklearn_weighted, "sklearn-diverge": sklearn_diverge,
    "sklearn-lbfgs": sklearn_lbfgs, "mismatch": mismatch,
    "cuda": cuda,
    "graph-residual": lambda out: graph_auto(out, "residual"),
    "graph-concat": lambda out: graph_auto(out, "concat"),
    "graph-local": graph_local, "graph-batchnorm": graph_batchnorm,
}

if __name__ == "__main__":
    outdir, names = sys.argv[1], sys.argv[2:]
    for name in names:
        SCENARIOS[name](outdir)
