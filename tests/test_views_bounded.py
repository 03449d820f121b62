"""Views of a file (a memmap's column slice: labels in column 0, the common CSV-to-memmap
layout; a memmap of another dtype than the model's) in predict, predict_proba, evaluate and
fit: read a batch of rows at a time, never copied whole, and the same results as on
np.ascontiguousarray(view) -- bit for bit (fit's weights too: the view's rows are copied
into contiguous buffers run by run, which the compiled loop reads as it reads any X)."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp._validation import check_X

from _shared_memory import run_bounded

N_BIG, D, K = 80_000, 784, 10  # 251 MB of float32 rows: a whole copy of the view is 250 MB
LIMIT_MB = 200


def _write(path, n, dtype, seed=0, cols=D + 1):
    """A memmap file of n rows: labels 0..K-1 in column 0, features in [0, 1) (or 0..255)."""
    mm = np.lib.format.open_memmap(str(path), mode="w+", dtype=dtype, shape=(n, cols))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 10_000):
        stop = min(start + 10_000, n)
        block = rng.random((stop - start, cols))
        mm[start:stop] = block * 255 if np.dtype(dtype).kind == "u" else block
        mm[start:stop, 0] = rng.integers(0, K, stop - start)
    mm.flush()
    del mm
    return str(path)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("views") / "big.npy", N_BIG, np.float32)


def _setup(path, opened="np.load(PATH, mmap_mode='r')", view="mm[:, 1:]"):
    """The child's setup: the file opened (the mapping is in its address space before the
    limit), every page read once (so that the resident file pages are in the baseline of
    the peak), and the kernels compiled on a small part of the same view."""
    return f"""
import numpy as np
import fastmlp as fm
PATH = {path!r}
mm = {opened}
float(np.asarray(mm).sum(dtype=np.float64))
def view(mm):
    return {view}
model = fm.MLP([{D}, 32, {K}], seed=0, optimizer="adam")
small = mm[:1000]
model.fit(view(small), small[:, 0], epochs=1, batch_size=256, verbose=0)
model.predict(view(small)); model.predict_proba(view(small))
model.evaluate(view(small), small[:, 0])
X, y = view(mm), mm[:, 0]
"""


def _assert_bounded(result):
    assert result["error"] is None, (f"{result['error']}: {result['message']}\n"
                                     f"{result['traceback']}")
    assert result["peak_rise_mb"] < LIMIT_MB, result


def test_the_limit_refuses_a_whole_copy_of_the_view(big_file):
    """The check has teeth: a copy of the view (what predict's checks used to make) fails
    under the limit."""
    result = run_bounded(_setup(big_file), "np.ascontiguousarray(X)", limit_mb=LIMIT_MB)
    assert result["error"] == "MemoryError", result


def test_predict_on_a_memmap_column_slice_reads_batch_by_batch(big_file):
    result = run_bounded(_setup(big_file), """
pred = model.predict(X)
assert pred.shape == (X.shape[0],)
P = model.predict_proba(X)
assert P.shape == (X.shape[0], 10)
""", limit_mb=LIMIT_MB)
    _assert_bounded(result)


def test_an_in_memory_column_slice_reads_batch_by_batch_too(big_file):
    """The same table loaded into memory: predict, evaluate and fit on its column slice
    never copy the slice whole (only the base array is in the baseline)."""
    result = run_bounded(_setup(big_file, opened="np.array(np.load(PATH, mmap_mode='r'))"), """
assert model.predict(X).shape == (X.shape[0],)
assert np.isfinite(model.evaluate(X, y)["loss"])
assert np.isfinite(model.fit(X, y, epochs=1, batch_size=256, verbose=0).history["loss"][0])
""", limit_mb=LIMIT_MB)
    _assert_bounded(result)


def test_evaluate_on_a_memmap_column_slice_reads_batch_by_batch(big_file):
    result = run_bounded(_setup(big_file), """
scores = model.evaluate(X, y)
assert 0 <= scores["accuracy"] <= 1 and np.isfinite(scores["loss"])
""", limit_mb=LIMIT_MB)
    _assert_bounded(result)


def test_fit_on_a_memmap_column_slice_reads_batch_by_batch(big_file):
    result = run_bounded(_setup(big_file), """
history = model.fit(X, y, epochs=1, batch_size=256, verbose=0)
assert np.isfinite(history.history["loss"][0])
history = model.fit(X, y, epochs=1, batch_size=256, verbose=0, validation_split=0.1,
                    callbacks=[fm.callbacks.EarlyStopping(patience=1)])
""", limit_mb=LIMIT_MB)
    _assert_bounded(result)


@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_a_memmap_of_another_dtype_reads_batch_by_batch(tmp_path, dtype):
    """float64 (its column slice, 250 MB to copy as float32 rows) and uint8 (C-contiguous,
    the kernels cast its rows) into a float32 model."""
    if dtype == np.float64:
        path, view = _write(tmp_path / "f64.npy", 40_000, dtype), "mm[:, 1:]"
    else:
        path, view = _write(tmp_path / "u8.npy", 80_000, dtype, cols=D), "mm"
    result = run_bounded(_setup(path, view=view), """
model.predict(X)
model.evaluate(X, y)
model.fit(X, y, epochs=1, batch_size=256, verbose=0)
""", limit_mb=LIMIT_MB)
    _assert_bounded(result)


# ---------------------------------------------------------------------------------------
# the same results as on a contiguous copy


def _model(loss="cross_entropy", optimizer="adam", outputs=K, width=D):
    return fm.MLP([width, 24, outputs], loss=loss, optimizer=optimizer, seed=0)


def _same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("views") / "small.npy", 3000, np.float32, cols=41)


def test_check_X_keeps_views_whose_rows_are_contiguous_and_copies_strided_rows(small_file):
    mm = np.load(small_file, mmap_mode="r")
    X = check_X(mm[:, 1:])
    assert not X.flags.c_contiguous and np.shares_memory(X, mm)
    in_memory = np.array(mm)
    X = check_X(in_memory[:, 1:])  # a column slice in memory is never copied whole either
    assert not X.flags.c_contiguous and np.shares_memory(X, in_memory)
    assert np.shares_memory(check_X(in_memory[::3]), in_memory)  # every third row
    assert check_X(np.asfortranarray(in_memory)).flags.c_contiguous  # strided rows: copied
    assert check_X(in_memory[:, ::2]).flags.c_contiguous
    assert check_X(mm).base is not None and np.shares_memory(check_X(mm), mm)


def test_an_in_memory_column_slice_gives_the_results_of_a_contiguous_copy(small_file):
    table = np.array(np.load(small_file, mmap_mode="r"))
    view, y = table[:, 1:], table[:, 0]
    a, b = _model(optimizer="sgd", width=40), _model(optimizer="sgd", width=40)
    a.fit(view, y, epochs=1, batch_size=64, verbose=0)
    b.fit(np.ascontiguousarray(view), y, epochs=1, batch_size=64, verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.predict_proba(view), b.predict_proba(np.ascontiguousarray(view)))


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum"])
def test_memmap_view_gives_the_results_of_a_contiguous_copy(small_file, optimizer):
    """Fit (the compiled runs, plain SGD's fused update included, and the last partial batch
    step by step), predict, predict_proba and evaluate, bit for bit."""
    mm = np.load(small_file, mmap_mode="r")
    view, y = mm[:, 1:], mm[:, 0]
    copy = np.ascontiguousarray(view)
    opt = fm.SGD(lr=0.05, momentum=0.9) if optimizer == "momentum" else optimizer
    a, b = _model(optimizer=opt, width=40), _model(optimizer=opt, width=40)
    ha = a.fit(view, y, epochs=2, batch_size=64, verbose=0, validation_split=0.1)
    hb = b.fit(copy, y, epochs=2, batch_size=64, verbose=0, validation_split=0.1)
    assert _same_weights(a, b)
    assert ha.history == hb.history
    np.testing.assert_array_equal(a.predict(view), a.predict(copy))
    np.testing.assert_array_equal(a.predict_proba(view), a.predict_proba(copy))
    np.testing.assert_array_equal(a.predict(view, output=a.layers[0].name),
                                  a.predict(copy, output=a.layers[0].name))
    assert a.evaluate(view, y) == a.evaluate(copy, y)


def test_memmap_view_with_sample_weights_and_step_by_step(small_file):
    """Sample weights (gathered with the rows of each run) and a callback that wants each
    batch (the step-by-step path, whose gather reads the view's rows through NumPy)."""
    mm = np.load(small_file, mmap_mode="r")
    view, y = mm[:, 1:], mm[:, 0]
    copy = np.ascontiguousarray(view)
    w = np.random.default_rng(1).random(view.shape[0])

    class PerBatch(fm.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            pass

    for kwargs in ({"sample_weight": w}, {"callbacks": [PerBatch()]}):
        a, b = _model(width=40), _model(width=40)
        a.fit(view, y, epochs=2, batch_size=50, verbose=0, **kwargs)
        b.fit(copy, y, epochs=2, batch_size=50, verbose=0, **kwargs)
        assert _same_weights(a, b), kwargs


def test_memmap_regression_targets_and_float64_view(tmp_path):
    """A float64 memmap's column slice into a float32 model (the rows converted as the
    kernels convert them), regression targets from the file's first column."""
    mm = np.load(_write(tmp_path / "f64.npy", 2000, np.float64, cols=41), mmap_mode="r")
    view, y = mm[:, 1:], mm[:, 0] / K
    copy = np.ascontiguousarray(view)
    a, b = _model("mse", "sgd", 1, 40), _model("mse", "sgd", 1, 40)
    a.fit(view, y, epochs=2, batch_size=32, verbose=0)
    b.fit(copy, y, epochs=2, batch_size=32, verbose=0)
    assert _same_weights(a, b)
    np.testing.assert_array_equal(a.predict(view), a.predict(copy))
    assert a.evaluate(view, y) == a.evaluate(copy, y)


def test_graph_model_on_a_memmap_view(small_file):
    mm = np.load(small_file, mmap_mode="r")
    view, y = mm[:, 1:], mm[:, 0]
    copy = np.ascontiguousarray(view)

    def graph():
        x = fm.Input(40)
        h = fm.Dense(16, activation="relu")(x)
        h = fm.Add()([h, fm.Dense(16, activation="relu")(h)])
        return fm.Model(x, fm.Dense(K)(h), loss="cross_entropy", optimizer="adam", seed=0)

    a, b = graph(), graph()
    a.fit(view, y, epochs=1, batch_size=64, verbose=0)
    b.fit(copy, y, epochs=1, batch_size=64, verbose=0)
    assert _same_weights(a, b)
    np.testing.assert_array_equal(a.predict(view), b.predict(copy))


def test_a_nan_in_a_memmap_view_is_named_where_it_lies(tmp_path):
    path = _write(tmp_path / "nan.npy", 3000, np.float32, cols=41)
    mm = np.load(path, mmap_mode="r+")
    mm[2345, 7] = np.nan
    model = _model(width=40)
    with pytest.raises(ValueError, match=r"X must be finite; it holds nan at index \(2345, 6\)"):
        model.predict(mm[:, 1:])
    with pytest.raises(ValueError, match=r"at index \(2345, 6\)"):
        model.fit(mm[:, 1:], mm[:, 0], epochs=1, verbose=0)


def test_the_finite_check_goes_by_chunks_of_rows_and_places_the_value(monkeypatch):
    """check_finite reads a view (and a C-contiguous array) in chunks; the first bad value is
    placed by its index in the array, whichever chunk holds it."""
    from fastmlp import _validation

    monkeypatch.setattr(_validation, "_FINITE_CHUNK", 7)
    a = np.zeros((50, 9), np.float32)
    a[33, 5] = np.inf
    for arr, at in ((a, (33, 5)), (a[:, 1:], (33, 4)), (np.asfortranarray(a), (33, 5)),
                    (a.T, (5, 33)), (a[:, 5], (33,)), (a.reshape(50, 3, 3)[:, 1:], (33, 0, 2))):
        with pytest.raises(ValueError, match=rf"X must be finite; it holds inf at index "
                                             rf"\({', '.join(map(str, at))},?\)"):
            _validation.check_finite(arr, "X")
    big = np.zeros((40, 9))
    big[21, 8] = 1e300
    with pytest.raises(ValueError, match=r"finite in float32; it holds 1e\+300 at index "
                                         r"\(21, 7\)"):
        _validation.check_finite(big[:, 1:], "X", np.float32)
    _validation.check_finite(a[:30, 1:], "X")  # before the bad row: passes
