"""The command line, run for real in a subprocess (``python -m fastmlp ...``) on small data
files made here: train / evaluate / predict / bench / demo, --help, and bad arguments (one
line on stderr, exit status 2, no traceback)."""

import csv
import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from helpers import blobs

D, K = 6, 3


def run(*args, cwd=None, timeout=300):
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


def _blobs(n, seed=0):
    return blobs(n, D, K, seed, centers_seed=42)  # the same centres for every seed


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small data sets in each format, and a model trained on them."""
    folder = tmp_path_factory.mktemp("cli")
    X, y = _blobs(150)
    Xt, yt = _blobs(60, seed=1)
    np.savez(folder / "split.npz", x_train=X, y_train=y, x_test=Xt, y_test=yt)
    np.savez(folder / "plain.npz", X=Xt, y=yt)
    with open(folder / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(D)] + ["label"])
        w.writerows(np.column_stack([X, y]).tolist())
    np.savetxt(folder / "features.csv", Xt, delimiter=",", fmt="%.7g")
    model = fastmlp.MLP([D, 16, K], optimizer=fastmlp.Adam(lr=0.01), device="cpu", seed=0)
    model.fit(X, y, epochs=20, batch_size=16, verbose=0)
    model.save(folder / "model.npz")
    (folder / "junk.npz").write_bytes(os.urandom(300))
    (folder / "bad.csv").write_text("a,b,label\n1,2,0\n3,oops,1\n")
    return folder


def _accuracy(text, word="accuracy"):
    return float(text.split(word)[1].split("%")[0])


def _one_error_line(result):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("fastmlp")
    assert "error" in lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------
# help


def test_help_for_every_command():
    for command in ([], ["train"], ["evaluate"], ["predict"], ["bench"], ["demo"]):
        result = run(*command, "--help")
        assert result.returncode == 0, result.stderr
        prog = " ".join(["fastmlp", *command])
        assert result.stdout.startswith(f"usage: {prog}")
        assert "--help" in result.stdout
    train_help = run("train", "--help").stdout
    for option in ("--data", "--format", "--hidden", "--activation", "--epochs", "--batch-size",
                   "--optimizer", "--lr", "--device", "--save", "--plot"):
        assert option in train_help, option
    assert "train" in run("--help").stdout and "predict" in run("--help").stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("fastmlp")
    if not script.exists():
        pytest.skip("the fastmlp console script is not installed in this environment")
    result = subprocess.run([str(script), "evaluate", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage: fastmlp evaluate" in result.stdout


# ---------------------------------------------------------------------------------------
# train, evaluate, predict


def test_train_on_npz_then_evaluate_and_predict(data, tmp_path):
    model_path = tmp_path / "trained.npz"
    result = run("train", "--data", data / "split.npz", "--hidden", "16,8", "--epochs", 15,
                 "--batch-size", 16, "--optimizer", "adam", "--lr", 0.01, "--device", "cpu",
                 "--validation-split", 0.1, "--save", model_path, "--verbose", 2)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[6, 16, 8, 3]" in out and "150 training and 60 test samples" in out
    assert out.count("Epoch ") == 15 and "val_accuracy" in out
    assert _accuracy(out, "test accuracy") > 90
    model = fastmlp.load(model_path)
    assert model.sizes == [D, 16, 8, K] and type(model.optimizer) is fastmlp.Adam

    Xt, yt = np.load(data / "split.npz")["x_test"], np.load(data / "split.npz")["y_test"]
    expected = model.evaluate(Xt, yt)
    result = run("evaluate", model_path, "--data", data / "split.npz")
    assert result.returncode == 0, result.stderr
    assert f"accuracy {expected['accuracy'] * 100:.2f} %" in result.stdout
    assert "on 60 samples" in result.stdout
    result = run("evaluate", model_path, "--data", data / "split.npz", "--split", "train")
    assert result.returncode == 0 and "on 150 samples" in result.stdout

    out_csv = tmp_path / "preds.csv"
    result = run("predict", model_path, "--data", data / "split.npz", "--out", out_csv)
    assert result.returncode == 0, result.stderr
    rows = out_csv.read_text().splitlines()
    assert rows[0] == "prediction" and len(rows) == 61
    np.testing.assert_array_equal([int(r) for r in rows[1:]], model.predict(Xt))

    result = run("predict", model_path, "--data", data / "plain.npz", "--proba")
    assert result.returncode == 0, result.stderr
    table = np.loadtxt(result.stdout.splitlines()[1:], delimiter=",")
    assert result.stdout.splitlines()[0] == "prediction,p0,p1,p2"
    assert table.shape == (60, 4)
    np.testing.assert_allclose(table[:, 1:].sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(table[:, 0], table[:, 1:].argmax(axis=1))


def test_train_on_csv_and_predict_on_features_only(data, tmp_path):
    result = run("train", "--data", data / "train.csv", "--hidden", "12", "--epochs", 10,
                 "--batch-size", 16, "--lr", 0.05, "--save", tmp_path / "m.npz", "--verbose", 0)
    assert result.returncode == 0, result.stderr
    assert "150 training samples (CSV, 3 classes)" in result.stdout
    assert "test accuracy" not in result.stdout  # a CSV has no test part
    assert _accuracy(result.stdout, "training accuracy") > 80
    result = run("predict", tmp_path / "m.npz", "--data", data / "features.csv", "--out",
                 tmp_path / "p.csv")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 61
    # label column by name
    result = run("train", "--data", data / "train.csv", "--label-column", "label", "--epochs", 1,
                 "--verbose", 0, "--hidden", "4")
    assert result.returncode == 0, result.stderr


def _idx(arr):
    arr = np.asarray(arr, np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()


def test_train_on_idx_folder_and_file(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 90), ("t10k", 30)):
        y = np.arange(n) % 3
        images = (rng.random((n, 5, 5)) * 60).astype(np.uint8)
        images[np.arange(n), y, y] = 255  # a bright pixel that tells the class
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y)))
    result = run("train", "--data", folder, "--hidden", "16", "--epochs", 30, "--batch-size", 10,
                 "--verbose", 0)
    assert result.returncode == 0, result.stderr
    assert "[25, 16, 3]" in result.stdout and "90 training and 30 test samples (IDX" in result.stdout
    assert _accuracy(result.stdout, "test accuracy") > 80
    result = run("train", "--data", folder / "t10k-images-idx3-ubyte.gz", "--format", "idx",
                 "--epochs", 1, "--hidden", "4", "--verbose", 0)
    assert result.returncode == 0, result.stderr
    assert "30 training samples" in result.stdout


def test_train_on_cifar10_folder(tmp_path):
    folder = tmp_path / "cifar"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 4, dtype=np.uint8)
        pixels = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.column_stack([labels, pixels]).tobytes())
    result = run("train", "--data", folder, "--hidden", "8", "--epochs", 2, "--verbose", 0,
                 "--save", tmp_path / "c.npz")
    assert result.returncode == 0, result.stderr
    assert "20 training and 4 test samples (CIFAR-10" in result.stdout
    assert fastmlp.load(tmp_path / "c.npz").n_features == 3072
    result = run("evaluate", tmp_path / "c.npz", "--data", folder, "--format", "cifar10")
    assert result.returncode == 0 and "on 4 samples" in result.stdout


def test_plot(data, tmp_path):
    png = tmp_path / "curves.png"
    result = run("train", "--data", data / "split.npz", "--epochs", 3, "--hidden", "4",
                 "--verbose", 0, "--validation-split", 0.2, "--plot", png)
    if not hasattr(fastmlp.History, "plot"):
        assert "History.plot" in _one_error_line(result)
        assert not png.exists()
        return
    pytest.importorskip("matplotlib")
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_prints_both_times_and_the_ratio():
    result = run("bench", "--samples", 1024, "--features", 64, "--hidden", "32", "--repeat", 1)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    t_fast = float(out.split("fastmlp:")[1].split("s/epoch")[0])
    t_numpy = float(out.split("NumPy:")[1].split("s/epoch")[0])
    ratio = float(out.split("fastmlp is")[1].split("x")[0])
    assert t_fast > 0 and t_numpy > 0
    assert ratio == pytest.approx(t_numpy / t_fast, rel=0.02, abs=0.01)


def test_demo_subcommand_and_default():
    result = run("demo", "--epochs", 3, "--verbose", 0)
    assert result.returncode == 0, result.stderr
    assert "bundled" in result.stdout and _accuracy(result.stdout, "test accuracy") > 50


def test_version():
    for command in ([sys.executable, "-m", "fastmlp", "--version"],
                    [str(Path(sys.executable).with_name("fastmlp")), "--version"]):
        if not Path(command[0]).exists():
            continue  # no console script in this environment
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"fastmlp {fastmlp.__version__}\n"
    assert "--version" in run("--help").stdout


def test_demo_reports_the_kernels_apart_from_training():
    result = run("--epochs", 1, "--verbose", 2)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ready = [i for i, line in enumerate(lines)
             if line.startswith(("compiled the kernels in ", "kernels loaded from the cache in "))]
    epoch = [i for i, line in enumerate(lines) if line.startswith("Epoch 1/1")]
    assert len(ready) == 1 and len(epoch) == 1, result.stdout
    assert ready[0] < epoch[0]  # compiled before the timed fit: epoch 1 holds training only
    assert lines[-1].startswith("trained in ") and "test accuracy" in lines[-1]


def test_demo_compile_line_and_training_time_without_it(monkeypatch, capsys):
    from fastmlp import cli
    from fastmlp.kernels import compile_notice, diskcache

    for cache, later in ((True, "once: later runs load them from the cache"),
                         (False, "the disk cache is off: FASTMLP_NO_CACHE=1")):
        clock = iter([0.0, 12.3, 12.3, 12.3])  # the twin's fit compiles 12.3 s, fit nothing
        monkeypatch.setattr(compile_notice, "compile_seconds", lambda: next(clock))
        monkeypatch.setattr(diskcache, "CACHE", cache)
        assert cli.main(["--epochs", "1", "--verbose", "0"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[1].startswith(f"compiled the kernels in 12.3 s ({later}")
        seconds = float(out[2].split("trained in ")[1].split(" s")[0])
        assert 0 <= seconds < 5 and "compiling" not in out[2]
    clock = iter([0.0, 0.0, 0.0, 0.0])
    monkeypatch.setattr(compile_notice, "compile_seconds", lambda: next(clock))
    assert cli.main(["--epochs", "1", "--verbose", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("kernels loaded from the cache in ")


def test_diverging_training_exits_1(data):
    result = run("train", "--data", data / "split.npz", "--lr", 1e30, "--epochs", 5,
                 "--hidden", "8", "--verbose", 0)
    assert result.returncode == 1
    assert "diverged" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------
# bad arguments and unreadable files


def test_bad_arguments_and_files_give_one_line_and_status_2(data, tmp_path):
    npz = data / "split.npz"
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "wide.npz", X=np.zeros((4, D + 2)), y=np.zeros(4))
    cases = [
        (["train"], "--data"),
        (["train", "--data", tmp_path / "nowhere.npz"], "no such file"),
        (["train", "--data", npz, "--epochs", "0"], "epochs"),
        (["train", "--data", npz, "--batch-size", "x"], "batch-size"),
        (["train", "--data", npz, "--hidden", "12,abc"], "hidden"),
        (["train", "--data", npz, "--format", "xml"], "format"),
        (["train", "--data", npz, "--optimizer", "lbfgs"], "optimizer"),
        (["train", "--data", npz, "--lr", "-1"], "lr"),
        (["train", "--data", npz, "--activation", "swish"], "activation"),
        (["train", "--data", npz, "--device", "tpu"], "device"),
        (["train", "--data", npz, "--bogus"], "bogus"),
        (["train", "--data", npz, "--save", tmp_path / "m.txt"], ".npz"),
        (["train", "--data", npz, "--save", tmp_path / "no" / "m.npz"], "does not exist"),
        (["train", "--data", npz, "--label-column", "2"], "csv"),
        (["train", "--data", data / "junk.npz"], "not a readable .npz"),
        (["train", "--data", data / "bad.csv"], "line 3"),
        (["train", "--data", tmp_path / "empty"], "format"),
        (["train", "--data", data / "features.csv", "--label-column", "none"], "labels"),
        (["evaluate", data / "junk.npz", "--data", npz], "not a valid fastmlp model"),
        (["evaluate", tmp_path / "missing.npz", "--data", npz], "no such file"),
        (["evaluate", data / "model.npz", "--data", tmp_path / "wide.npz"], "features"),
        (["evaluate", data / "model.npz", "--data", data / "plain.npz", "--split", "test"],
         "no test part"),
        (["predict", data / "model.npz"], "--data"),
        (["predict", data / "model.npz", "--data", npz, "--out", tmp_path / "no" / "p.csv"],
         "does not exist"),
        (["bench", "--samples", "-5"], "samples"),
        (["--epochs", "0"], "epochs"),
    ]
    for args, words in cases:
        line = _one_error_line(run(*args))
        assert words in line, (args, line)


def test_bench_profile_prints_the_kernel_table():
    result = run("bench", "--profile", "--samples", 512, "--features", 64, "--hidden", "32",
                 "--steps", 3, "--gemm-gflops", 100, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("gather X rows", "forward 1: Z = A W^T", "loss: cross_entropy", "backward 2: dW",
                 "backward 2: delta = delta W", "update: SGD", "step as fit runs it"):
        assert name in out, out
    assert "of the machine's limit" in out and "at 100 GFLOP/s" in out
