"""Numba's on-disk kernel cache: used by default, off with FASTMLP_NO_CACHE=1."""

import os
import subprocess
import sys

import pytest

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


FIT = (
    "import numpy as np, fastmlp\n"
    "X, y = fastmlp.datasets.load_digits()\n"
    "m = fastmlp.MLP([64, 16, 10], optimizer='adam', seed=0)\n"
    "h = m.fit(X, y, epochs=2, batch_size=128, verbose=0)\n"
    "print(repr(h.history['loss']))\n"
)


def test_fits_compiled_runs_are_reused_from_the_cache(tmp_path):
    """fit's compiled runs (kernels/cpu_epoch.py, cpu_split.py: loops specialised per loss
    and metric) load from the cache in a later process instead of compiling again: they
    were closures over compiled functions, which Numba keys differently in every process."""
    env = _env(tmp_path)
    first = subprocess.run([sys.executable, "-c", FIT], env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    files = _cache_files(tmp_path)
    assert any("steps_cross_entropy_labels" in f for f in files)  # train_steps or split_steps
    again = subprocess.run([sys.executable, "-c", FIT], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert _cache_files(tmp_path) == files  # nothing compiled into new entries


def test_cache_can_be_switched_off(tmp_path):
    result = _run(tmp_path, FASTMLP_NO_CACHE="1")
    assert _cache_files(tmp_path) == []
    assert result == _run(tmp_path / "cached")


# ---------------------------------------------------------------------------------------
# several processes at once, and caches nobody can write

def _env(cache_dir, **extra):
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_NO_CACHE"}
    env.update(NUMBA_CACHE_DIR=str(cache_dir), **extra)
    return env


def test_four_processes_compiling_into_one_empty_cache_at_once(tmp_path):
    """Four processes started together on an empty cache all compile and write it; the
    cache they leave behind is whole: a fifth run loads it, recompiles nothing and gives
    the same number."""
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=_env(tmp_path), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(out.strip())
    assert len(set(results)) == 1
    files = _cache_files(tmp_path)
    assert _run(tmp_path) == results[0]
    assert _cache_files(tmp_path) == files


GRID_SEARCH = (
    "import numpy as np, fastmlp\n"
    "from sklearn.model_selection import GridSearchCV\n"
    "X, y = fastmlp.datasets.load_digits()\n"
    "X = X[:600].astype(np.float64); y = y[:600]\n"
    "est = fastmlp.MLPClassifier(max_iter=3, random_state=0)\n"
    "grid = GridSearchCV(est, {'hidden_layer_sizes': [(8,), (16,)]}, cv=2, n_jobs=2)\n"
    "import warnings; warnings.simplefilter('ignore')\n"
    "grid.fit(X, y)\n"
    "print(grid.best_params_, repr(grid.cv_results_['mean_test_score'].tolist()),\n"
    "      int(grid.predict(X).sum()))\n"
)


def _read_only_runner(folders):
    """A command prefix that runs a command with `folders` mounted read-only (a private
    mount namespace, so root is refused too), or None where that is impossible."""
    import shutil

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    mounts = " && ".join(f"mount --bind '{f}' '{f}' && mount -o remount,bind,ro '{f}'" for f in folders)
    return ["unshare", "-m", "sh", "-c", mounts + ' && exec "$@"', "sh"]


def test_grid_search_with_loky_workers_on_an_empty_then_a_read_only_cache(tmp_path):
    """GridSearchCV(n_jobs=2) starts two loky worker processes that compile into an empty
    cache at the same time; then the same search where nothing can be written (the cache
    folder, the package folder and the home folder read-only: fastmlp then compiles in
    memory instead of failing at import) gives the same answer."""
    pytest.importorskip("sklearn")
    cache = tmp_path / "cache"
    cache.mkdir()
    first = subprocess.run([sys.executable, "-c", GRID_SEARCH], env=_env(cache),
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert _cache_files(cache)

    import fastmlp

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    home = tmp_path / "home"
    home.mkdir()
    runner = _read_only_runner([cache, package_root, home])
    if runner is None:
        if os.geteuid() == 0:
            pytest.skip("no way to make a folder read-only for root here (unshare -m unavailable)")
        runner = []
        for folder in (cache, home):
            os.chmod(folder, 0o555)
    env = _env(cache, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    try:
        second = subprocess.run(runner + [sys.executable, "-c", GRID_SEARCH], env=env,
                                capture_output=True, text=True, timeout=600)
    finally:
        for folder in (cache, home):
            os.chmod(folder, 0o755)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


STALE_SCRIPT = (
    "import sys; sys.path.insert(0, sys.argv[1])\n"
    "import numpy as np, fastmlp\n"
    "assert fastmlp.__file__.startswith(sys.argv[1]), fastmlp.__file__\n"
    "X = -np.abs(np.random.default_rng(0).normal(size=(4, 5))).astype(np.float32)\n"
    "m = fastmlp.MLP([5, 3, 2], activation='elu', loss='mse', seed=0)\n"
    "m.set_weights([np.eye(3, 5, dtype=np.float32), np.zeros(3, np.float32),\n"
    "               np.ones((2, 3), np.float32), np.zeros(2, np.float32)])\n"
    "print(repr(m.predict(X)[:, 0].tolist()))\n"
)


def test_a_change_in_any_kernel_source_makes_every_cached_kernel_stale(tmp_path):
    """The compiled layer loops of cpu.py inline the activations of scalar.py: after a change
    of scalar.py alone (an upgrade, a branch switch) the cached loops must not come back
    with the old formula. A copy of the package, run, then elu changed in its scalar.py."""
    import shutil

    import fastmlp

    src = os.path.dirname(os.path.abspath(fastmlp.__file__))
    copy = tmp_path / "pkg" / "fastmlp"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(src, copy, ignore=ignore)
    if not (copy / "kernels").exists():  # an editable install maps fastmlp.kernels to kernels/
        shutil.copytree(os.path.dirname(os.path.abspath(fastmlp.kernels.__file__)), copy / "kernels",
                        ignore=ignore)
    cache = tmp_path / "cache"

    def run():
        out = subprocess.run([sys.executable, "-c", STALE_SCRIPT, str(tmp_path / "pkg")],
                             env=_env(cache), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return eval(out.stdout)

    before = run()
    assert all(v < 0 for v in before)  # elu of negative inputs
    scalar = copy / "kernels" / "scalar.py"
    text = scalar.read_text()
    old = "return z if z > ZERO else ELU_ALPHA * math.expm1(z)"
    assert old in text
    scalar.write_text(text.replace(old, "return z if z > ZERO else ZERO"))  # elu -> relu
    assert run() == [0.0] * 4


def test_a_stale_index_never_points_at_old_data(tmp_path, monkeypatch):
    """Numba's own order (index first, then data; numbering restarted after a stale index)
    lets an interrupted or concurrent save leave an index entry pointing at another
    version's data file. fastmlp's cache files: the stale data goes first, the data is
    written before the index that points to it."""
    from numba.core.caching import IndexDataCacheFile

    from fastmlp.kernels import diskcache

    monkeypatch.setattr(diskcache, "_CACHE_PATHS", {str(tmp_path)})
    old = IndexDataCacheFile(str(tmp_path), "f", "version 1")
    old.save("key 1", "code of version 1")
    assert old.load("key 1") == "code of version 1"
    new = IndexDataCacheFile(str(tmp_path), "f", "version 2")
    assert new.load("key 1") is None  # stale

    writes = []

    def second_write_killed(real):
        def write(self, *args):
            writes.append(real.__name__)
            if len(writes) == 2:
                raise KeyboardInterrupt("killed between the two writes of a save")
            return real(self, *args)
        return write

    for name in ("_save_index", "_save_data"):
        monkeypatch.setattr(IndexDataCacheFile, name, second_write_killed(getattr(IndexDataCacheFile, name)))
    with pytest.raises(KeyboardInterrupt):
        new.save("key 2", "code of version 2")
    monkeypatch.undo()
    monkeypatch.setattr(diskcache, "_CACHE_PATHS", {str(tmp_path)})
    assert new.load("key 2") is None  # nothing half-saved is found
    new.save("key 2", "code of version 2")
    assert new.load("key 2") == "code of version 2"
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".nbc")) == ["f.1.nbc"]


SIGNATURES = (
    "import sys, numpy as np\n"
    "from fastmlp.kernels import cpu, reference as ref\n"
    "i = int(sys.argv[1]); rng = np.random.default_rng(i)\n"
    "dtype = (np.float32, np.float64)[i % 2]; depth = 1 + i // 2\n"
    "sizes = [5] + [7 - l for l in range(depth)] + [3]\n"
    "acts = tuple(int(a) for a in rng.integers(0, 6, len(sizes) - 1))\n"
    "A = [rng.normal(size=(6, sizes[0])).astype(dtype)] + [np.empty((6, s), dtype) for s in sizes[1:]]\n"
    "W = tuple(rng.normal(size=(o, k)).astype(dtype) for k, o in zip(sizes, sizes[1:]))\n"
    "b = tuple(rng.normal(size=o).astype(dtype) for o in sizes[1:])\n"
    "cpu.mlp_forward(tuple(A), tuple(A), W, b, acts)\n"
    "R = [A[0]] + [np.empty_like(a) for a in A[1:]]\n"
    "ref.mlp_forward(R, R, W, b, acts)\n"
    "print(max(float(np.abs(a - r).max() / (1 + np.abs(r).max())) for a, r in zip(A, R)))\n"
)


def test_processes_compiling_different_signatures_at_once_leave_a_correct_cache(tmp_path):
    """Four processes add different signatures (dtypes, depths) of the same kernels to one
    empty cache at once; then four more load them: every answer equals the reference."""
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", SIGNATURES, str(i)], env=_env(tmp_path),
                                  text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err
            assert float(out) < 1e-5


def test_every_compiled_function_has_a_first_statement_for_numba_debug_info():
    """With NUMBA_ENABLE_PROFILING=1 (perf, VTune) or debug info on, Numba looks up each
    compiled function's first statement after its docstring; a body that is only a
    docstring makes that lookup raise IndexError, and every fit with it (Numba 0.68).
    Numba's own finder, on every compiled function of the kernels (CUDA's device functions
    are module-level functions compiled later: all of kernels/cuda's are checked)."""
    import importlib
    import inspect
    import pkgutil

    from numba.misc.firstlinefinder import get_func_body_first_lineno

    import fastmlp.kernels as kernels

    checked = []
    for info in pkgutil.walk_packages(kernels.__path__, "fastmlp.kernels."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # the CUDA modules without numba-cuda
            continue
        for name, obj in vars(module).items():
            fn = getattr(obj, "py_func", None)
            if fn is None and ".cuda" in info.name and inspect.isfunction(obj):
                fn = obj
            if fn is None or fn.__module__ != module.__name__:
                continue
            get_func_body_first_lineno(fn)  # IndexError for a docstring-only body
            checked.append(f"{info.name}.{name}")
    assert "fastmlp.kernels.cpu._unchanged" in checked and len(checked) > 50, checked
