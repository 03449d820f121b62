"""The kernel contract: the table in kernels/__init__.py against every backend present.

Each backend module (reference, cpu, and cuda wherever numba-cuda is installed: its
functions exist and have signatures without a GPU) must define every function of the table
with exactly the table's parameters, in order, with the table's defaults (the reference's
where the table gives none), and nothing
public beyond it. The only extras allowed are CUDA's trailing, optional ``total=`` /
``norm_out=`` (device scalars written without a read-back), which the table's text names.
What the functions compute is compared with the reference in tests/conformance/, once per
backend (the CUDA backend under the simulator).
"""

import importlib
import importlib.util
import inspect
import re

import pytest

import fastmlp.kernels as kernels

#: optional trailing parameters a backend may add, by backend name
EXTRAS = {"cuda": {"total", "norm_out"}}

BACKENDS = ["reference", "cpu", "cuda"]


def contract():
    """{function name: [(parameter, default or inspect.Parameter.empty)]} parsed from the
    table in kernels/__init__.py (the first column of the reST simple table)."""
    lines = kernels.__doc__.splitlines()
    rulers = [i for i, line in enumerate(lines) if line.startswith("=====")]
    assert len(rulers) == 2, "the contract table lost its rulers"
    width = len(lines[rulers[0]].split()[0])
    first_column = " ".join(line[:width] for line in lines[rulers[0] + 1:rulers[1]])
    table = {}
    for cell in re.findall(r"``(.+?)``", first_column):
        m = re.fullmatch(r"\s*([\w /]+?)\((.*)\)\s*(->.*)?", cell)
        assert m, f"cannot read the contract entry {cell!r}"
        params = []
        for p in filter(None, (p.strip() for p in m.group(2).split(","))):
            name, _, default = p.partition("=")
            params.append((name, eval(default) if default else inspect.Parameter.empty))
        for name in m.group(1).split("/"):
            table[name.strip()] = params
    return table


def load(name):
    if name == "cuda" and importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda)")
    return importlib.import_module(f"fastmlp.kernels.{name}")


def signature(f):
    try:
        return inspect.signature(f)
    except (TypeError, ValueError):  # a compiled dispatcher without a signature
        return inspect.signature(f.py_func)


def public_functions(module):
    """The module's public callables, its own or its submodules' (the cuda package
    re-exports them), without classes and imported modules."""
    own = module.__name__
    return {n for n, f in vars(module).items()
            if callable(f) and not n.startswith("_") and not inspect.isclass(f)
            and (getattr(f, "__module__", "") or "").startswith(own)}


def test_the_table_reads_whole():
    table = contract()
    # every row of the table is a function: a parser that lost rows would pass the rest
    assert len(table) >= 42 and {"matmul", "mlp_backward", "synchronize", "empty", "zeros"} <= set(table)
    assert table["delta_backward"][-1] == ("accumulate", False)
    assert table["adam_update"][-1] == ("v_max", None)
    assert table["synchronize"] == []


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_implements_the_table_with_its_signatures(name):
    module, reference = load(name), load("reference")
    table = contract()
    missing = sorted(f for f in table if not callable(getattr(module, f, None)))
    assert not missing, f"kernels.{name} lacks {missing}"
    extras = EXTRAS.get(name, set())
    for fname, params in table.items():
        got = list(signature(getattr(module, fname)).parameters.values())
        assert [p.name for p in got[:len(params)]] == [p for p, _ in params], (
            f"kernels.{name}.{fname}{signature(getattr(module, fname))} differs from the table's "
            f"{fname}({', '.join(p for p, _ in params)})")
        oracle = signature(getattr(reference, fname)).parameters
        for p, (_, default) in zip(got, params):
            # a default the table gives must be there; the others as in the reference
            expected = default if default is not inspect.Parameter.empty else oracle[p.name].default
            assert p.default == expected, f"kernels.{name}.{fname}: default of {p.name}"
        for p in got[len(params):]:
            assert p.name in extras and p.default is None, (
                f"kernels.{name}.{fname} has a parameter {p.name!r} the contract does not name")


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_has_nothing_public_beyond_the_table(name):
    module = load(name)
    beyond = public_functions(module) - set(contract()) - {"backend", "is_available",
                                                         "why_unavailable"}
    assert not beyond, f"kernels.{name} has public functions the contract does not list: {sorted(beyond)}"


def test_backend_names_its_device():
    for name in ("reference", "cpu"):
        assert load(name).name == name
    assert kernels.backend("reference") is load("reference")
    assert kernels.backend("cpu") is load("cpu")


def test_the_package_declares_its_license_and_its_type_hints():
    """pyproject says MIT: the LICENSE file says it too; py.typed ships with the package (PEP
    561), so type checkers read fastmlp's hints."""
    import importlib.resources
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    assert "MIT License" in (root / "LICENSE").read_text()
    assert 'license = { text = "MIT" }' in (root / "pyproject.toml").read_text()
    assert '"fastmlp" = ["py.typed"]' in (root / "pyproject.toml").read_text()
    assert importlib.resources.files("fastmlp").joinpath("py.typed").is_file()
