"""Hostile files (issue 32): no file makes a loader allocate what it declares before the
declared sizes are checked, and every loader speaks one error vocabulary: a ValueError (or
OSError) naming the file, the member or node, what was expected and what was found.

Each forged file is made here, by the test; each load runs in a fresh process under an
address-space limit (tests/_shared_memory.py), so an allocation past 200 MB fails there
instead of eating the machine, and the rise of the peak resident set is asserted too.
Covered: fastmlp.load and Ensemble.load (a member declaring 2^28 float32 in a 1 MB file, a
member declaring 10^13 bytes, a deeply nested config, a truncated file, a text file named
.npz), from_onnx (forged initializer dims, a bias that does not fit, 1-D weights, a
non-scalar Dropout ratio) and atomic saves (errors name the target; stale temporary files
of killed saves are removed by the next save, live ones never)."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest

import fastmlp
from fastmlp import _atomic
from _shared_memory import assert_refused, run_bounded

_SETUP = "import fastmlp\n"
_LOAD = "fastmlp.load({path!r})\n"
_LOAD_ENSEMBLE = "fastmlp.Ensemble.load({path!r})\n"


def _refused(path, loader, error="ValueError", *names):
    action = (_LOAD if loader == "model" else _LOAD_ENSEMBLE).format(path=str(path))
    result = run_bounded(_SETUP, action)
    assert_refused(result, error, *names)
    assert "allow_pickle" not in result["message"], result["message"]
    return result["message"]


# ----------------------------------------------------------------------------------------
# forging archives


def _npy_header(shape, descr="<f4"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _deflated_zeros(header, n_zeros):
    """(raw deflate stream of `header` then `n_zeros` zero bytes, its CRC-32), made without
    compressing n_zeros bytes: after a full flush a compressor starts afresh, so every MiB of
    zeros compresses to the same block."""
    mib = 1 << 20
    assert n_zeros % mib == 0
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = first.compress(header) + first.flush(zlib.Z_FULL_FLUSH)
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = block.compress(bytes(mib)) + block.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = zlib.crc32(header)
    chunk = bytes(mib)
    for _ in range(n_zeros // mib):
        crc = zlib.crc32(chunk, crc)
    return head + zeros * (n_zeros // mib) + end, crc


def _zip(members):
    """A zip (as bytes) of `members`: {name: bytes} (stored) or {name: (data, method, crc,
    uncompressed size)}; sizes of 4 GiB and more get zip64 extra fields."""
    out, central = io.BytesIO(), []
    for name, member in members.items():
        if isinstance(member, bytes):
            member = (member, zipfile.ZIP_STORED, zlib.crc32(member), len(member))
        data, method, crc, usize = member
        name_b = name.encode()
        big = usize >= 0xFFFFFFFF or len(data) >= 0xFFFFFFFF
        extra = struct.pack("<HHQQ", 1, 16, usize, len(data)) if big else b""
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (len(data), usize)
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc,
                              *sizes, len(name_b), len(extra)) + name_b + extra + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0,
                                   0x21, crc, *sizes, len(name_b), len(extra), 0, 0, 0, 0,
                                   offset) + name_b + extra)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def _members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


@pytest.fixture(scope="module")
def model_bytes():
    """The bytes of a small model file ([5, 8, 3]: W1 is (8, 5))."""
    return fastmlp.saving.to_bytes(fastmlp.MLP([5, 8, 3], seed=0))


def _ensemble_bytes(first_member, tmp_path):
    """The bytes of an ensemble file of two models whose first member's model file is
    `first_member` (bytes), written as Ensemble.save writes one."""
    path = tmp_path / "real_ensemble.npz"
    fastmlp.Ensemble([fastmlp.MLP([5, 8, 3], seed=s) for s in (0, 1)]).save(path)
    members = _members(path.read_bytes())
    members["member0.npy"] = _npy(np.frombuffer(first_member, np.uint8))
    return _zip(members)


def _forged_model(model_bytes, case):
    """A model file (bytes) forged as `case` says, and the names its refusal must give."""
    members = _members(model_bytes)
    if case == "2^28-float32-in-1MB":  # W1 declares 2^28 float32: 1 GiB behind 1 MB of zip
        header = _npy_header((1 << 14, 1 << 14))
        data, crc = _deflated_zeros(header, 4 << 28)
        members["W1.npy"] = (data, zipfile.ZIP_DEFLATED, crc, len(header) + (4 << 28))
        return _zip(members), ["W1", "(16384, 16384)", "(8, 5)"]
    if case == "10^13-bytes-declared":  # a .npy header declaring 10^13 bytes, 64 behind it
        members["W1.npy"] = _npy_header((25 * 10**11,)) + bytes(64)
        return _zip(members), ["W1", "10000000000000 bytes"]
    if case == "10^13-bytes-in-the-zip-directory":  # the zip directory claims 10^13 bytes
        data = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = data.compress(members["W1.npy"]) + data.flush()
        members["W1.npy"] = (data, zipfile.ZIP_DEFLATED, 0, 10**13)
        return _zip(members), ["W1", "10000000000000"]
    if case == "deeply-nested-config":
        members["config.npy"] = _npy(np.array("[" * 200_000 + "]" * 200_000))
        return _zip(members), ["nested too deeply"]
    if case == "truncated":
        return model_bytes[: len(model_bytes) // 2], ["zip"]
    if case == "text-named-npz":
        return b"this is a text file, not a model\n" * 20, ["not a zip (.npz) archive"]
    raise AssertionError(case)


_CASES = ["2^28-float32-in-1MB", "10^13-bytes-declared", "10^13-bytes-in-the-zip-directory",
          "deeply-nested-config", "truncated", "text-named-npz"]


@pytest.mark.parametrize("case", _CASES)
def test_load_refuses_a_forged_model_file_in_bounded_memory(model_bytes, tmp_path, case):
    data, names = _forged_model(model_bytes, case)
    path = tmp_path / "forged.npz"
    path.write_bytes(data)
    if case.startswith("2^28"):
        assert len(data) < (3 << 19)  # about 1 MB on disk
    message = _refused(path, "model", "ValueError", str(path), *names)
    assert "is not a valid fastmlp model file" in message


@pytest.mark.parametrize("case", _CASES)
def test_ensemble_load_refuses_a_forged_member_in_bounded_memory(model_bytes, tmp_path, case):
    """The same forgeries as the model file of an ensemble's member: the error names the
    ensemble file and the member (and what in it is wrong)."""
    data, names = _forged_model(model_bytes, case)
    path = tmp_path / "forged_ensemble.npz"
    path.write_bytes(_ensemble_bytes(data, tmp_path))
    message = _refused(path, "ensemble", "ValueError", str(path), "member0", *names)
    assert message.startswith("cannot load the ensemble")


def _forged_ensemble(tmp_path, model_bytes, case):
    members = _members(_ensemble_bytes(model_bytes, tmp_path))
    if case == "10^13-bytes-declared":
        members["member1.npy"] = _npy_header((10**13,), "|u1") + bytes(64)
        return _zip(members), ["member1", "10000000000000 bytes"]
    if case == "2^28-bytes-deflated":  # a member of 2^28 zero bytes in 256 kB: not a model
        header = _npy_header((1 << 28,), "|u1")
        data, crc = _deflated_zeros(header, 1 << 28)
        members["member1.npy"] = (data, zipfile.ZIP_DEFLATED, crc, len(header) + (1 << 28))
        return _zip(members), ["member1", "not a zip (.npz) archive"]
    if case == "10^13-bytes-in-the-zip-directory":
        data = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = data.compress(members["member1.npy"]) + data.flush()
        members["member1.npy"] = (data, zipfile.ZIP_DEFLATED, 0, 10**13)
        return _zip(members), ["member1", "10000000000000"]
    if case == "deeply-nested-config":
        members["config.npy"] = _npy(np.array('{"a":' * 100_000 + "1" + "}" * 100_000))
        return _zip(members), ["nested too deeply"]
    if case == "members-count-that-lies":
        config = json.loads(str(np.load(io.BytesIO(members["config.npy"]))))
        members["config.npy"] = _npy(np.array(json.dumps(dict(config, members=10**12))))
        return _zip(members), ["members", str(10**12)]
    if case == "a-member-that-is-not-bytes":
        members["member1.npy"] = _npy(np.zeros(4, np.float32))
        return _zip(members), ["member1", "uint8"]
    if case == "truncated":
        return _zip(members)[:-200], ["zip"]
    if case == "text-named-npz":
        return b"this is a text file, not an ensemble\n" * 20, ["not a zip (.npz) archive"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["10^13-bytes-declared", "2^28-bytes-deflated",
                                  "10^13-bytes-in-the-zip-directory", "deeply-nested-config",
                                  "members-count-that-lies", "a-member-that-is-not-bytes",
                                  "truncated", "text-named-npz"])
def test_ensemble_load_refuses_a_forged_ensemble_file_in_bounded_memory(model_bytes, tmp_path,
                                                                      case):
    data, names = _forged_ensemble(tmp_path, model_bytes, case)
    path = tmp_path / "forged_ensemble.npz"
    path.write_bytes(data)
    message = _refused(path, "ensemble", "ValueError", str(path), *names)
    assert message.startswith("cannot load the ensemble")


def test_ensemble_members_read_in_place_still_load(tmp_path):
    """The members of a stored ensemble are read from the file itself, those of a deflated
    one through the decompressing stream: both load, with the same predictions."""
    ens = fastmlp.Ensemble([fastmlp.MLP([5, 8, 3], seed=s) for s in (0, 1, 2)], voting="soft")
    path = tmp_path / "e.npz"
    ens.save(path)
    X = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_array_equal(fastmlp.Ensemble.load(path).predict_proba(X),
                                  ens.predict_proba(X))
    deflated = tmp_path / "deflated.npz"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _members(path.read_bytes()).items():
            zf.writestr(name, data)
    back = fastmlp.Ensemble.load(deflated)
    assert back.voting == "soft"
    np.testing.assert_array_equal(back.predict_proba(X), ens.predict_proba(X))


def test_load_reads_the_arrays_once_into_the_model(model_bytes, tmp_path, monkeypatch):
    """Headers first, then each array's data read once (no second pass over the data)."""
    from fastmlp import io as fio

    reads = []
    real = fio._Archive.read

    def counting(self, key):
        reads.append(key)
        return real(self, key)

    monkeypatch.setattr(fio._Archive, "read", counting)
    model = fastmlp.saving.from_bytes(model_bytes)
    assert sorted(reads) == sorted(["config", "W1", "b1", "W2", "b2",
                                    *(f"optimizer_{n}" for n in model.optimizer.state_names)])


# ----------------------------------------------------------------------------------------
# ONNX


def _onnx_file(tmp_path, nodes, initializers, n_in=3, n_out=2):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    inits = []
    for name, value in initializers.items():
        inits.append(value if isinstance(value, onnx.TensorProto)
                     else onnx.numpy_helper.from_array(np.asarray(value), name))
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                               ["N", n_in])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", n_out])],
                         initializer=inits)
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    path = tmp_path / "forged.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def _onnx_refused(path, *names):
    result = run_bounded("import fastmlp, onnx\n", f"fastmlp.from_onnx({str(path)!r})\n")
    assert_refused(result, "ValueError", str(path), *names)
    return result["message"]


def _forged_dims(name, dims, raw):
    onnx = pytest.importorskip("onnx")
    t = onnx.TensorProto(name=name, data_type=onnx.TensorProto.FLOAT, dims=dims)
    if raw:
        t.raw_data = np.ones(6, np.float32).tobytes()
    else:
        t.float_data.extend([1.0] * 6)
    return t


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "float_data"])
def test_from_onnx_checks_initializer_dims_before_building_arrays(tmp_path, raw):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    forged = _forged_dims("W", [1 << 20, 1 << 20], raw)
    path = _onnx_file(tmp_path, [h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")],
                      {"W": forged})
    # the check itself, whatever onnx's checker says first
    from fastmlp._onnx_read import _tensor

    with pytest.raises(ValueError, match=r"the initializer 'W' declares the dims"):
        _tensor(forged, "the initializer 'W'")
    assert "declares the dims" in _onnx_refused(path, "'W'")
    with pytest.raises(ValueError, match="at most"):
        _tensor(_forged_dims("W", [1 << 40, 1 << 40], raw), "the initializer 'W'")
    with pytest.raises(ValueError, match="sizes >= 0"):
        _tensor(_forged_dims("W", [-2, -3], raw), "the initializer 'W'")


def test_from_onnx_checks_constant_node_values(tmp_path):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    forged = _forged_dims("w", [1 << 12, 1 << 12], raw=True)
    nodes = [h.make_node("Constant", [], ["W"], value=forged, name="weights"),
             h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")]
    _onnx_refused(_onnx_file(tmp_path, nodes, {}), "Constant node 'weights'", "[4096, 4096]",
                  "holds 24")


def test_from_onnx_refuses_external_data(tmp_path):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    t = onnx.TensorProto(name="W", data_type=onnx.TensorProto.FLOAT, dims=[2, 3])
    t.data_location = onnx.TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    (tmp_path / "weights.bin").write_bytes(np.ones(6, np.float32).tobytes())
    path = _onnx_file(tmp_path, [h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")],
                      {"W": t})
    message = _onnx_refused(path, "'W'")
    assert "external" in message


def _node_cases():
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    W = np.ones((2, 3), np.float32)
    return {
        "gemm-bias": ([h.make_node("Gemm", ["x", "W", "C"], ["y"], transB=1, name="fc1")],
                      {"W": W, "C": np.ones(3, np.float32)},
                      ["'fc1'", "Gemm", "'C'", "(3,)", "(2,)"]),
        "matmul-add-bias": ([h.make_node("MatMul", ["x", "Wt"], ["m"], name="mm"),
                             h.make_node("Add", ["m", "b"], ["y"], name="plus")],
                            {"Wt": W.T.copy(), "b": np.ones((2, 2), np.float32)},
                            ["'plus'", "Add", "'mm'", "MatMul", "'b'", "(2, 2)", "(2,)"]),
        "1-D-weight": ([h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc1")],
                       {"W": np.ones(3, np.float32)}, ["'fc1'", "Gemm", "'W'", "2-D", "(3,)"]),
        "matmul-1-D-weight": ([h.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                              {"W": np.ones(3, np.float32)}, ["'mm'", "MatMul", "2-D", "(3,)"]),
        "dropout-ratio": ([h.make_node("Gemm", ["x", "W"], ["z"], transB=1, name="fc1"),
                           h.make_node("Dropout", ["z", "r"], ["y"], name="drop")],
                          {"W": W, "r": np.full(3, 0.5, np.float32)},
                          ["'drop'", "Dropout", "'r'", "(3,)", "single"]),
        "dropout-ratio-range": ([h.make_node("Gemm", ["x", "W"], ["z"], transB=1, name="fc1"),
                                 h.make_node("Dropout", ["z", "r"], ["y"], name="drop")],
                                {"W": W, "r": np.array(1.5, np.float32)},
                                ["'drop'", "Dropout", "1.5"]),
        "nan-weights": ([h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc1")],
                        {"W": np.full((2, 3), np.nan, np.float32)}, ["'W'", "NaN"]),
    }


@pytest.mark.parametrize("case", ["gemm-bias", "matmul-add-bias", "1-D-weight",
                                  "matmul-1-D-weight", "dropout-ratio", "dropout-ratio-range",
                                  "nan-weights"])
def test_from_onnx_names_the_file_node_and_what_was_expected(tmp_path, case):
    nodes, inits, names = _node_cases()[case]
    path = _onnx_file(tmp_path, nodes, inits)
    with pytest.raises(ValueError) as info:
        fastmlp.from_onnx(path)
    for name in [str(path), *names]:
        assert name in str(info.value), (name, str(info.value))


def test_from_onnx_refuses_a_text_file(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    path.write_text("not a model\n" * 10)
    with pytest.raises(ValueError, match="not an ONNX model") as info:
        fastmlp.from_onnx(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------------------
# atomic saves


def test_a_failed_save_names_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "locked" / "model.npz"
    target.parent.mkdir()
    if os.geteuid() != 0:  # root writes anywhere: there, the refusal is simulated
        target.parent.chmod(0o500)
    else:
        def refuse(prefix, suffix, dir):
            raise PermissionError(13, "Permission denied",
                                  os.path.join(dir, prefix + "x" + suffix))

        monkeypatch.setattr(_atomic.tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(PermissionError) as info:
            fastmlp.MLP([3, 2], seed=0).save(target)
    finally:
        target.parent.chmod(0o700)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert info.value.errno == 13


def test_a_failed_write_names_the_target(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", full)
    target = tmp_path / "model.npz"
    with pytest.raises(OSError, match="No space left") as info:
        fastmlp.MLP([3, 2], seed=0).save(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert info.value.errno == 28
    assert list(tmp_path.iterdir()) == []


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_save_removes_stale_temporary_files_only(tmp_path):
    target = tmp_path / "model.npz"
    old = _atomic._STARTED - 3600  # last modified an hour before this process started
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, live = _dead_pid(), sleeper.pid
        files = {
            f".fastmlp-model.npz-{dead}-abcd_123.tmp": (old, False),   # stale: removed
            f".fastmlp-model.npz-{live}-abcd_123.tmp": (old, True),    # its writer lives
            f".fastmlp-model.npz-{dead}-efgh_456.tmp": (None, True),   # modified since we started
            f".fastmlp-other.npz-{dead}-abcd_123.tmp": (old, True),    # another target's
            f".fastmlp-model.npz-{os.getpid()}-zz.tmp": (old, True),   # this process's pid
            ".fastmlp-abcd1234.tmp": (old, True),                      # the older naming
            f".fastmlp-model.npz-{dead}-abcd.tmp.bak": (old, True),    # not the pattern
        }
        for name, (mtime, _) in files.items():
            (tmp_path / name).write_bytes(b"half a save")
            if mtime is not None:
                os.utime(tmp_path / name, (mtime, mtime))
        fastmlp.MLP([3, 2], seed=0).save(target)
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {"model.npz"} | {n for n, (_, kept) in files.items() if kept}
    finally:
        sleeper.kill()
        sleeper.wait()


_SAVER = """
import sys, fastmlp
path = sys.argv[1]
models = [fastmlp.MLP([1000, 1000, 10], seed=s, dtype="float64") for s in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    models[i % 2].save(path)
    i += 1
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL, /proc")
def test_a_save_killed_with_sigkill_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    target = tmp_path / "model.npz"
    rng = np.random.default_rng(0)
    stale = []
    for _ in range(10):  # kill savers midway until one leaves its temporary file behind
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if stale:
            break
    if not stale:
        pytest.skip("no save was caught midway in 10 tries")
    assert all(p.name.startswith(f".fastmlp-model.npz-{proc.pid}-") for p in stale)
    # a later process (started after the kill) saving to the same target cleans up
    subprocess.run([sys.executable, "-c", "import sys, fastmlp; "
                    "fastmlp.MLP([3, 2], seed=0).save(sys.argv[1])", str(target)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    assert fastmlp.load(target).get_weights()[0].shape == (2, 3)
