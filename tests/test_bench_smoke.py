"""The benchmark suite runs, and bench/report.py turns its JSON into the README's tables.

A smoke run only: FASTMLP_BENCH_SMOKE=1 shrinks the data to 512 samples and every benchmark
to one round, so nothing here measures anything. It must pass without PyTorch (the torch
benchmarks skip) and finishes in well under a minute on a 2-core machine.
"""

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FAST = ["--benchmark-min-rounds=1", "--benchmark-max-time=0", "--benchmark-warmup=off"]


def _pytest(args, tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FASTMLP_BENCH", "PYTEST_"))}
    full.pop("FASTMLP_NO_CACHE", None)
    full.update(FASTMLP_BENCH_SMOKE="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCH), "-q", "-p", "no:cacheprovider",
         "-p", "no:randomly", f"--basetemp={tmp_path / 'basetemp'}", *args],
        cwd=ROOT, env=full, capture_output=True, text=True, timeout=600,
    )


def _report_module():
    spec = importlib.util.spec_from_file_location("fastmlp_bench_report", BENCH / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_torch():
    return importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def smoke_json(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench")
    out = tmp_path / "out.json"
    run = _pytest([*FAST, f"--benchmark-json={out}"], tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(out.read_text())


def _epoch_rows(text):
    return [line for line in text.splitlines() if line.startswith(("| 32 |", "| 128 |", "| 512 |"))]


def test_the_suite_runs_and_covers_every_group(smoke_json):
    groups = {b["group"] for b in smoke_json["benchmarks"]}
    expected = {"ceiling", "kernels optimizer", "predict", "cold start", "memory"}
    for batch in (32, 128, 512):
        expected |= {f"epoch batch={batch}", f"kernels batch={batch}"}
    assert expected <= groups
    contenders = {b["extra_info"]["contender"] for b in smoke_json["benchmarks"]
                  if b["extra_info"].get("kind") == "epoch"}
    assert {"fastmlp", "numpy"} <= contenders
    assert ("torch" in contenders) == _has_torch()
    info = smoke_json["machine_info"]["fastmlp_bench"]
    assert info["smoke"] is True and info["cores"] >= 1


def test_report_makes_the_tables(smoke_json):
    report = _report_module()
    text = report.report(smoke_json)
    rows = _epoch_rows(text)
    assert len(rows) == 3
    assert "fastmlp vs NumPy" in text and "GFLOP/s" in text and "% of ceiling" in text
    assert ("fastmlp vs PyTorch" in text) == _has_torch()
    for needle in ("`matmul`", "`linear_forward relu`", "`linear_forward tanh`",
                   "`softmax_cross_entropy`", "`delta_backward`", "`weight_grad`",
                   "`sgd_update momentum`", "`adam_update`", "warm (filled by an earlier run)",
                   "cold (empty)", "samples/s", "peak above baseline", "### Targets",
                   "no memory growth", "Smoke run"):
        assert needle in text, needle


def test_report_without_torch_columns(smoke_json):
    report = _report_module()
    doc = copy.deepcopy(smoke_json)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"].get("contender") != "torch"]
    doc["machine_info"]["fastmlp_bench"]["torch"] = None
    text = report.report(doc)
    rows = _epoch_rows(text)
    assert len(rows) == 3
    # batch, fastmlp, numpy, vs NumPy, GFLOP/s, % (and JAX's time and ratio where installed)
    has_jax = any(b["extra_info"].get("contender") == "jax" for b in doc["benchmarks"])
    assert all(row.count("|") == 7 + 2 * has_jax for row in rows)
    header = next(line for line in text.splitlines() if line.startswith("| batch |"))
    assert "PyTorch" not in header and "fastmlp vs PyTorch" not in text
    assert "PyTorch not installed" in text
    assert "faster than PyTorch CPU | not measured" in text


def test_report_command_line(smoke_json, tmp_path):
    path = tmp_path / "out.json"
    path.write_text(json.dumps(smoke_json))
    run = subprocess.run([sys.executable, str(BENCH / "report.py"), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert len(_epoch_rows(run.stdout)) == 3
    assert "Merged" not in run.stdout


def test_report_merges_runs_later_wins(smoke_json, tmp_path):
    rerun = copy.deepcopy(smoke_json)
    rerun["benchmarks"] = [b for b in rerun["benchmarks"] if b["group"] == "epoch batch=32"]
    for b in rerun["benchmarks"]:
        b["stats"]["min"] = 1234.5
    paths = [tmp_path / "full.json", tmp_path / "rerun.json"]
    paths[0].write_text(json.dumps(smoke_json))
    paths[1].write_text(json.dumps(rerun))
    run = subprocess.run([sys.executable, str(BENCH / "report.py"), *map(str, paths)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rows = _epoch_rows(run.stdout)
    assert len(rows) == 3 and "1234.500 s" in rows[0] and "1234.500 s" not in rows[1]
    assert "Merged from several runs" in run.stdout and "`matmul`" in run.stdout


def test_torch_benchmarks_skip_cleanly_without_torch(tmp_path):
    run = _pytest(["--benchmark-disable", "-rs", "-k", "torch"], tmp_path,
                  FASTMLP_BENCH_NO_TORCH="1")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "PyTorch is not installed" in run.stdout
    assert " passed" not in run.stdout and "failed" not in run.stdout


def test_small_and_wide_networks_are_measured(smoke_json):
    kinds = {(b["extra_info"].get("kind"), b["extra_info"].get("contender")) for b in smoke_json["benchmarks"]}
    for kind in ("small network", "wide network"):
        assert (kind, "fastmlp") in kinds
        assert ((kind, "torch") in kinds) == _has_torch()
        assert ((kind, "jax") in kinds) == (importlib.util.find_spec("jax") is not None)
    text = _report_module().report(smoke_json)
    assert "### Small and wide networks" in text and "% of limit" in text
    assert "small network: >= 2.0x faster per step than JAX jit" in text


def test_split_script_times_the_three_ways():
    """bench/split.py (the measurement behind _fast_fit.SPLIT_ROWS) runs and prints a time
    for each way; an odd batch is refused by name."""
    def run(*args):
        return subprocess.run([sys.executable, str(BENCH / "split.py"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)

    done = run("--rows", "256", "--batch", "32", "--rounds", "2", "--dtype", "float32")
    assert done.returncode == 0, done.stderr[-4000:]
    rounds = [line for line in done.stdout.splitlines() if line.startswith("round")]
    assert len(rounds) == 2
    for line in rounds:
        times = dict(part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", "))
        assert set(times) == {"whole", "two threads", "one thread"}
        assert all(float(t) > 0 for t in times.values())
    odd = run("--batch", "7")
    assert odd.returncode == 2 and "--batch must be even" in odd.stderr
