"""Cold start: a fresh Python process that imports fastmlp and trains one step (group ``cold start``).

The process is `python bench/child.py cold-start` (784-256-128-10, batch 128, SGD); each
round is its whole wall time, interpreter start-up and exit included, measured from here.
NUMBA_CACHE_DIR controls Numba's on-disk kernel cache:

- warm: a cache directory filled by one earlier run (what every start after the first sees);
- cold: an empty cache directory every round (the first start after installing);
- off:  FASTMLP_NO_CACHE=1 (compile every time, write nothing).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from benchlib import SMOKE

CHILD = str(Path(__file__).resolve().parent / "child.py")
ROUNDS = {"warm": 5, "cold": 3, "off": 2}
CACHES = ["warm", "cold"] if SMOKE else ["warm", "cold", "off"]  # "off" compiles as "cold" does


def run_child(cache_dir, no_cache=False):
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_NO_CACHE"}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    if no_cache:
        env["FASTMLP_NO_CACHE"] = "1"
    out = subprocess.run([sys.executable, CHILD, "cold-start"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cache", CACHES)
def test_cold_start(benchmark, tmp_path, cache):
    results = []
    warm_dir = tmp_path / "warm"
    if cache == "warm":
        run_child(warm_dir)  # fill the cache

    def setup():
        if cache == "warm":
            return (warm_dir,), {}
        return (Path(tempfile.mkdtemp(dir=tmp_path)),), {"no_cache": cache == "off"}

    def target(cache_dir, no_cache=False):
        results.append(run_child(cache_dir, no_cache))

    benchmark.group = "cold start"
    benchmark.extra_info.update(kind="cold start", cache=cache)
    benchmark.pedantic(target, setup=setup, rounds=1 if SMOKE else ROUNDS[cache])
    if results:
        best = min(results, key=lambda r: r["to_first_step_s"])
        benchmark.extra_info.update(best)
