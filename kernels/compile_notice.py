"""A one-line notice while Numba compiles this package's kernels, and the time it took.

A process's first fit compiles the kernels it needs for this CPU, which takes seconds on a
cold cache, in silence. Numba broadcasts a ``"numba:compile"`` event around every real
compilation (a kernel loaded from the disk cache raises none); the listener here adds up how
long this package's kernels took, and once that passes ``NOTICE_AFTER_S`` in a process it
prints one line to stderr saying what is happening and where the result is kept.
``compile_seconds()`` is the total so far (the demo reports it apart from training).
FASTMLP_COMPILE_NOTICE=0 silences the line.
"""

import os
import sys
import threading
import time

#: seconds of compiling after which the notice is printed: a warm start compiles nothing,
#: a cold one seconds, so one second separates "loaded" from "compiling" for a person
NOTICE_AFTER_S = 1.0

_lock = threading.Lock()
_state = {"depth": 0, "start": 0.0, "total": 0.0, "timer": None, "shown": False,
          "cache": None}


def compile_seconds():
    """Seconds this process has spent compiling fastmlp's kernels so far (finished
    compilations; one in progress counts from its start)."""
    with _lock:
        running = time.perf_counter() - _state["start"] if _state["depth"] else 0.0
        return _state["total"] + running


def _enabled():
    return os.environ.get("FASTMLP_COMPILE_NOTICE", "1").strip().lower() not in (
        "0", "false", "no", "off")


def _notice():
    with _lock:
        if _state["shown"] or not _state["depth"]:
            return
        _state["shown"] = True
        cache = _state["cache"]
    where = (f"cached in {cache}" if cache else
             "the disk cache is off (FASTMLP_NO_CACHE or no writable folder), so each new "
             "process compiles again")
    print(f"fastmlp: compiling the kernels for this CPU, once; {where}", file=sys.stderr,
          flush=True)


def _ours(data):
    func = getattr(data.get("dispatcher"), "py_func", None)
    return getattr(func, "__module__", "").startswith(__name__.rsplit(".", 1)[0])


def _install():
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - another Numba layout: no notice
        return

    class CompileListener(event.Listener):
        def on_start(self, ev):
            data = ev.data or {}
            if not _ours(data):
                return
            with _lock:
                _state["depth"] += 1
                if _state["depth"] > 1:
                    return
                _state["start"] = time.perf_counter()
                path = getattr(getattr(data["dispatcher"], "_cache", None), "_cache_path", None)
                _state["cache"] = path or _state["cache"]
                if _state["shown"] or not _enabled():
                    return
                left = max(NOTICE_AFTER_S - _state["total"], 0.0)
                timer = threading.Timer(left, _notice)
                timer.daemon = True
                _state["timer"] = timer
            timer.start()

        def on_end(self, ev):
            if not _ours(ev.data or {}):
                return
            with _lock:
                _state["depth"] -= 1
                if _state["depth"]:
                    return
                _state["total"] += time.perf_counter() - _state["start"]
                timer, _state["timer"] = _state["timer"], None
            if timer is not None:
                timer.cancel()

    if not any(type(x).__name__ == "CompileListener"
               for x in event._registered.get("numba:compile", ())):
        event.register("numba:compile", CompileListener())


_install()
