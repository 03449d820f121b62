"""An optional package that is missing is named with the extra that brings it."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("missing", ["scipy", "sklearn"])
def test_the_estimators_without_their_packages_name_the_extra_to_install(missing):
    code = (f"import sys; sys.modules[{missing!r}] = None\n"
            "import fastmlp\n"
            "try:\n"
            "    from fastmlp import MLPClassifier\n"
            "except ImportError as e:\n"
            "    print('ImportError:', e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip()
    assert line.startswith("ImportError: fastmlp.MLPClassifier and fastmlp.MLPRegressor need"), line
    assert "pip install 'fastmlp[sklearn]'" in line and missing in line, line
