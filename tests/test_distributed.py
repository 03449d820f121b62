"""Data-parallel training over MPI (fastmlp.distributed), on localhost.

One ``mpiexec -n 2`` job runs every scenario of tests/mpi_worker.py; the single-process
references are trained here. Skips with the reason when mpi4py or mpiexec is missing
(``pip install 'fastmlp[distributed]'`` brings both)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp as fm

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker as W  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("mpi_worker.py")


def find_mpiexec():
    """mpiexec beside this Python (a venv with the mpich wheel, or the base installation the
    venv was made from), mpi4py's MPI, or on PATH; None when there is none."""
    dirs = [Path(sys.executable).parent, Path(sys.prefix) / "bin", Path(sys.base_prefix) / "bin"]
    try:
        import mpi4py

        mpicc = mpi4py.get_config().get("mpicc")
        if mpicc:
            dirs.append(Path(mpicc).parent)
    except ImportError:
        pass
    for d in dirs:
        for name in ("mpiexec", "mpiexec.hydra", "mpirun"):
            if (d / name).is_file() and os.access(d / name, os.X_OK):
                return str(d / name)
    return shutil.which("mpiexec")


def mpiexec_or_skip():
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed: pip install 'fastmlp[distributed]'")
    exe = find_mpiexec()
    if exe is None:
        pytest.skip("no mpiexec beside this Python nor on PATH: pip install 'fastmlp[distributed]' (mpich)")
    return exe


def run_job(outdir, scenarios, env=None, timeout=240):
    cmd = [mpiexec_or_skip(), "-n", "2", sys.executable, str(WORKER), str(outdir), *scenarios]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


SCENARIOS = ["auto-sgd64", "auto-adam32", "local-sgd64", "local-adam32", "overlap", "sparse", "diverge",
             "resume", "stop", "sklearn", "sklearn-adam", "sklearn-weighted", "sklearn-diverge",
             "sklearn-lbfgs", "mismatch", "graph-residual", "graph-concat", "graph-local", "graph-batchnorm"]
# sklearn-lbfgs writes fit-lbfgs too


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("mpi")
    proc = run_job(outdir, SCENARIOS)
    assert proc.returncode == 0, f"mpiexec job failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return outdir


def result(outdir, name, rank):
    with np.load(outdir / f"{name}-{rank}.npz") as f:
        return f["weights"], json.loads(str(f["meta"]))


def assert_rel(a, b, rtol, what):
    err = np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max()
    assert err <= rtol, f"{what}: relative difference {err:.3g} > {rtol:g}"


TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("optimizer,dtype", [("sgd", "float64"), ("adam", "float32")])
def test_two_processes_batch_64_equal_one_process_batch_128(job, optimizer, dtype):
    """Shuffled, 271 training samples: global batches 128, 128 and a partial 15 split 7 / 8; an
    lr schedule, validation; rank 1 has another seed (rank 0's weights and order rule)."""
    name = f"auto-{optimizer}{dtype[-2:]}"
    X, y = W.data(dtype)
    ref = W.model(optimizer, dtype, seed=0)
    h = ref.fit(X, y, epochs=W.EPOCHS, batch_size=2 * W.BATCH, validation_split=0.1,
                callbacks=[fm.ExponentialDecay(0.9)], verbose=0)
    (w0, m0), (w1, m1) = result(job, name, 0), result(job, name, 1)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, W.flat(ref), TOL[dtype], f"{name} weights vs one process")
    assert m0["history"] == m1["history"] and m0["epoch"] == m1["epoch"] == [0, 1, 2]
    for key, values in h.history.items():
        np.testing.assert_allclose(m0["history"][key], values, rtol=TOL[dtype] * 10, err_msg=key)
    assert m0["params"]["samples"] == 271 and m0["params"]["processes"] == 2
    assert m0["params"]["global_batch_size"] == 128 and m0["params"]["steps"] == 3


def local_reference(optimizer, dtype):
    """One process taking the steps of shard='local': rank r shuffles its own part with its
    own generator (seed 10 + r); global step k is rank 0's k-th batch then rank 1's."""
    X, y = W.data(dtype)
    parts = [np.arange(0, W.LOCAL_SPLIT), np.arange(W.LOCAL_SPLIT, W.N)]
    rngs = [W.model(optimizer, dtype, seed=10 + r)._rng for r in range(2)]
    ref = W.model(optimizer, dtype, seed=10)  # rank 0's initial weights
    for _ in range(W.EPOCHS):
        orders = [p[g.permutation(p.size)] for p, g in zip(parts, rngs)]
        steps = max(-(-o.size // W.BATCH) for o in orders)
        for k in range(steps):
            idx = np.concatenate([o[k * W.BATCH : (k + 1) * W.BATCH] for o in orders])
            ref.train_step(X[idx], y[idx])
    return ref


@pytest.mark.parametrize("optimizer,dtype", [("sgd", "float64"), ("adam", "float32")])
def test_local_shards_equal_the_matching_single_process_steps(job, optimizer, dtype):
    """170 and 131 samples, batch 64: steps of 64+64, 64+64, 42+3 (rank 1's part ends
    first in the last step) each epoch."""
    name = f"local-{optimizer}{dtype[-2:]}"
    (w0, m0), (w1, m1) = result(job, name, 0), result(job, name, 1)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, W.flat(local_reference(optimizer, dtype)), TOL[dtype], f"{name} weights")
    assert m0["history"] == m1["history"]
    assert m0["params"]["samples"] == W.N and m0["params"]["steps"] == 3


@pytest.mark.parametrize("kind", ["residual", "concat"])
def test_graph_model_two_processes_batch_64_equal_one_process_batch_128(job, kind):
    """Functional models: a residual block with Adam on X; two inputs (given as a dict by
    input name) concatenated, SGD with momentum. Shuffled, a partial last global batch of
    15, an lr schedule, validation; rank 1 has another seed."""
    X, y = W.data("float64")
    ref = W.graph_model(kind, seed=0)
    inputs = X if kind == "residual" else W.two_inputs(X)
    h = ref.fit(inputs, y, epochs=W.EPOCHS, batch_size=2 * W.BATCH, validation_split=0.1,
                callbacks=[fm.ExponentialDecay(0.9)], verbose=0)
    (w0, m0), (w1, m1) = result(job, f"graph-{kind}", 0), result(job, f"graph-{kind}", 1)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, W.flat(ref), TOL["float64"], f"graph-{kind} weights vs one process")
    assert m0["history"] == m1["history"] and m0["epoch"] == m1["epoch"] == [0, 1, 2]
    assert set(m0["history"]) == set(h.history)
    for key, values in h.history.items():
        np.testing.assert_allclose(m0["history"][key], values, rtol=1e-9, err_msg=key)
    assert m0["params"]["samples"] == 271 and m0["params"]["steps"] == 3


def test_graph_model_local_shards_equal_the_matching_single_process_steps(job):
    """shard='local' with two inputs: each process passes its own rows of both arrays."""
    X, y = W.data("float64")
    parts = [np.arange(0, W.LOCAL_SPLIT), np.arange(W.LOCAL_SPLIT, W.N)]
    rngs = [W.graph_model("concat", seed=10 + r)._rng for r in range(2)]
    ref = W.graph_model("concat", seed=10)  # rank 0's initial weights
    for _ in range(W.EPOCHS):
        orders = [p[g.permutation(p.size)] for p, g in zip(parts, rngs)]
        for k in range(max(-(-o.size // W.BATCH) for o in orders)):
            idx = np.concatenate([o[k * W.BATCH : (k + 1) * W.BATCH] for o in orders])
            ref.train_step(W.two_inputs(X[idx]), y[idx])
    (w0, m0), (w1, m1) = result(job, "graph-local", 0), result(job, "graph-local", 1)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, W.flat(ref), TOL["float64"], "graph-local weights")
    assert m0["history"] == m1["history"]
    assert m0["params"]["samples"] == W.N and m0["params"]["steps"] == 3


def test_graph_model_batchnorm_statistics_agree_across_processes(job):
    """Each process normalises its own batches (rank 1's data shifted by 1): the running
    statistics, averaged at each epoch's end, end identical on both, as do the weights."""
    (w0, m0), (w1, m1) = result(job, "graph-batchnorm", 0), result(job, "graph-batchnorm", 1)
    np.testing.assert_array_equal(w0, w1)
    assert m0["history"] == m1["history"] and len(m0["history"]["loss"]) == 2
    assert m0["running"] == m1["running"] and np.isfinite(w0).all()
    mean, var = m0["running"]["bn.running_mean"], m0["running"]["bn.running_var"]
    assert len(mean) == 16 and np.abs(mean).max() > 0.1  # moved away from the initial 0 and 1
    assert np.abs(np.array(var) - 1).max() > 0.1


def test_overlapped_all_reduce_gives_the_same_weights(job):
    X, y = W.data("float64")
    ref = W.model("sgd", "float64", seed=0)
    ref.fit(X, y, epochs=W.EPOCHS, batch_size=2 * W.BATCH, verbose=0)
    (w0, _), (w1, _) = result(job, "overlap", 0), result(job, "overlap", 1)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, W.flat(ref), 1e-10, "overlap weights")


def test_sparse_input_trains_data_parallel(job):
    pytest.importorskip("scipy")
    X, y, _ = W.sparse_data()
    ref = W.model("adam", "float64", seed=0)
    h = ref.fit(X, y, epochs=2, batch_size=2 * W.BATCH, verbose=0)
    (w0, m0), (w1, m1) = result(job, "sparse", 0), result(job, "sparse", 1)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, W.flat(ref), 1e-10, "sparse weights vs one process")
    assert m0["history"] == m1["history"]
    np.testing.assert_allclose(m0["history"]["loss"], h.history["loss"], rtol=1e-10)


def test_divergence_on_one_process_stops_both(job):
    (w0, m0), (w1, m1) = result(job, "diverge", 0), result(job, "diverge", 1)
    assert m0["message"] is not None and m0["message"].startswith("training diverged at epoch 1")
    assert m0["message"] == m1["message"]
    # both are back at the start of the epoch: rank 0's initial weights
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(w0, W.flat(W.model("sgd", "float32", seed=0)))


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(job):
    (w0, m0), (w1, m1) = result(job, "resume", 0), result(job, "resume", 1)
    assert m0["saves"] == 3 and m1["saves"] == 0  # ModelCheckpoint on rank 0 only
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(np.array(m0["resumed"]), w0)
    np.testing.assert_array_equal(np.array(m1["resumed"]), w0)


def test_stop_training_on_one_process_stops_both(job):
    (w0, m0), (w1, m1) = result(job, "stop", 0), result(job, "stop", 1)
    assert m0["epoch"] == m1["epoch"] == [0]
    np.testing.assert_array_equal(w0, w1)


def assert_same_estimator_fit(job, name, single):
    """Both ranks end alike, and as one process with the global batch: weights, the loss
    curve, iterations, samples seen, validation scores."""
    (w0, m0), (w1, m1) = result(job, name, 0), result(job, name, 1)
    np.testing.assert_array_equal(w0, w1)
    assert m0 == m1
    assert_rel(w0, W.flat(single.model_), 1e-10, f"{name} weights vs one process")
    np.testing.assert_allclose(m0["loss_curve"], single.loss_curve_, rtol=1e-10)
    assert (m0["n_iter"], m0["t"]) == (single.n_iter_, single.t_)
    if getattr(single, "validation_scores_", None) is None:  # None, or none at all (lbfgs)
        assert m0["validation_scores"] is None
    else:
        np.testing.assert_allclose(m0["validation_scores"], single.validation_scores_, rtol=1e-10)
    return m0


@pytest.mark.parametrize("kind", ["sgd", "adam", "weighted", "lbfgs"])
def test_sklearn_estimator_trains_data_parallel(job, kind):
    """distributed='mpi' with batch_size=b on 2 processes fits as one process with 2b:
    MLPClassifier sgd; MLPRegressor adam with an L2 term and early stopping (the agreed
    validation score stops both at iteration 4); MLPClassifier sgd on sparse X with sample
    weights (each global batch's weight sum scales its loss and its L2 term); MLPRegressor
    lbfgs (each process's rows, rank 0's SciPy)."""
    pytest.importorskip("sklearn")
    if kind == "sgd":
        X, y = W.data("float64")
        single = W.fit_quietly(W.estimator("sgd", 2 * W.BATCH), X, y)
        assert_same_estimator_fit(job, "sklearn", single)
    elif kind == "adam":
        X, y = W.regression_data()
        single = W.fit_quietly(W.estimator("adam", W.BATCH), X, y)
        assert single.n_iter_ == 4 < single.max_iter  # early stopping ended it
        assert_same_estimator_fit(job, "sklearn-adam", single)
    elif kind == "lbfgs":
        X, y = W.regression_data()
        single = W.fit_quietly(W.estimator("lbfgs", W.BATCH), X, y)
        assert single.n_iter_ == 15
        assert_same_estimator_fit(job, "sklearn-lbfgs", single)
    else:
        X, y, w = W.sparse_data()
        single = W.fit_quietly(W.estimator("weighted", 2 * W.BATCH), X, y, sample_weight=w)
        m0 = assert_same_estimator_fit(job, "sklearn-weighted", single)
        (_, m1) = result(job, "sklearn-weighted", 1)
        assert m0["unseeded"] == m1["unseeded"]  # random_state=None: rank 0's draws


def test_fit_lbfgs_over_mpi_equals_one_process(job):
    """Rows split 150 / 151 over the processes, chunks of 50 within each."""
    pytest.importorskip("scipy")
    X, y = W.data("float64")
    ref = W.model("sgd", "float64", seed=0)
    res = fm.fit_lbfgs(ref, X, y, max_iter=10, l2=1e-3, chunk_size=50)
    (w0, m0), (w1, m1) = result(job, "fit-lbfgs", 0), result(job, "fit-lbfgs", 1)
    np.testing.assert_array_equal(w0, w1)
    assert m0 == m1 and m0["n_iter"] == res.n_iter == 10
    assert_rel(w0, W.flat(ref), 1e-10, "fit_lbfgs weights vs one process")
    np.testing.assert_allclose(m0["loss_curve"], res.loss_curve, rtol=1e-10)
    with pytest.raises(ValueError, match="distributed must be None, 'mpi'"):
        fm.fit_lbfgs(ref, X, y, distributed="gloo")


def test_other_data_on_one_process_is_a_clear_error_on_both(job):
    (_, m0), (_, m1) = result(job, "mismatch", 0), result(job, "mismatch", 1)
    assert m0 == m1 and len(m0["messages"]) == 3
    for message in m0["messages"]:
        assert message is not None and "disagree on the data" in message and "shard='local'" in message


def test_sklearn_divergence_on_one_process_stops_both(job):
    pytest.importorskip("sklearn")
    (w0, m0), (w1, m1) = result(job, "sklearn-diverge", 0), result(job, "sklearn-diverge", 1)
    for kind in ("adam", "lbfgs"):
        message = m0["messages"][kind]
        assert message is not None and message.startswith("Solver produced non-finite"), kind
        assert message == m1["messages"][kind]
    assert "the loss became inf at step" in m0["messages"]["adam"]
    assert "L-BFGS diverged" in m0["messages"]["lbfgs"]
    np.testing.assert_array_equal(w0, w1)


def test_a_failing_process_aborts_the_job_with_a_message(tmp_path):
    proc = run_job(tmp_path, ["fail"], timeout=120)
    assert proc.returncode != 0
    assert "process 1 of 2 failed during fit (RuntimeError: callback failed on purpose)" in proc.stderr
    assert "MPI_Abort" in proc.stderr


def test_device_gradient_path_under_the_cuda_simulator(tmp_path):
    """device="cuda" under the simulator: the gradient through the host and as a device
    array (CUDA-aware MPI), both equal to one process with the global batch; a two-input
    graph Model the same way; and MLPClassifier(distributed="mpi") on the device (the epoch loss summed on the device)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda)")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() == "1":
        pytest.skip("this run is under the simulator already")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = run_job(tmp_path, ["cuda"], env=env)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    ref, mref = result(tmp_path, "cuda-single", 0)
    for aware in (0, 1):
        (w0, m0), (w1, m1) = result(tmp_path, f"cuda-aware{aware}", 0), result(tmp_path, f"cuda-aware{aware}", 1)
        np.testing.assert_array_equal(w0, w1)
        assert_rel(w0, ref, 1e-10, f"cuda_aware={bool(aware)}")
        assert m0["history"] == m1["history"]
        np.testing.assert_allclose(m0["history"]["loss"], mref["history"]["loss"], rtol=1e-10)
    (w0, m0), (w1, m1) = result(tmp_path, "cuda-graph", 0), result(tmp_path, "cuda-graph", 1)
    ref, mref = result(tmp_path, "cuda-graph-single", 0)
    np.testing.assert_array_equal(w0, w1)
    assert_rel(w0, ref, 1e-10, "two-input graph Model on the device")
    assert m0["history"] == m1["history"]
    np.testing.assert_allclose(m0["history"]["loss"], mref["history"]["loss"], rtol=1e-10)
    if importlib.util.find_spec("sklearn") is not None:
        (w0, m0), (w1, m1) = result(tmp_path, "cuda-sklearn", 0), result(tmp_path, "cuda-sklearn", 1)
        ref, mref = result(tmp_path, "cuda-sklearn-single", 0)
        np.testing.assert_array_equal(w0, w1)
        assert m0 == m1 and m0["n_iter"] == mref["n_iter"] == 2
        assert_rel(w0, ref, 1e-10, "MLPClassifier on the device")
        np.testing.assert_allclose(m0["loss_curve"], mref["loss_curve"], rtol=1e-10)


def test_command_line_trains_data_parallel(tmp_path):
    """mpiexec -n 2 fastmlp train ... --distributed mpi: rank 0 prints and saves; the saved
    model equals one process's with batch 2 * 16."""
    X, y = W.data("float32")  # the readers give float32 features
    np.savez(tmp_path / "d.npz", x_train=X, y_train=y)
    X = X.astype(np.float64)
    saved = tmp_path / "m.npz"
    args = ["train", "--data", str(tmp_path / "d.npz"), "--hidden", "16", "--epochs", "2",
            "--batch-size", "16", "--dtype", "float64", "--device", "cpu", "--verbose", "2",
            "--save", str(saved), "--distributed", "mpi"]
    cmd = [mpiexec_or_skip(), "-n", "2", sys.executable, "-m", "fastmlp", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("Epoch 2/2") == 1 and proc.stdout.count("saved the model") == 1
    ref = fm.MLP([W.FEATURES, 16, W.CLASSES], optimizer=fm.SGD(lr=0.1, momentum=0.9),
                 dtype="float64", seed=0, device="cpu")
    ref.fit(X, y, epochs=2, batch_size=32, verbose=0)
    assert_rel(W.flat(fm.load(saved)), W.flat(ref), 1e-10, "CLI weights")


# -- without MPI ---------------------------------------------------------------------------


def test_importing_fastmlp_does_not_import_mpi():
    code = ("import sys, fastmlp; assert 'mpi4py' not in sys.modules; "
            "sys.modules['mpi4py'] = None; d = fastmlp.distributed; "
            "print(d.rank(), d.size(), d.is_main())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1", "True"]


def test_bad_distributed_arguments():
    y = np.array([0, 1, 0, 1])
    # a Sequential and a functional model check the same arguments
    for model, X in ((fm.MLP([3, 2], device="cpu"), np.zeros((4, 3))),
                     (W.graph_model("concat", seed=0), W.two_inputs(np.zeros((4, W.FEATURES))))):
        with pytest.raises(ValueError, match="distributed must be None, 'mpi'"):
            model.fit(X, y, distributed="nccl")
        with pytest.raises(ValueError, match="shard must be one of"):
            model.fit(X, y, distributed="mpi", shard="rows")
        with pytest.raises(ValueError, match="needs distributed='mpi'"):
            model.fit(X, y, shard="local")
    if importlib.util.find_spec("sklearn") is not None:
        for est in (fm.MLPClassifier(distributed="nccl"), fm.MLPRegressor(distributed=4)):
            assert "distributed" in est.get_params()
            with pytest.raises(ValueError, match="distributed must be None, 'mpi'"):
                est.fit(X, np.array([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match="overlap must be True or False"):
        fm.distributed.MPI(overlap="yes")
    with pytest.raises(ValueError, match="bucket_bytes"):
        fm.distributed.MPI(bucket_bytes=0)
