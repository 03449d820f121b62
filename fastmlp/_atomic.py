"""Atomic file writing: a file is replaced whole or not at all.

``atomic_write(path, write)`` writes to a temporary file in the target's folder, flushes and
fsyncs it, gives it the old file's permissions (or those open() would give), renames it over
the target and fsyncs the folder where the platform allows. A crash or an exception midway
leaves the old file whole and no temporary file behind. Used by model files (io.py), ONNX
exports, ensembles and the CLI's reports.
"""

import os
import tempfile


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


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file beside `path`, fsync it, rename it over `path`.

    On any error (or interruption) the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".tmp", dir=folder)
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
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


__all__ = ["atomic_write"]
