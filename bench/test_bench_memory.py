"""Peak memory and growth while training MNIST-shaped data (group ``memory``).

A fresh process (`python bench/child.py memory N 128 5`) compiles the kernels on a throwaway
model, notes its RSS (the baseline: interpreter, NumPy, Numba, compiled kernels), resets
the kernel's peak-RSS mark, then makes the data (60000 x 784 float32) and trains a new model
5 epochs with SGD(momentum 0.9), batch 128. Reported in extra_info: the peak RSS above the
baseline next to the budget data + 2 x (parameters + optimizer state) + 64 MiB, and the RSS
after each epoch (growth = after epoch 5 - after epoch 1). The benchmark's time is the
whole subprocess's and means little.
"""

import json
import subprocess
import sys
from pathlib import Path

from benchlib import N

CHILD = str(Path(__file__).resolve().parent / "child.py")
BATCH, EPOCHS = 128, 5


def test_training_memory(benchmark):
    results = []

    def target():
        out = subprocess.run([sys.executable, CHILD, "memory", str(N), str(BATCH), str(EPOCHS)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.group = "memory"
    benchmark.extra_info.update(kind="memory")
    benchmark.pedantic(target, rounds=1)
    benchmark.extra_info.update(results[-1])
