"""Shared test configuration.

device="auto" is pinned to the CPU in every test (see ``_auto_means_cpu``) unless the test
is marked ``auto_device`` or FASTMLP_TEST_DEVICE=auto is set.

With FASTMLP_RELIABILITY_TABLE=PATH set, every ``pytest.raises`` block that catches an
error records the test, the error type and its message, and the session writes them to PATH
as JSON: ``tools/reliability_table.py`` turns that into the README's Reliability table.
"""

import json
import os

import pytest

#: the suite runs on the CPU: "auto" means "cpu" in every test, so that a GPU machine runs
#: the same tests as CI (a test that means the real "auto" is marked ``auto_device``).
#: FASTMLP_TEST_DEVICE=auto lets "auto" pick a GPU where there is one.
_PIN_CPU = os.environ.get("FASTMLP_TEST_DEVICE", "cpu").strip().lower() == "cpu"


def pytest_configure(config):
    config.addinivalue_line("markers", "auto_device: device='auto' is not pinned to the CPU")


@pytest.fixture(autouse=True)
def _auto_means_cpu(request, monkeypatch):
    if _PIN_CPU and request.node.get_closest_marker("auto_device") is None:
        import fastmlp.kernels as kernels

        real = kernels.backend

        def backend(device="auto"):
            if isinstance(device, str) and device.strip().lower() == "auto":
                return real("cpu")
            return real(device)

        monkeypatch.setattr(kernels, "backend", backend)
    yield

_TABLE = os.environ.get("FASTMLP_RELIABILITY_TABLE")
_RECORDS = []


class _Recording:
    def __init__(self, context, nodeid):
        self.context = context
        self.nodeid = nodeid

    def __enter__(self):
        self.info = self.context.__enter__()
        return self.info

    def __exit__(self, *exc):
        suppressed = self.context.__exit__(*exc)
        if suppressed and self.info.value is not None:
            _RECORDS.append({"test": self.nodeid, "error": type(self.info.value).__name__,
                             "message": str(self.info.value)})
        return suppressed


if _TABLE:
    @pytest.fixture(autouse=True)
    def _record_raised_errors(request, monkeypatch):
        real = pytest.raises

        def raises(*args, **kwargs):
            context = real(*args, **kwargs)
            if len(args) > 1:  # pytest.raises(Error, function, ...) form: already ran
                return context
            return _Recording(context, request.node.nodeid)

        monkeypatch.setattr(pytest, "raises", raises)
        yield

    def pytest_sessionfinish(session, exitstatus):
        with open(_TABLE, "w") as f:
            json.dump(_RECORDS, f, indent=1)
