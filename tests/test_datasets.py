"""Data readers (fastmlp/datasets.py): IDX, CIFAR-10, CSV and .npz files built here in each
format, their error messages, and the real MNIST / Fashion-MNIST when they are at hand."""

import gzip
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fastmlp import _download, datasets

#: the data sets beside the checkout (../shared/datasets), where $FASTMLP_DATA lacks them
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _real_data(name, shared=SHARED):
    """The folder holding the real `name` files: $FASTMLP_DATA/<name> (the library's own
    variable) when it holds them all, else <shared>/<name> (../shared/datasets beside the
    checkout); else the test skips, saying where to put them."""
    folder = _download.local_copy(name, shared / name)
    if folder is None:
        files = ", ".join(_download.SOURCES[name][1])
        pytest.skip(f"the real {name} files ({files}) are not in $FASTMLP_DATA/{name} nor in "
                    f"{shared / name}: put them in either to run this test")
    return Path(folder)


# ---------------------------------------------------------------------------------------
# the bundled digits


def test_load_digits_whole_set_by_default_and_load_mnists_four_arrays_on_request():
    X, y = datasets.load_digits()  # the whole set, as scikit-learn's load_digits
    assert X.shape == (1797, 64) and y.shape == (1797,)
    parts = datasets.load_digits(test_size=0.2)
    assert len(parts) == 4  # load_mnist's order: X_train, y_train, X_test, y_test
    X_train, y_train, X_test, y_test = parts
    assert X_train.shape == (1438, 64) and X_test.shape == (359, 64)  # the demo's split
    assert y_train.shape == (1438,) and y_test.shape == (359,)
    assert X_train.dtype == X_test.dtype == np.float32 and y_train.dtype == np.int64
    assert X_train.flags.c_contiguous and X_test.flags.c_contiguous
    order = np.random.default_rng(0).permutation(1797)  # the demo's shuffle (--seed 0)
    np.testing.assert_array_equal(X_test, X[order[:359]])
    np.testing.assert_array_equal(y_train, y[order[359:]])
    # every sample once, in one part or the other
    both = np.concatenate([X_train, X_test])
    assert np.unique(both, axis=0).shape == np.unique(X, axis=0).shape
    assert sorted(np.concatenate([y_train, y_test])) == sorted(y)
    _, _, X5, _ = datasets.load_digits(test_size=5, seed=3, scale=False)
    assert X5.shape == (5, 64) and X5.max() == 16
    assert not np.array_equal(datasets.load_digits(test_size=0.2, seed=1)[2], X_test)


def test_load_digits_bad_test_size_and_seed():
    for bad, error, words in [(0.0, ValueError, "fraction in \\(0, 1\\)"),
                              (1.5, ValueError, "got 1.5"),
                              (0, ValueError, "1..1796"), (1797, ValueError, "got 1797"),
                              (0.0001, ValueError, "leaves 0 of the 1797"),
                              ("0.2", TypeError, "test_size must be None"),
                              (True, TypeError, "got True")]:
        with pytest.raises(error, match=words):
            datasets.load_digits(test_size=bad)
    with pytest.raises(ValueError, match="seed must be an integer >= 0; got -1"):
        datasets.load_digits(test_size=0.2, seed=-1)


# ---------------------------------------------------------------------------------------
# IDX


def _idx_bytes(arr, type_byte=0x08):
    arr = np.asarray(arr)
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_byte]
    header = bytes([0, 0, type_byte, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return header + arr.astype(dtype).tobytes()


def _write(path, data, gz=False):
    path = Path(path)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _mnist_like(n=7, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 3), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 255, 0
    labels = rng.integers(0, 10, n).astype(np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_idx(tmp_path, gz):
    images, labels = _mnist_like()
    ip = _write(tmp_path / "img", _idx_bytes(images), gz)
    lp = _write(tmp_path / "lab", _idx_bytes(labels), gz)
    X, y = datasets.load_idx(ip, lp)
    assert X.shape == (7, 12) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (7,)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(X, images.reshape(7, -1) / 255, rtol=1e-6)
    assert X[0, 0] == 1.0 and X[0, 1] == 0.0 and X.min() >= 0 and X.max() <= 1
    raw, _ = datasets.load_idx(str(ip), str(lp), scale=False)
    np.testing.assert_array_equal(raw, images.reshape(7, -1))


def test_load_idx_other_types_are_not_scaled(tmp_path):
    images = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 1.5
    ip = _write(tmp_path / "img", _idx_bytes(images, 0x0D))
    lp = _write(tmp_path / "lab", _idx_bytes(np.array([3, 1]), 0x0C))
    X, y = datasets.load_idx(ip, lp)
    np.testing.assert_array_equal(X, images.reshape(2, -1))
    np.testing.assert_array_equal(y, [3, 1])


def test_idx_errors(tmp_path):
    images, labels = _mnist_like()
    good_i = _write(tmp_path / "i", _idx_bytes(images))
    good_l = _write(tmp_path / "l", _idx_bytes(labels))
    cases = {
        "bad magic": (b"\x12\x34\x08\x03" + _idx_bytes(images)[4:], good_l, "magic"),
        "unknown type": (b"\x00\x00\x07\x03" + _idx_bytes(images)[4:], good_l, "magic"),
        "too short": (b"\x00\x00", good_l, "IDX"),
        "header cut": (_idx_bytes(images)[:9], good_l, "header truncated"),
        "data cut": (_idx_bytes(images)[:-5], good_l, "truncated"),
        "data extra": (_idx_bytes(images) + b"xx", good_l, "holds"),
        "count mismatch": (_idx_bytes(images[:5]), good_l, "5 images"),
        "labels 2-D": (None, _idx_bytes(images), "1-dimensional"),
        "images 1-D": (_idx_bytes(labels), good_l, "dimensions"),
        "float labels": (None, _idx_bytes(labels.astype(np.float32), 0x0D), "integers"),
    }
    for name, (img, lab, words) in cases.items():
        ip = good_i if img is None else _write(tmp_path / f"{name}-i", img)
        lp = good_l if isinstance(lab, Path) else _write(tmp_path / f"{name}-l", lab)
        with pytest.raises(ValueError, match=words):
            datasets.load_idx(ip, lp)
    damaged = gzip.compress(_idx_bytes(images))[:-12]
    with pytest.raises(ValueError, match="gzip"):
        datasets.load_idx(_write(tmp_path / "d.gz", damaged), good_l)
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(tmp_path / "missing", good_l)


def _mnist_folder(folder, gz=True, sep="-", n_train=12, n_test=5):
    folder.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = _mnist_like(n, seed)
        _write(folder / f"{prefix}-images{sep}idx3-ubyte{ext}", _idx_bytes(images), gz)
        _write(folder / f"{prefix}-labels{sep}idx1-ubyte{ext}", _idx_bytes(labels), gz)
    return folder


@pytest.mark.parametrize("gz,sep", [(True, "-"), (False, "-"), (False, ".")])
def test_idx_folder(tmp_path, gz, sep):
    folder = _mnist_folder(tmp_path / "mnist", gz, sep)
    X, y = datasets.load_idx_folder(folder)
    Xt, yt = datasets.load_idx_folder(folder, "test")
    assert X.shape == (12, 12) and Xt.shape == (5, 12)
    images, labels = _mnist_like(5, 1)
    np.testing.assert_array_equal(yt, labels)
    # an images file: its labels file is found beside it
    images_file = datasets.find_idx_files(folder, "test")[0]
    assert datasets.find_idx_files(images_file) == datasets.find_idx_files(folder, "test")
    with pytest.raises(ValueError, match="split"):
        datasets.find_idx_files(folder, "validation")


def test_idx_folder_missing_files(tmp_path):
    folder = _mnist_folder(tmp_path / "m")
    os.remove(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="test labels"):
        datasets.find_idx_files(folder, "test")
    with pytest.raises(FileNotFoundError, match="labels file"):
        datasets.find_idx_files(folder / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="images"):
        datasets.find_idx_files(folder / "train-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError):
        datasets.find_idx_files(tmp_path / "nowhere")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_mnist_files(name):
    folder = _real_data(name)
    X, y = datasets.load_idx_folder(folder)
    Xt, yt = datasets.load_idx_folder(folder, "test")
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert X.min() == 0 and X.max() == 1
    assert set(np.unique(y)) == set(range(10)) == set(np.unique(yt))
    # balanced-ish classes, as the real sets are
    assert np.bincount(y).min() > 5000
    first = X[0].reshape(28, 28)
    assert first[:3].sum() == 0 or name == "fashion-mnist"  # MNIST digits have blank borders


def test_the_real_data_is_looked_up_in_fastmlp_data_first(tmp_path, monkeypatch):
    mine = tmp_path / "mnist"
    mine.mkdir()
    for name in _download.SOURCES["mnist"][1]:
        (mine / name).write_bytes(b"")
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    assert _real_data("mnist") == mine
    (mine / "t10k-labels-idx1-ubyte.gz").unlink()  # incomplete: the next place
    other = tmp_path / "shared"
    (other / "mnist").mkdir(parents=True)
    for name in _download.SOURCES["mnist"][1]:
        (other / "mnist" / name).write_bytes(b"")
    assert _real_data("mnist", other) == other / "mnist"
    monkeypatch.delenv("FASTMLP_DATA")
    with pytest.raises(pytest.skip.Exception, match=r"not in \$FASTMLP_DATA/mnist nor in "
                                                    r".*nowhere.*put them in either"):
        _real_data("mnist", tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_records(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    pixels[:, 0] = 255  # first red pixel
    pixels[:, 1024] = 0  # first green pixel
    return labels, pixels, np.concatenate([labels[:, None], pixels], axis=1).tobytes()


def _cifar_folder(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for i, name in enumerate([f"data_batch_{b}.bin" for b in range(1, 6)] + ["test_batch.bin"]):
        labels, pixels, data = _cifar_records(n, i)
        (folder / name).write_bytes(data)
        expected[name] = (labels, pixels)
    return expected


def test_load_cifar10(tmp_path):
    expected = _cifar_folder(tmp_path / "cifar")
    X, y, Xt, yt = datasets.load_cifar10(tmp_path / "cifar")
    assert X.shape == (15, 3072) and Xt.shape == (3, 3072)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    train_labels = np.concatenate([expected[f"data_batch_{b}.bin"][0] for b in range(1, 6)])
    np.testing.assert_array_equal(y, train_labels)
    np.testing.assert_array_equal(yt, expected["test_batch.bin"][0])
    np.testing.assert_allclose(Xt * 255, expected["test_batch.bin"][1], atol=1e-4)
    assert (X[:, 0] == 1).all() and (X[:, 1024] == 0).all()  # channel-first order kept
    X1, y1, _, _ = datasets.load_cifar10(tmp_path / "cifar", train_batches=[2])
    np.testing.assert_array_equal(y1, expected["data_batch_2.bin"][0])
    raw, _, _, _ = datasets.load_cifar10(tmp_path / "cifar", scale=False)
    assert raw.max() == 255


def test_load_cifar10_from_parent_folder_and_tarball(tmp_path):
    _cifar_folder(tmp_path / "dl" / "cifar-10-batches-bin")
    a = datasets.load_cifar10(tmp_path / "dl")
    tar_path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(tmp_path / "dl" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    b = datasets.load_cifar10(tar_path)
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x, z)
    own_cache = tmp_path / "cache"  # a folder holding the archive, as the cache does
    own_cache.mkdir()
    tar_path.rename(own_cache / tar_path.name)
    for x, z in zip(a, datasets.load_cifar10(own_cache)):
        np.testing.assert_array_equal(x, z)


def test_cifar10_errors(tmp_path):
    _cifar_folder(tmp_path / "c")
    os.remove(tmp_path / "c" / "test_batch.bin")
    with pytest.raises(FileNotFoundError, match="test_batch.bin"):
        datasets.load_cifar10(tmp_path / "c")
    _cifar_folder(tmp_path / "t")
    data = (tmp_path / "t" / "data_batch_3.bin").read_bytes()
    (tmp_path / "t" / "data_batch_3.bin").write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*truncated"):
        datasets.load_cifar10(tmp_path / "t")
    _cifar_folder(tmp_path / "l")
    data = bytearray((tmp_path / "l" / "test_batch.bin").read_bytes())
    data[3073] = 10  # second record's label
    (tmp_path / "l" / "test_batch.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="record 1 has the label 10"):
        datasets.load_cifar10(tmp_path / "l")
    (tmp_path / "not.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="tar"):
        datasets.load_cifar10(tmp_path / "not.tar.gz")
    with pytest.raises(FileNotFoundError):
        datasets.load_cifar10(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------
# CSV


def _csv(tmp_path, text, name="d.csv", gz=False):
    data = text.encode()
    return _write(tmp_path / name, gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [False, True])
def test_load_csv_with_header(tmp_path, gz):
    path = _csv(tmp_path, "f1,f2,label\n5,2.5,1\n\n-1,3e2,0\n", "d.csv.gz" if gz else "d.csv", gz)
    X, y = datasets.load_csv(path)
    np.testing.assert_array_equal(X, np.array([[5, 2.5], [-1, 300]], np.float32))
    np.testing.assert_array_equal(y, [1, 0])
    assert X.dtype == np.float32 and y.dtype == np.int64
    X2, y2 = datasets.load_csv(path, label_column="f1", header=True)
    np.testing.assert_array_equal(X2, [[2.5, 1], [300, 0]])
    np.testing.assert_array_equal(y2, [5, -1])  # labels may be any whole numbers


def test_load_csv_without_header_and_options(tmp_path):
    path = _csv(tmp_path, "3,10,20\n1,255,0\n")
    X, y = datasets.load_csv(path, label_column=0, scale=255)
    np.testing.assert_allclose(X, [[10 / 255, 20 / 255], [1, 0]])
    np.testing.assert_array_equal(y, [3, 1])
    X, y = datasets.load_csv(path, label_column=None)
    assert X.shape == (2, 3) and y is None
    semi = _csv(tmp_path, 'a;b\n"1";2\n', "semi.csv")
    X, y = datasets.load_csv(semi, delimiter=";")
    np.testing.assert_array_equal(X, [[1]])
    np.testing.assert_array_equal(y, [2])
    # header=False: a first row of text is then an error, naming the cell
    with pytest.raises(ValueError, match="line 1, column 1: the non-numeric cell 'a'"):
        datasets.load_csv(_csv(tmp_path, "a,b\n1,2\n", "h.csv"), header=False)


def test_csv_errors_name_the_line_and_column(tmp_path):
    cases = {
        "x,y,label\n1,2,0\n3,abc,1\n": r"line 3, column 2 \('y'\): the non-numeric cell 'abc'",
        "1,2,0\n3,,1\n": "line 2, column 2: an empty cell",
        "1,2,0\n3,4\n": "line 2 has 2 cells; expected 3",
        "1,2,0\n3,4,5,6\n": "line 2 has 4 cells",
        "1,2,0\n3,nan,1\n": "line 2, column 2: 'nan' is not a finite number",
        "1,2,0\n3,4,inf\n": "line 2, column 3: 'inf' is not a finite number",
        "1,2,0\n3,4,0.5\n": "line 2, column 3: the label 0.5 is not a whole number",
        "": "empty",
        "\n\n": "empty",
        "a,b,c\n": "no data rows",
        "5\n6\n": "one column",
    }
    for i, (text, words) in enumerate(cases.items()):
        with pytest.raises(ValueError, match=words):
            datasets.load_csv(_csv(tmp_path, text, f"e{i}.csv"))


def test_csv_missing_label_column(tmp_path):
    path = _csv(tmp_path, "a,b\n1,2\n")
    with pytest.raises(ValueError, match="no label column 'target'"):
        datasets.load_csv(path, label_column="target")
    with pytest.raises(ValueError, match="no label column 5"):
        datasets.load_csv(path, label_column=5)
    with pytest.raises(ValueError, match="no label column -3"):
        datasets.load_csv(path, label_column=-3)
    with pytest.raises(ValueError, match="no header"):
        datasets.load_csv(_csv(tmp_path, "1,2\n", "n.csv"), label_column="b")
    with pytest.raises(TypeError):
        datasets.load_csv(path, label_column=1.5)
    with pytest.raises(ValueError, match="header"):
        datasets.load_csv(path, header="yes")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="UTF-8"):
        datasets.load_csv(tmp_path / "bin.csv")
    with pytest.raises(FileNotFoundError):
        datasets.load_csv(tmp_path / "missing.csv")


def test_csv_round_trip_of_a_bigger_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 20)).astype(np.float32)
    y = rng.integers(0, 4, 500)
    path = tmp_path / "big.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.9g",
               header=",".join([f"x{i}" for i in range(20)] + ["y"]), comments="")
    X2, y2 = datasets.load_csv(path)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


# ---------------------------------------------------------------------------------------
# npz


def test_load_npz_key_layouts(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((6, 2, 3))
    y = np.arange(6)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    np.savez(tmp_path / "b.npz", x=X.astype(np.float32), y=y.astype(np.uint8))
    for name in ("a.npz", "b.npz"):
        Xa, ya = datasets.load_npz(tmp_path / name)
        assert Xa.shape == (6, 6) and Xa.dtype == np.float32 and ya.dtype == np.int64
        np.testing.assert_allclose(Xa, X.reshape(6, -1), rtol=1e-6)
        np.testing.assert_array_equal(ya, y)
        assert datasets.npz_splits(tmp_path / name) == {"train"}
    pixels = rng.integers(0, 256, (4, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "k.npz", x_train=pixels, y_train=np.array([1, 2, 3, 4]),
             x_test=pixels[:2], y_test=np.array([[0], [1]]))
    assert datasets.npz_splits(tmp_path / "k.npz") == {"train", "test"}
    Xtr, ytr = datasets.load_npz(tmp_path / "k.npz")
    np.testing.assert_allclose(Xtr, pixels.reshape(4, -1) / 255, rtol=1e-6)  # uint8: pixels
    Xte, yte = datasets.load_npz(tmp_path / "k.npz", split="test")
    assert Xte.shape == (2, 25) and yte.tolist() == [0, 1]
    raw, _ = datasets.load_npz(tmp_path / "k.npz", split="train", scale=False)
    assert raw.max() > 1
    with pytest.raises(ValueError, match="x_test"):
        datasets.load_npz(tmp_path / "a.npz", split="test")
    with pytest.raises(ValueError, match="split"):
        datasets.load_npz(tmp_path / "a.npz", split="val")


def test_npz_errors(tmp_path):
    good_X = np.zeros((3, 2))
    cases = {
        "keys": (dict(features=good_X, labels=np.zeros(3)), "no X/y"),
        "lengths": (dict(X=good_X, y=np.zeros(4)), "3 samples but y has 4"),
        "1-D X": (dict(X=np.zeros(3), y=np.zeros(3)), "n_samples"),
        "2-D y": (dict(X=good_X, y=np.zeros((3, 2))), "1-D"),
        "fractional y": (dict(X=good_X, y=np.array([0, 0.5, 1])), "whole"),
        "nan X": (dict(X=np.full((3, 2), np.nan), y=np.zeros(3)), "NaN"),
        "text X": (dict(X=np.array([["a", "b"]] * 3), y=np.zeros(3)), "numbers"),
        "empty": (dict(X=np.zeros((0, 2)), y=np.zeros(0)), "empty"),
    }
    for name, (arrays, words) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=words):
            datasets.load_npz(path)
    np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))
    with pytest.raises(ValueError, match="pickle|object"):
        datasets.load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(os.urandom(100))
    with pytest.raises(ValueError, match="not a readable .npz"):
        datasets.load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", good_X)
    with pytest.raises(ValueError, match="single array"):
        datasets.load_npz(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError):
        datasets.load_npz(tmp_path / "nope.npz")


def test_loaders_feed_a_model(tmp_path):
    """What the readers return trains a model as it is."""
    import fastmlp

    folder = _mnist_folder(tmp_path / "m", n_train=30)
    X, y = datasets.load_idx_folder(folder)
    model = fastmlp.MLP([X.shape[1], 8, 10], device="cpu", seed=0)
    history = model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 2
