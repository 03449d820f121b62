"""Hostile data files (issue 32): no input file makes the process allocate or decompress what
it declares before the declared sizes are checked. Each forged file is made here; each reader
runs in a fresh process under an address-space limit (tests/_shared_memory.py) and must raise
a ValueError naming the file (and the member or line) while its peak memory stays under
200 MB above its baseline. The command line gets the same files in a subprocess: one line on
stderr, a non-zero exit status, no traceback."""

import gzip
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from _shared_memory import assert_refused, run_bounded

SETUP = "import numpy as np\nfrom fastmlp import datasets\n"


def _idx_header(shape, type_byte=0x08):
    return bytes([0, 0, type_byte, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape)


def _refused(action, error, *names):
    result = run_bounded(SETUP, action)
    assert_refused(result, error, *names)
    return result["message"]


def _cli(*args, cwd=None):
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def _one_line(result, status=2):
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp"), result.stderr
    assert "error: " in lines[0], result.stderr
    return lines[0]


#: main(argv) in the bounded child: its status and stderr come back as the SystemExit message
_CLI_ACTION = """
import contextlib, io
from fastmlp.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    status = main({argv!r})
raise SystemExit(f"{{status}}|{{err.getvalue()}}")
"""


# ---------------------------------------------------------------------------------------
# IDX


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory):
    """A 1 MB gzip IDX file: an honest header and its 10 images, then 1 GiB of zeros (as 64
    gzip members of 16 MiB each, which gunzip reads as one stream)."""
    folder = tmp_path_factory.mktemp("bomb")
    images = np.arange(10 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(10, 28, 28)
    zeros = gzip.compress(bytes(16 << 20), compresslevel=9)
    path = folder / "train-images-idx3-ubyte.gz"
    with open(path, "wb") as f:
        f.write(gzip.compress(_idx_header(images.shape) + images.tobytes()))
        for _ in range(64):
            f.write(zeros)
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(_idx_header((10,)) + bytes(range(10))))
    assert path.stat().st_size < 2 << 20
    return path, labels


def test_idx_gzip_with_a_gigabyte_past_its_data_is_refused(gzip_bomb):
    images, labels = gzip_bomb
    _refused(f"datasets.read_idx({str(images)!r})", "ValueError", repr(str(images)),
             "(10, 28, 28)", "7840 bytes", "past the declared size")
    _refused(f"datasets.load_idx({str(images)!r}, {str(labels)!r})", "ValueError",
             repr(str(images)), "past the declared size")


def test_idx_header_lying_about_its_dims_is_refused(tmp_path):
    huge = (60000, 1 << 20, 1 << 20)
    raw = tmp_path / "raw-images-idx3-ubyte"
    raw.write_bytes(_idx_header(huge) + bytes(1000))
    _refused(f"datasets.read_idx({str(raw)!r})", "ValueError", repr(str(raw)), str(huge),
             "holds 1000 bytes of data")
    gz = tmp_path / "gz-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(_idx_header(huge, 0x0E) + bytes(1000)))
    _refused(f"datasets.read_idx({str(gz)!r})", "ValueError", repr(str(gz)), str(huge),
             "gzip-compressed bytes can hold")


def test_truncated_idx_is_refused(tmp_path):
    shape = (60000, 28, 28)  # 47 MB declared, 1 MB present
    body = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    raw = tmp_path / "cut-images-idx3-ubyte"
    raw.write_bytes(_idx_header(shape) + body)
    _refused(f"datasets.read_idx({str(raw)!r})", "ValueError", repr(str(raw)), "truncated",
             str(shape), f"holds {1 << 20} bytes")
    gz = tmp_path / "cut-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(_idx_header(shape) + body))  # a whole gzip, short data
    _refused(f"datasets.read_idx({str(gz)!r})", "ValueError", repr(str(gz)), "truncated",
             str(shape), f"holds {1 << 20} bytes")
    cut = tmp_path / "cut-stream-idx3-ubyte.gz"
    cut.write_bytes(gzip.compress(_idx_header(shape) + bytes(47040000))[:-100])
    _refused(f"datasets.read_idx({str(cut)!r})", "ValueError", repr(str(cut)),
             "damaged or truncated")


# ---------------------------------------------------------------------------------------
# npz


def _npy_header(shape, dtype="<f4"):
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return out.getvalue()


def test_npz_declaring_a_huge_x_is_refused(tmp_path):
    shape = (10 ** 7, 10 ** 6)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"huge-{compression}.npz"
        with zipfile.ZipFile(path, "w", compression) as z:
            z.writestr("X.npy", _npy_header(shape) + bytes(64))
            z.writestr("y.npy", _npy_header((10 ** 7,), "<i8") + bytes(64))
        _refused(f"datasets.load_npz({str(path)!r})", "ValueError", repr(str(path)),
                 "'X.npy'", str(shape), "bytes of data for it")


def test_npz_member_declaring_more_than_deflate_can_hold_is_refused(tmp_path):
    path = tmp_path / "ratio.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", _npy_header((3, 2)) + bytes(24))
        z.writestr("y.npy", _npy_header((3,), "<i8") + bytes(24))
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # X.npy's central directory entry
    data[central + 24: central + 28] = struct.pack("<I", 0xFFFFFFF0)  # its uncompressed size
    path.write_bytes(bytes(data))
    _refused(f"datasets.load_npz({str(path)!r})", "ValueError", repr(str(path)), "'X.npy'",
             "declares 4294967280 bytes", "compressed bytes can hold")


def test_npz_with_object_arrays_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([[{"a": 1}]] * 3, dtype=object), y=np.zeros(3))
    message = _refused(f"datasets.load_npz({str(path)!r})", "ValueError", repr(str(path)),
                       "'X.npy'", "object")
    assert "allow_pickle" not in message


def test_text_file_named_npz_is_not_a_zip(tmp_path):
    path = tmp_path / "labels.npz"
    path.write_text("f1,f2,label\n1,2,0\n3,4,1\n")
    for call in ("load_npz", "npz_splits"):
        message = _refused(f"datasets.{call}({str(path)!r})", "ValueError", repr(str(path)),
                           "not a zip archive")
        assert "pickle" not in message, message
    line = _one_line(_cli("train", "--data", path, "--verbose", 0))
    assert repr(str(path)) in line and "not a zip archive" in line and "pickle" not in line


def test_cli_refuses_forged_npz_files_in_one_line(tmp_path):
    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(huge, "w") as z:
        z.writestr("X.npy", _npy_header((10 ** 7, 10 ** 6)) + bytes(64))
        z.writestr("y.npy", _npy_header((10 ** 7,), "<i8") + bytes(64))
    line = _one_line(_cli("train", "--data", huge, "--verbose", 0))
    assert repr(str(huge)) in line and "'X.npy'" in line
    labels = tmp_path / "labels.npz"
    np.savez(labels, X=np.zeros((4, 2)), y=np.array([0, 1, 999999999999, 1]))
    line = _one_line(_cli("train", "--data", labels, "--verbose", 0))
    for words in (repr(str(labels)), "training labels", "999999999999", "sample 2", "--classes"):
        assert words in line, (words, line)


# ---------------------------------------------------------------------------------------
# CSV labels and the command line


@pytest.fixture
def stray_label_csv(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("f1,f2,label\n1,2,0\n3,4,1\n\n5,6,999999999999\n7,8,1\n")
    return path


def test_load_csv_refuses_a_label_past_the_class_count(stray_label_csv):
    path = repr(str(stray_label_csv))
    for classes in ("'auto'", "10"):
        _refused(f"datasets.load_csv({path}, classes={classes})", "ValueError", path,
                 "line 5", "column 3 ('label')", "the label 999999999999", "out of range")
    _refused(f"datasets.load_csv({path}, classes=10)", "ValueError", "0..9")
    _refused(f"datasets.load_csv({path}, classes=0)", "ValueError", "classes", "0")
    # classes=None (the default) keeps any whole numbers, as documented
    result = run_bounded(SETUP, f"assert datasets.load_csv({path})[1][2] == 999999999999")
    assert result["error"] is None, result


def test_cli_train_refuses_a_stray_label_in_one_line(stray_label_csv, tmp_path):
    path = str(stray_label_csv)
    line = _one_line(_cli("train", "--data", path, "--verbose", 0))
    for words in (repr(path), "line 5", "'label'", "999999999999", "--classes"):
        assert words in line, (words, line)
    line = _one_line(_cli("train", "--data", path, "--classes", 10, "--verbose", 0))
    assert "999999999999" in line and "0..9" in line
    assert "--classes" in _one_line(_cli("train", "--data", path, "--classes", 1))
    # the same in-process, under the address-space limit: no 469 TiB output layer is tried
    argv = ["train", "--data", path, "--verbose", "0"]
    result = run_bounded(SETUP + "import fastmlp.cli\n", _CLI_ACTION.format(argv=argv))
    assert_refused(result, "SystemExit", "2|fastmlp: error:", repr(path), "999999999999")


def test_cli_running_out_of_memory_prints_one_line(tmp_path):
    """A layer the machine could hold but this process may not (the address-space limit):
    NumPy's MemoryError becomes one line naming what was being done, status 1."""
    path = tmp_path / "ok.csv"
    path.write_text("f1,f2,label\n1,2,0\n3,4,1\n5,6,1\n")
    argv = ["train", "--data", str(path), "--hidden", str(1 << 26), "--verbose", "0"]
    result = run_bounded(SETUP + "import fastmlp.cli\n", _CLI_ACTION.format(argv=argv))
    assert_refused(result, "SystemExit", "1|fastmlp: error: out of memory while building the "
                   f"model [2, {1 << 26}, 2]")
    err = result["message"].split("|", 1)[1]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
