"""Every ```python block of README.md runs, and the README's commands, links and paths exist.

Each ```python block runs on its own, in a fresh namespace that PRELUDE has filled first,
with a temporary folder as the working directory (files a block writes land there):

    np, fastmlp, fm                    numpy, fastmlp, fastmlp again (the README's alias)
    X, y, X_test, y_test               the bundled digits (load_digits): 1400 + 397 rows,
                                       64 features in [0, 1], labels 0..9
    model, history                     fm.MLP([64, 32, 10], seed=0) fitted one epoch, its History

An HTML comment on the line right above a block says how to run it:

    <!-- readme-test: needs torch onnx -->   skipped (with the reason) unless every name is
                                             importable; two names are not modules: "gpu" (a
                                             usable CUDA GPU) and "mnist" (the real MNIST files
                                             in $FASTMLP_DATA/mnist or ../shared/datasets/mnist)
    <!-- readme-test: skip (reason) -->      never run here (e.g. it runs under mpiexec)
    <!-- readme-test: xfail (reason) -->     runs, and a failure is an expected failure (a known
                                             library bug, named in the reason)

Shell blocks (```bash) are not run; the `fastmlp` commands in them are checked against the
command line's parsers (every option they name exists).
"""

import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

PRELUDE = """
import numpy as np
import fastmlp
import fastmlp as fm
X, y = fm.datasets.load_digits()
X, y, X_test, y_test = X[:1400], y[:1400], X[1400:], y[1400:]
model = fm.MLP([64, 32, 10], seed=0)
history = model.fit(X, y, epochs=1, verbose=0)
"""

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(needs|skip|xfail)\b\s*(.*?)\s*-->")
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _blocks(lang):
    """(line number, code, directive or None) of each ```lang block, in order."""
    out = []
    for m in _FENCE.finditer(TEXT):
        if m.group(1) != lang:
            continue
        line = TEXT.count("\n", 0, m.start()) + 1
        before = TEXT[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        d = _DIRECTIVE.fullmatch(before)
        if before.startswith("<!-- readme-test") and d is None:
            raise ValueError(f"README.md:{line - 1}: an unreadable readme-test comment: {before}")
        out.append((line, m.group(2), None if d is None else (d.group(1), d.group(2))))
    return out


PYTHON = _blocks("python")
BASH = _blocks("bash")


def _mnist_folder():
    candidates = [ROOT.parent / "shared" / "datasets" / "mnist"]
    if os.environ.get("FASTMLP_DATA"):
        candidates.insert(0, Path(os.environ["FASTMLP_DATA"]) / "mnist")
    for folder in candidates:
        if all((folder / f).exists() for f in MNIST_FILES):
            return folder
    return None


def _missing(name):
    """Why `name` (a module, "gpu" or "mnist") is not at hand, or None when it is."""
    if name == "gpu":
        try:
            from fastmlp.kernels import backend

            backend("cuda")
        except Exception as exc:  # no driver, no device, no numba-cuda
            return f"no usable CUDA GPU ({type(exc).__name__}: {str(exc)[:80]})"
        return None
    if name == "mnist":
        return None if _mnist_folder() else "the MNIST files are not in $FASTMLP_DATA/mnist or ../shared/datasets/mnist"
    if importlib.util.find_spec(name) is None:
        return f"needs {name}, which is not installed"
    return None


def test_the_readme_has_python_blocks_and_the_two_commands():
    assert len(PYTHON) >= 10
    # CI runs these two lines as they are
    assert ("```bash\npython3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
            "python -m fastmlp\n```") in TEXT
    assert '```bash\npip install -e ".[test]" && python -m pytest\n```' in TEXT


@pytest.mark.parametrize("line,code,directive", PYTHON, ids=[f"README.md:{b[0]}" for b in PYTHON])
def test_python_block_runs(line, code, directive, tmp_path, monkeypatch):
    kind, arg = directive or (None, "")
    if kind == "skip":
        pytest.skip(f"README.md:{line}: {arg.strip('()') or 'marked skip'}")
    if kind == "needs":
        names = arg.replace(",", " ").split()
        assert names, f"README.md:{line}: 'needs' names nothing"
        for name in names:
            why = _missing(name)
            if why:
                pytest.skip(f"README.md:{line}: {why}")
        if "mnist" in names:
            monkeypatch.setenv("FASTMLP_DATA", str(_mnist_folder().parent))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("FASTMLP_COMPILE_NOTICE", "0")
    namespace = {"__name__": "readme"}
    exec(compile(PRELUDE, "<readme prelude>", "exec"), namespace)
    # the block's lines keep their README line numbers in a traceback
    source = "\n" * line + code
    try:
        exec(compile(source, str(README), "exec"), namespace)
    except Exception:
        if kind == "xfail":
            pytest.xfail(f"README.md:{line}: {arg.strip('()')}")
        raise
    finally:
        try:
            import matplotlib.pyplot as plt

            plt.close("all")
        except ImportError:
            pass


def _fastmlp_commands():
    """(line, argv after 'fastmlp') of every fastmlp command in the ```bash blocks."""
    out = []
    for start, code, _ in BASH:
        for i, raw in enumerate(code.splitlines()):
            text = raw.split("#", 1)[0].strip()
            for part in re.split(r"&&|;|\|", text):
                words = shlex.split(part)
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value before the command
                if words[:1] in (["mpiexec"], ["mpirun"], ["srun"]):
                    words = words[3:] if len(words) > 2 and words[1] == "-n" else words[1:]
                if words[:1] == ["fastmlp"]:
                    out.append((start + 1 + i, words[1:]))
    return out


def test_the_readme_commands_name_real_options():
    from fastmlp import _cli_args

    commands = _fastmlp_commands()
    assert commands
    for line, argv in commands:
        name = argv[0] if argv and not argv[0].startswith("-") else "demo"
        assert name in _cli_args._PARSERS, f"README.md:{line}: no command {name!r}"
        parser = _cli_args._PARSERS[name]()
        known = set(parser._option_string_actions)
        for word in argv:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in known, f"README.md:{line}: {name} has no option {word}"


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_PATH = re.compile(r"`((?:fastmlp|kernels|tests|bench|docs|tools)/[\w./-]*\w)`")


def test_the_readme_links_and_paths_exist():
    named = set(_LINK.findall(TEXT)) | set(_PATH.findall(TEXT))
    named = {p for p in named if "://" not in p}
    assert named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"


def test_the_readme_anchors_exist():
    """Every in-page link (#anchor) names a heading (GitHub's slugs)."""
    def slug(heading):
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", TEXT, re.M)}
    anchors = set(re.findall(r"\]\(#([^)]+)\)", TEXT))
    assert not sorted(anchors - headings)
