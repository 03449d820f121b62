"""The one-line notice while the kernels compile (a process's first fit on a cold cache), and
the compile time that the demo reports apart from training."""

import os
import subprocess
import sys

# one process on a cold cache: inference compiles with the notice off (still counted), then
# training compiles with it on (FASTMLP_COMPILE_NOTICE is read as each compilation starts)
SCRIPT = """
import os
import numpy as np, fastmlp as fm
from fastmlp.kernels import compile_notice
X = np.random.default_rng(0).random((64, 5), dtype=np.float32)
y = (X[:, 0] > 0.5).astype(int)
model = fm.MLP([5, 7, 2], activation="elu", loss="cross_entropy", seed=0)
os.environ["FASTMLP_COMPILE_NOTICE"] = "0"
model.predict(X)
print("silenced", compile_notice.compile_seconds(), flush=True)
os.environ["FASTMLP_COMPILE_NOTICE"] = "1"
model.fit(X, y, epochs=1, batch_size=16, verbose=0)
print("compiled", compile_notice.compile_seconds(), flush=True)
"""


def test_a_cold_start_says_once_that_it_compiles_counts_the_seconds_and_can_be_silenced():
    env = dict(os.environ, FASTMLP_NO_CACHE="1")  # no cache: it compiles for sure
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    out = dict(line.split() for line in run.stdout.splitlines())
    silenced, compiled = float(out["silenced"]), float(out["compiled"])
    assert silenced > 1.0  # seconds of compiling went by without a notice: it was off
    notices = [line for line in run.stderr.splitlines() if "compiling the kernels" in line]
    assert len(notices) == 1, run.stderr  # once it was on: one line, however long it took
    assert notices[0].startswith("fastmlp: compiling the kernels for this CPU, once;")
    assert "disk cache is off" in notices[0]  # FASTMLP_NO_CACHE=1 here
    assert compiled > silenced
