"""Downloading the standard data sets once, into a cache folder, safely.

``fetch(name)`` returns the local folder holding every file of data set `name`, downloading
what is missing from the data set's canonical sources (several mirrors, in order):

- the folder is the one the caller names, else ``$FASTMLP_DATA/<name>``, else
  ``~/.cache/fastmlp/<name>``; files already there with the right SHA-256 are used as they
  are, so it works offline once the files are in place (or when the user puts them there);
- a download goes to a hidden ``.part`` file beside its target, resumes with an HTTP Range
  request where a connection breaks, is checked against the published size and SHA-256,
  and only then is renamed into place (atomic): the cache never holds a half-written or
  corrupted file, and a failed download leaves nothing behind;
- server errors and broken connections are retried (a few times, with a short pause), then
  the next mirror is tried; a mirror that cannot be reached at all (offline, no such host,
  connection refused) is not retried, nor asked again for the next files; in the end the
  error holds one line per file that could not be fetched, naming the file, every URL tried
  and what went wrong there, and the folder to put the file in by hand.

Downloaded data is only ever read as bytes (IDX, CIFAR-10 binary): nothing is unpickled.
"""

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request

#: the four files of an IDX data set (MNIST's layout), in the order _idx takes them
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx(*size_sha256):
    """{file: (size in bytes, sha256)} of an IDX data set, one pair per file of IDX_FILES."""
    return dict(zip(IDX_FILES, size_sha256, strict=True))


#: name -> (mirrors, {file: (size in bytes, sha256)})
SOURCES = {
    "mnist": (
        ["https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        _idx((9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
             (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
             (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
             (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
    ),
    "fashion-mnist": (
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        _idx((26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
             (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
             (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
             (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5")),
    ),
    "cifar10": (
        ["https://www.cs.toronto.edu/~kriz/"],
        {"cifar-10-binary.tar.gz": (170052171, "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")},
    ),
}

RETRIES = 3  # tries per mirror for server errors and broken connections
TIMEOUT = 30.0  # seconds without data before a connection counts as broken
_CHUNK = 1 << 20


def data_folder(name, folder=None):
    """Where data set `name` lives: `folder`, else $FASTMLP_DATA/<name>, else
    ~/.cache/fastmlp/<name>."""
    if folder is not None:
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"path must be a folder path (str or os.PathLike); got {folder!r}")
        return os.fspath(folder)
    root = os.environ.get("FASTMLP_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "fastmlp")
    return os.path.join(root, name)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_good(path, size, sha256):
    return os.path.isfile(path) and os.path.getsize(path) == size and _sha256(path) == sha256


def local_copy(name, *folders):
    """The first of $FASTMLP_DATA/<name> and `folders` that holds every file of data set
    `name` (by name; their sizes and checksums are not read), or None."""
    candidates = [os.path.join(os.environ["FASTMLP_DATA"], name)] if os.environ.get(
        "FASTMLP_DATA") else []
    candidates += [os.fspath(f) for f in folders]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in SOURCES[name][1]):
            return folder
    return None


def fetch(name, folder=None, download=True, named=False):
    """The folder holding every file of data set `name`, downloaded where missing.

    download=False never downloads; `named` says the folder is the caller's own `path`
    (download=None in the loaders: read only, unless download=True)."""
    mirrors, files = SOURCES[name]
    folder = data_folder(name, folder)
    missing = [f for f, (size, sha) in files.items() if not _is_good(os.path.join(folder, f), size, sha)]
    if not missing:
        return folder
    if not download:
        if named:
            raise FileNotFoundError(
                f"{name}: {', '.join(missing)} not found (or not the published file) in path "
                f"{folder!r}; put the files there, or pass download=True to download them into "
                "it (without path, they are downloaded into the cache folder)")
        raise FileNotFoundError(
            f"{name}: {', '.join(missing)} not found (or not the published file) in {folder!r}, "
            "and download=False; put the files there or allow the download")
    try:
        os.makedirs(folder, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=folder)
        probe.close()
    except OSError as exc:
        raise PermissionError(
            f"cannot write the data folder {folder!r} to download {name} into ({exc.strerror or exc}); "
            "name a writable folder with path=... or the FASTMLP_DATA environment variable") from None
    failures, unreachable = [], {}
    for file in missing:
        size, sha256 = files[file]
        try:
            _download(name, [(m, m + file) for m in mirrors], os.path.join(folder, file), size,
                      sha256, unreachable)
        except _Failed as exc:
            failures.append(str(exc))
    if failures:
        raise OSError("\n".join(failures))
    return folder


class _Failed(Exception):
    """One file that no mirror delivered: its one line of the error fetch raises."""


def _reason(exc):
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(getattr(reason, "strerror", None) or reason).split()) or type(exc).__name__


def _download(name, urls, target, size, sha256, unreachable):
    """Download one file from the first mirror that delivers it whole and correct; raise
    _Failed, one line naming the file, each URL tried and what went wrong there, and the
    folder to put the file in by hand. A mirror that cannot be reached at all (no network,
    no such host, connection refused) is not retried, nor tried again for the next files
    (`unreachable`: mirror -> why); server errors and broken transfers are."""
    part = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.part")
    tried = []
    try:
        for mirror, url in urls:
            if mirror in unreachable:
                tried.append(f"{url} ({unreachable[mirror]}, not tried again)")
                continue
            problems = []
            for attempt in range(RETRIES):
                try:
                    _get(url, part, size)
                except urllib.error.HTTPError as exc:
                    problems.append(f"HTTP {exc.code} {exc.reason}")
                    if exc.code < 500:  # not there: the next mirror
                        break
                except urllib.error.URLError as exc:  # no connection at all: the next mirror
                    unreachable[mirror] = _reason(exc)
                    problems.append(unreachable[mirror])
                    break
                except (OSError, http.client.HTTPException) as exc:
                    # a broken connection, a body shorter than announced: retried (resumed)
                    problems.append(_reason(exc))
                else:
                    got = os.path.getsize(part)
                    if got == size and _sha256(part) == sha256:
                        os.replace(part, target)
                        return
                    problems.append(f"the download is corrupted ({got} bytes, SHA-256 "
                                    f"{_sha256(part)[:16]}...; expected {size} bytes, "
                                    f"{sha256[:16]}...)")
                    os.remove(part)  # corrupted: the next try starts from scratch
                if attempt + 1 < RETRIES:
                    time.sleep(0.2 * (attempt + 1))
            tried.append(f"{url} ({_summary(problems)})")
    finally:
        if os.path.exists(part):
            os.remove(part)
    raise _Failed(
        f"could not download {name}'s {os.path.basename(target)} from " + "; ".join(tried)
        + f". Without a network, put the file into {os.path.dirname(target)!r} by hand (or "
        "name its folder with path=...)")


def _summary(problems):
    """'HTTP 500 Internal Server Error, 3 tries': each distinct problem once, in order."""
    distinct = list(dict.fromkeys(problems))
    tries = f", {len(problems)} tries" if len(problems) > 1 else ""
    return " then ".join(distinct) + tries


def _get(url, part, size):
    """Append url's bytes to `part` (resuming from its length with a Range request)."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if have >= size:  # a whole or overlong leftover is checked, not extended
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        if have and response.status != 206:  # the server ignored the Range: start again
            have = 0
        with open(part, "ab" if have else "wb") as out:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
    if os.path.getsize(part) < size:  # the connection ended early: the next try resumes
        raise OSError(f"the connection closed after {os.path.getsize(part)} of {size} bytes")
