"""Save, load and ONNX times of this checkout against another one, in one run.

    python bench/files_ab.py OLD_TREE [ROUNDS]

OLD_TREE is another checkout of fastmlp (e.g. ``git worktree add /tmp/old <commit>``). Each
round runs every operation once in a fresh process of each tree, alternating which goes
first, and the script prints the median time of each operation per tree and their ratio
(old / new: above 1 means this checkout is faster). A tree is imported as it lies: its
``fastmlp`` and its ``kernels`` (as ``fastmlp.kernels``) are linked into a folder put first
on ``PYTHONPATH``.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = r"""
import json, sys, tempfile, time, pathlib
import fastmlp
sizes = json.loads(sys.argv[1])
folder = pathlib.Path(tempfile.mkdtemp())
model = fastmlp.MLP(sizes, loss="cross_entropy", optimizer="adam", device="cpu", seed=0)
model.save(folder / "m.npz"); model.to_onnx(folder / "m.onnx")
ops = {"save": lambda: model.save(folder / "again.npz"),
       "load": lambda: fastmlp.load(folder / "m.npz", device="cpu"),
       "to_onnx": lambda: model.to_onnx(folder / "again.onnx"),
       "from_onnx": lambda: fastmlp.from_onnx(folder / "m.onnx", device="cpu")}
out = {}
for name, op in ops.items():
    op()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter(); op(); best = min(best, time.perf_counter() - t)
    out[name] = best
print(json.dumps(out))
"""


def _package(tree, into):
    pkg = Path(into) / "fastmlp"
    pkg.mkdir(parents=True)
    for item in (Path(tree) / "fastmlp").iterdir():
        (pkg / item.name).symlink_to(item)
    (pkg / "kernels").symlink_to(Path(tree) / "kernels")
    return into


def main():
    old_tree = Path(sys.argv[1]).resolve()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    trees = {"old": old_tree, "new": HERE.parent}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: _package(tree, Path(tmp) / name) for name, tree in trees.items()}
        for sizes in ([784, 256, 128, 10], [1024, 4096, 4096, 10]):
            times = {name: [] for name in trees}
            for r in range(rounds):
                for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    env = dict(os.environ, PYTHONPATH=str(paths[name]), FASTMLP_COMPILE_NOTICE="0")
                    run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sizes)],
                                         capture_output=True, text=True, env=env, cwd=tmp)
                    if run.returncode:
                        raise SystemExit(f"{name}: {run.stderr[-3000:]}")
                    times[name].append(json.loads(run.stdout.splitlines()[-1]))
            print(f"{sizes}: median of {rounds} rounds (best of 3 in each), old / new")
            for op in times["new"][0]:
                old = statistics.median(t[op] for t in times["old"])
                new = statistics.median(t[op] for t in times["new"])
                print(f"  {op:10s} old {old * 1e3:8.2f} ms  new {new * 1e3:8.2f} ms  "
                      f"ratio {old / new:5.2f}")


if __name__ == "__main__":
    main()
