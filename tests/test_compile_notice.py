"""The one-line notice while the kernels compile (a process's first fit on a cold cache), and
the compile time that the demo reports apart from training."""

import os
import subprocess
import sys

SCRIPT = """
import os
import numpy as np, fastmlp as fm
from fastmlp.kernels import compile_notice
X = np.random.default_rng(0).random((64, 5), dtype=np.float32)
y = (X[:, 0] > 0.5).astype(int)
model = fm.MLP([5, 7, 2], activation="{act}", loss="cross_entropy", seed=0)
if os.environ.get("FIT", "1") == "1":
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
else:  # inference only: fewer kernels, still seconds of compiling
    model.predict(X)
print("compiled", compile_notice.compile_seconds())
"""


def _run(act, **env):
    env = dict(os.environ, FASTMLP_NO_CACHE="1", **env)  # no cache: it compiles for sure
    return subprocess.run([sys.executable, "-c", SCRIPT.format(act=act)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_a_cold_start_says_once_that_it_compiles_and_counts_the_seconds():
    run = _run("elu", FASTMLP_COMPILE_NOTICE="1")
    assert run.returncode == 0, run.stderr
    notices = [line for line in run.stderr.splitlines() if "compiling the kernels" in line]
    assert len(notices) == 1, run.stderr
    assert notices[0].startswith("fastmlp: compiling the kernels for this CPU, once;")
    assert "disk cache is off" in notices[0]  # FASTMLP_NO_CACHE=1 here
    seconds = float(run.stdout.split("compiled")[1])
    assert seconds > 1.0  # it printed, so more than NOTICE_AFTER_S went by compiling


def test_the_notice_can_be_silenced():
    run = _run("tanh", FASTMLP_COMPILE_NOTICE="0", FIT="0")
    assert run.returncode == 0, run.stderr
    assert "compiling the kernels" not in run.stderr
    assert float(run.stdout.split("compiled")[1]) > 0  # still counted
