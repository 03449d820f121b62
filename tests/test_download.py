"""load_mnist / load_fashion_mnist / load_cifar10 downloading into a cache, against a local
HTTP server on 127.0.0.1 that serves small fixture files and can misbehave on purpose."""

import gzip
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading

import numpy as np
import pytest

from fastmlp import _download, datasets


def _idx_images(n, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return pixels, gzip.compress(b"\x00\x00\x08\x03" + np.array([n, 28, 28], ">i4").tobytes() + pixels.tobytes())


def _idx_labels(n, seed):
    labels = np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8)
    return labels, gzip.compress(b"\x00\x00\x08\x01" + np.array([n], ">i4").tobytes() + labels.tobytes())


@pytest.fixture
def files():
    """The four MNIST-named fixture files: name -> bytes, and the arrays they hold."""
    train_x, train_xb = _idx_images(6, 0)
    train_y, train_yb = _idx_labels(6, 1)
    test_x, test_xb = _idx_images(3, 2)
    test_y, test_yb = _idx_labels(3, 3)
    return ({"train-images-idx3-ubyte.gz": train_xb, "train-labels-idx1-ubyte.gz": train_yb,
             "t10k-images-idx3-ubyte.gz": test_xb, "t10k-labels-idx1-ubyte.gz": test_yb},
            (train_x, train_y, test_x, test_y))


class _Server:
    """A local HTTP server: `content[path] = bytes`; `modes[path]` = a list of behaviours
    taken one per request (the last one repeats): "ok", "corrupt", "truncate", "500", "404"."""

    def __init__(self):
        self.content, self.modes, self.requests = {}, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                modes = server.modes.get(self.path, ["ok"])
                mode = modes.pop(0) if len(modes) > 1 else modes[0]
                data = server.content.get(self.path)
                if data is None or mode == "404":
                    self.send_error(404)
                    return
                if mode == "500":
                    self.send_error(500)
                    return
                if mode == "corrupt":
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncate":  # half the body, then the connection drops
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.stop()


@pytest.fixture
def mnist_source(monkeypatch, server, files):
    """MNIST's sources pointed at the local server: mirrors /a/ then /b/."""
    content, _ = files
    for name, data in content.items():
        server.content[f"/a/{name}"] = data
        server.content[f"/b/{name}"] = data
    table = {name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in content.items()}
    monkeypatch.setitem(_download.SOURCES, "mnist", ([server.url + "/a/", server.url + "/b/"], table))
    monkeypatch.setattr(_download, "RETRIES", 2)
    return server


def _left_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_downloads_once_then_works_offline(tmp_path, monkeypatch, mnist_source, files):
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    X, y, X_test, y_test = datasets.load_mnist()
    train_x, train_y, test_x, test_y = files[1]
    assert X.shape == (6, 784) and X.dtype == np.float32
    assert np.array_equal(X, train_x.reshape(6, -1) * np.float32(1 / 255))
    assert np.array_equal(y, train_y) and np.array_equal(y_test, test_y) and X_test.shape == (3, 784)
    assert _left_in(tmp_path / "mnist") == sorted(files[0])  # no .part files
    assert len(mnist_source.requests) == 4
    mnist_source.stop()  # offline from now on
    again = datasets.load_mnist()
    assert all(np.array_equal(a, b) for a, b in zip(again, (X, y, X_test, y_test)))


def test_a_named_folder_is_the_cache_and_the_default_is_under_home(tmp_path, monkeypatch, mnist_source):
    datasets.load_mnist(path=tmp_path / "mine", download=True)
    assert len(_left_in(tmp_path / "mine")) == 4
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _download.data_folder("mnist") == str(tmp_path / "home" / ".cache" / "fastmlp" / "mnist")


def test_a_users_folder_of_raw_files_needs_no_network(tmp_path, files):
    for name, data in files[0].items():
        (tmp_path / name[:-3]).write_bytes(gzip.decompress(data))  # uncompressed copies
    X, y, _, _ = datasets.load_mnist(path=tmp_path, download=False)
    assert np.array_equal(y, files[1][1]) and X.shape == (6, 784)


def test_a_corrupted_download_is_an_error_and_leaves_nothing(tmp_path, mnist_source):
    for mirror in ("a", "b"):
        mnist_source.modes[f"/{mirror}/train-labels-idx1-ubyte.gz"] = ["corrupt"]
    with pytest.raises(OSError, match="corrupted") as info:
        datasets.load_mnist(path=tmp_path, download=True)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)
    assert not any(f.startswith(".") or f == "train-labels-idx1-ubyte.gz" for f in _left_in(tmp_path))


def test_a_broken_connection_resumes_with_a_range_request(tmp_path, mnist_source):
    mnist_source.modes["/a/train-images-idx3-ubyte.gz"] = ["truncate", "ok"]
    datasets.load_mnist(path=tmp_path, download=True)
    ranges = [r for path, r in mnist_source.requests if path == "/a/train-images-idx3-ubyte.gz"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert len(_left_in(tmp_path)) == 4


def test_a_connection_that_always_breaks_is_an_error_and_leaves_nothing(tmp_path, mnist_source):
    for mirror in ("a", "b"):
        mnist_source.modes[f"/{mirror}/t10k-images-idx3-ubyte.gz"] = ["truncate", "500"]
    with pytest.raises(OSError, match="t10k-images-idx3-ubyte.gz") as info:
        datasets.load_mnist(path=tmp_path, download=True)
    assert "HTTP 500" in str(info.value) and "put the file into" in str(info.value)
    assert not any(f.startswith(".") or f.startswith("t10k-images") for f in _left_in(tmp_path))


def test_server_errors_are_retried_and_a_missing_mirror_is_skipped(tmp_path, mnist_source):
    mnist_source.modes["/a/train-labels-idx1-ubyte.gz"] = ["500", "ok"]  # retried on /a/
    mnist_source.modes["/a/t10k-labels-idx1-ubyte.gz"] = ["404"]  # taken from /b/
    datasets.load_mnist(path=tmp_path, download=True)
    paths = [p for p, _ in mnist_source.requests]
    assert paths.count("/a/train-labels-idx1-ubyte.gz") == 2
    assert "/b/t10k-labels-idx1-ubyte.gz" in paths


def test_no_network_is_a_clear_error(tmp_path, monkeypatch, files):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    table = {name: (len(d), hashlib.sha256(d).hexdigest()) for name, d in files[0].items()}
    monkeypatch.setitem(_download.SOURCES, "mnist", ([f"http://127.0.0.1:{port}/"], table))
    monkeypatch.setattr(_download, "RETRIES", 1)
    with pytest.raises(OSError, match="(?s)could not download mnist.s .*Connection refused.*Without a network, put the file"):
        datasets.load_mnist(path=tmp_path, download=True)
    assert _left_in(tmp_path) == []


def test_download_false_and_unwritable_folders(tmp_path, mnist_source):
    with pytest.raises(FileNotFoundError, match="download=False"):
        datasets.load_mnist(path=tmp_path / "empty", download=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write the data folder"):
        datasets.load_mnist(path=blocker / "sub", download=True)
    with pytest.raises(TypeError, match="path must be a folder path"):
        _download.data_folder("mnist", 42)
    assert mnist_source.requests == []


def test_cifar10_is_downloaded_as_its_archive_and_read_without_extracting(tmp_path, monkeypatch, server):
    rng = np.random.default_rng(0)
    records = {name: np.concatenate([rng.integers(0, 10, (2, 1)), rng.integers(0, 256, (2, 3072))],
                                    axis=1).astype(np.uint8)
               for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, rec in records.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = rec.nbytes
            tar.addfile(info, io.BytesIO(rec.tobytes()))
    archive = buf.getvalue()
    server.content["/c/cifar-10-binary.tar.gz"] = archive
    monkeypatch.setitem(_download.SOURCES, "cifar10", (
        [server.url + "/c/"], {"cifar-10-binary.tar.gz": (len(archive), hashlib.sha256(archive).hexdigest())}))
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    X, y, X_test, y_test = datasets.load_cifar10()
    assert X.shape == (10, 3072) and X_test.shape == (2, 3072)
    assert np.array_equal(y_test, records["test_batch.bin"][:, 0])
    assert _left_in(tmp_path / "cifar10") == ["cifar-10-binary.tar.gz"]


# ---------------------------------------------------------------------------------------
# a path of one's own is read, never created, unless download=True


@pytest.mark.parametrize("loader", ["load_mnist", "load_fashion_mnist", "load_cifar10"])
def test_a_path_that_does_not_exist_is_an_error_naming_path(tmp_path, mnist_source, loader):
    typo = tmp_path / "mnsit"
    for download in (None, False):
        with pytest.raises(FileNotFoundError, match="path .*mnsit' does not exist") as info:
            getattr(datasets, loader)(path=typo, download=download)
        assert "download=True" in str(info.value)
        assert ("download=False" in str(info.value)) == (download is False)
    assert not typo.exists() and mnist_source.requests == []
    with pytest.raises(TypeError, match="download must be None, True or False; got 'yes'"):
        getattr(datasets, loader)(path=typo, download="yes")


def test_an_existing_folder_without_the_files_is_read_only_unless_download_true(
        tmp_path, mnist_source):
    with pytest.raises(FileNotFoundError, match="pass download=True to download them into it"):
        datasets.load_mnist(path=tmp_path)
    assert _left_in(tmp_path) == [] and mnist_source.requests == []
    datasets.load_mnist(path=tmp_path, download=True)
    assert len(_left_in(tmp_path)) == 4
    mnist_source.stop()
    X, *_ = datasets.load_mnist(path=tmp_path)  # complete now: read as it is
    assert X.shape == (6, 784)


def test_the_cache_folder_is_downloaded_into_by_default(tmp_path, monkeypatch, mnist_source):
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    datasets.load_mnist()  # download=None: the cache folder is fetched into
    assert len(_left_in(tmp_path / "mnist")) == 4


def test_cifar10_downloads_into_a_new_path_only_with_download_true(tmp_path, server):
    archive = b"not read here"
    server.content["/c/cifar-10-binary.tar.gz"] = archive
    table = {"cifar-10-binary.tar.gz": (len(archive), hashlib.sha256(archive).hexdigest())}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(_download.SOURCES, "cifar10", ([server.url + "/c/"], table))
        with pytest.raises(FileNotFoundError, match="does not exist"):
            datasets.load_cifar10(tmp_path / "new")
        assert server.requests == []
        with pytest.raises(ValueError, match="tar"):  # downloaded, then read: not a tarball
            datasets.load_cifar10(tmp_path / "new", download=True)
    assert _left_in(tmp_path / "new") == ["cifar-10-binary.tar.gz"]
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------
# offline: one line per file


def _closed_port():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_each_file_fails_on_one_line_and_nothing_is_retried(tmp_path, monkeypatch,
                                                                    files):
    mirrors = [f"http://127.0.0.1:{_closed_port()}/a/", f"http://127.0.0.1:{_closed_port()}/b/"]
    table = {name: (len(d), hashlib.sha256(d).hexdigest()) for name, d in files[0].items()}
    monkeypatch.setitem(_download.SOURCES, "mnist", (mirrors, table))
    monkeypatch.setattr(_download, "RETRIES", 3)
    pauses = []
    monkeypatch.setattr(_download.time, "sleep", pauses.append)
    with pytest.raises(OSError) as info:
        datasets.load_mnist(path=tmp_path, download=True)
    lines = str(info.value).splitlines()
    assert len(lines) == 4, str(info.value)
    for line, name in zip(lines, table):
        assert line.startswith(f"could not download mnist's {name} from ")
        assert all(m + name in line for m in mirrors)
        assert f"put the file into {str(tmp_path)!r} by hand" in line
        assert line.count("Connection refused") == 2  # once per URL, not once per try
    assert "not tried again" not in lines[0] and "not tried again" in lines[1]
    assert pauses == [] and _left_in(tmp_path) == []  # no retry, no pause, nothing left


def test_an_unreachable_mirror_is_skipped_for_the_next_files(tmp_path, monkeypatch, server,
                                                             files):
    content, _ = files
    for name, data in content.items():
        if name != "t10k-labels-idx1-ubyte.gz":
            server.content[f"/b/{name}"] = data
    dead = f"http://127.0.0.1:{_closed_port()}/"
    table = {name: (len(d), hashlib.sha256(d).hexdigest()) for name, d in content.items()}
    monkeypatch.setitem(_download.SOURCES, "mnist", ([dead, server.url + "/b/"], table))
    with pytest.raises(OSError) as info:
        datasets.load_mnist(path=tmp_path, download=True)
    [line] = str(info.value).splitlines()  # the one file no mirror has
    name = "t10k-labels-idx1-ubyte.gz"
    assert line.startswith(f"could not download mnist's {name} from "
                           f"{dead}{name} (Connection refused, not tried again)")
    assert "HTTP 404" in line and "by hand" in line
    assert len(_left_in(tmp_path)) == 3  # the files that came stay: a rerun fetches one
