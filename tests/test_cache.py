"""Numba's on-disk kernel cache: used by default, off with FASTMLP_NO_CACHE=1."""

import os
import subprocess
import sys

SCRIPT = (
    "import numpy as np, fastmlp\n"
    "X, y = fastmlp.datasets.load_digits()\n"
    "m = fastmlp.MLP([64, 16, 10], seed=0)\n"
    "print(repr(m.train_step(X[:32], y[:32])))\n"
)


def _run(cache_dir, **env):
    full = {k: v for k, v in os.environ.items() if k != "FASTMLP_NO_CACHE"}
    full.update(NUMBA_CACHE_DIR=str(cache_dir), **env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _cache_files(folder):
    return sorted(f for _, _, files in os.walk(folder) for f in files if f.endswith((".nbi", ".nbc")))


def test_cache_is_written_then_reused_with_the_same_result(tmp_path):
    first = _run(tmp_path)
    files = _cache_files(tmp_path)
    assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files)
    second = _run(tmp_path)  # loads the kernels from the cache
    assert second == first
    assert _cache_files(tmp_path) == files  # nothing recompiled into new entries


def test_cache_can_be_switched_off(tmp_path):
    result = _run(tmp_path, FASTMLP_NO_CACHE="1")
    assert _cache_files(tmp_path) == []
    assert result == _run(tmp_path / "cached")
