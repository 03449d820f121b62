"""Bounded-memory checks for the hostile-input tests: a snippet run in a fresh Python process
whose address space may grow by at most a fixed amount past what it holds once its setup has
run, and whose peak resident memory is reported.

``run_bounded(setup, action)`` runs `setup` (imports, writing a forged file, warming the
kernels), then lowers the process's address-space limit (RLIMIT_AS) to its current size plus
`limit_mb`, runs `action` and reports what it raised: an allocation past the limit fails there
as a MemoryError instead of eating the machine, and the test that expected a ValueError sees
it. The peak resident set (ru_maxrss) before and after the action is reported too, so a test
can assert the rise directly.
"""

import json
import os
import subprocess
import sys
import textwrap

_PRELUDE = """
import json, os, resource, sys, traceback
def _vm_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
"""

_LIMIT = """
_peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
_limit = _vm_bytes() + {limit} * (1 << 20)
resource.setrlimit(resource.RLIMIT_AS, (_limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
_result = {{"error": None, "message": None}}
try:
{action}
except BaseException as _exc:
    _result = {{"error": type(_exc).__name__, "message": str(_exc),
               "module": type(_exc).__module__, "traceback": traceback.format_exc()}}
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
_result["peak_rise_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _peak0) / 1024
print("@@RESULT@@" + json.dumps(_result))
"""


def run_bounded(setup, action, limit_mb=200, cwd=None, env=None, timeout=300):
    """Run `setup` then `action` (Python source) in a fresh interpreter, `action` under an
    address-space limit of `limit_mb` MiB above the process's size after `setup`. Returns a
    dict: ``error`` (the exception's class name, or None), ``message``, ``module``,
    ``traceback`` and ``peak_rise_mb`` (rise of the peak resident set during `action`)."""
    code = (_PRELUDE + textwrap.dedent(setup) + "\n"
            + _LIMIT.format(limit=int(limit_mb),
                            action=textwrap.indent(textwrap.dedent(action), "    ")))
    run_env = dict(os.environ if env is None else env)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=run_env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    raise AssertionError(f"the bounded child printed no result (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def assert_refused(result, error, *names, limit_mb=200):
    """`result` (from run_bounded) raised `error` (a class name or a tuple of them), its
    message names every one of `names`, and the peak resident set rose by under `limit_mb`."""
    errors = (error,) if isinstance(error, str) else tuple(error)
    assert result["error"] in errors, (
        f"expected {errors}, got {result['error']}: {result['message']}\n"
        f"{result.get('traceback') or ''}")
    for name in names:
        assert str(name) in result["message"], (name, result["message"])
    assert result["peak_rise_mb"] < limit_mb, result
