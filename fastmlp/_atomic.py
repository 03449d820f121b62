"""Atomic file writing: a file is replaced whole or not at all.

``atomic_write(path, write)`` writes to a temporary file in the target's folder, flushes and
fsyncs it, gives it the old file's permissions (or those open() would give), renames it over
the target and fsyncs the folder where the platform allows. A crash or an exception midway
leaves the old file whole and no temporary file behind. Used by model files (io.py), ONNX
exports, ensembles and the CLI's reports. An OSError names the target, not the temporary
file (same class and errno as the system's).

Temporary files are named ``.fastmlp-<target's name>-<pid>-<random>.tmp`` (the target's
name is replaced by a hash when it is long), in the target's folder. A process killed
outright (SIGKILL, power loss) leaves its temporary file behind; the next save to the same
target removes those of exactly this pattern for that target that are stale, where stale
means both: the process whose pid the name holds is not alive (so a live process's save,
concurrent with ours, is never touched), and the file was last modified before this process
started (so a pid reused since, or a pid of another machine or pid namespace sharing the
folder, whose writer may still be live, is not taken for a dead one unless its file has
been idle for longer than this process has existed). Files of any other name, including
those of older fastmlp versions (``.fastmlp-<random>.tmp``), are left alone. Cleaning is
POSIX-only (``os.kill(pid, 0)`` probes a pid there; on Windows it would end the process).
"""

import hashlib
import os
import re
import tempfile
import time


def _file_mode(path):
    """Permissions for the new file: the old file's, or what open() would give (umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_folder(folder):
    """Make the rename durable: fsync the folder (POSIX; silently skipped where impossible)."""
    flags = getattr(os, "O_DIRECTORY", 0) | os.O_RDONLY
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_start():
    """This process's start time (seconds since the epoch): from /proc on Linux (its age
    since boot against the system's uptime, both to 1/100 s), else the time this module was
    imported (later than the start, never earlier than a file this process wrote)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return min(time.time() - max(age, 0.0), _IMPORTED)
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.time()
_STARTED = _process_start()


def _tag(path):
    """The target's name as it appears in its temporary files' names."""
    name = os.path.basename(path)
    if len(name.encode("utf-8", "surrogateescape")) > 100 or not name:
        name = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return name


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists (another user's); anything else: keep it
        return True
    return True


def _remove_stale(folder, tag):
    """Remove the temporary files of the target named `tag` left by dead processes (see the
    module doc for the rule). Errors are ignored: cleaning never fails a save."""
    if os.name != "posix":
        return
    pattern = re.compile(re.escape(f".fastmlp-{tag}-") + r"([1-9][0-9]{0,9})-[a-z0-9_]+\.tmp")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if found is None or int(found.group(1)) == os.getpid():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and info.st_mtime < _STARTED \
                    and not _alive(int(found.group(1))):
                os.unlink(entry.path)
        except OSError:
            pass


def _naming_target(exc, path):
    """`exc` (an OSError about the temporary file or the rename) as the same kind of error
    naming the target `path` instead."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    try:
        if exc.errno is not None:
            return type(exc)(exc.errno, f"cannot save {path!r}: {reason}")
        return type(exc)(f"cannot save {path!r}: {reason}")
    except Exception:  # noqa: BLE001 - an OSError subclass with another signature
        return exc


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file beside `path`, fsync it, rename it over `path`.

    On any error (or interruption) the temporary file is removed and `path` is untouched;
    an OSError names `path`. Stale temporary files of `path` are removed first.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    tag = _tag(path)
    _remove_stale(folder, tag)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".fastmlp-{tag}-{os.getpid()}-", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:
        raise _naming_target(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _naming_target(exc, path) from None
        raise
    _fsync_folder(folder)


__all__ = ["atomic_write"]
