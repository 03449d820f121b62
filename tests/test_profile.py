"""model.profile: where one training step's time goes, kernel call by kernel call."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.profile import step_flop

RATE = 100.0  # GFLOP/s passed in: no sgemm measurement in the tests


def _data(n=64, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d), dtype=np.float32), rng.integers(0, k, n)


def _kernels(rows):
    return [r for r in rows if r["kind"] == "kernel"]


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_every_kernel_of_a_dense_stack_is_named_timed_and_shares_sum_to_one(device, activation):
    X, y = _data()
    sizes = [12, 9, 7, 3]
    model = fm.MLP(sizes, activation=activation, optimizer=fm.SGD(lr=0.1, momentum=0.9),
                   device=device, seed=0)
    B = 10
    rows = model.profile(X, y, steps=3, batch_size=B, gemm_gflops=RATE, verbose=0)
    kernels = _kernels(rows)
    names = [r["kernel"] for r in kernels]
    L = len(sizes) - 1
    epilogues = 2 if activation == "gelu" else 1  # gelu: "+ b" and "A = gelu(Z)" for hidden layers
    expected = 2 + L + (L - 1) * epilogues + 1 + 1 + L + 2 * (L - 1) + 1
    assert len(names) == expected == len(set(names))
    assert names[:2] == [f"gather X rows ({B}x12)", f"gather y rows ({B})"]
    assert names[-1] == "update: SGD"
    for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        product = next(r for r in kernels if r["kernel"].startswith(f"forward {l}: Z = A W^T"))
        assert product["flop"] == 2 * B * n_in * n_out
        assert any(n.startswith(f"backward {l}: dW = delta^T A") for n in names)
        assert any(n.startswith(f"backward {l}: delta = delta W") for n in names) == (l > 1)
    assert sum(r["flop"] for r in kernels) == step_flop(sizes, B)
    assert all(r["time_s"] >= 0 and 0 <= r["share"] <= 1 for r in kernels)
    assert sum(r["share"] for r in kernels) == pytest.approx(1.0)
    total, step = rows[-2], rows[-1]
    assert total["kind"] == "sum" and total["time_s"] == pytest.approx(sum(r["time_s"] for r in kernels))
    assert step["kind"] == "step" and step["time_s"] > 0 and step["flop"] == step_flop(sizes, B)
    assert step["gemm_gflops"] == RATE
    assert step["limit_s"] == pytest.approx(step_flop(sizes, B) / (RATE * 1e9))
    assert step["fraction_of_limit"] == pytest.approx(step["limit_s"] / step["time_s"])


def test_profiling_does_not_train():
    X, y = _data(n=80)
    a = fm.MLP([12, 8, 3], optimizer=fm.Adam(lr=0.01), device="cpu", seed=3)
    b = fm.MLP([12, 8, 3], optimizer=fm.Adam(lr=0.01), device="cpu", seed=3)
    a.fit(X, y, epochs=1, batch_size=16, verbose=0)
    b.fit(X, y, epochs=1, batch_size=16, verbose=0)
    a.profile(X, y, steps=4, batch_size=16, gemm_gflops=RATE, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # optimizer state, step count and the shuffling generator are put back too
    a.fit(X, y, epochs=1, batch_size=16, verbose=0)
    b.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_other_models_are_profiled_by_phase():
    X, y = _data()
    stack = fm.Sequential([fm.Dense(12, 8, activation="relu"), fm.Dropout(0.2), fm.Dense(3)],
                          device="cpu", seed=0)
    x = fm.Input(12)
    h = fm.Dense(8, activation="relu")(x)
    graph = fm.Model(x, fm.Dense(3)(fm.Add()([h, fm.Dense(8, activation="tanh")(h)])),
                     device="cpu", seed=0)
    for model in (stack, graph):
        rows = model.profile(X, y, steps=2, batch_size=8, gemm_gflops=RATE, verbose=0)
        names = [r["kernel"] for r in _kernels(rows)]
        assert names[0].startswith("gather X rows") and names[1].startswith("gather y rows")
        assert names[2:] == ["forward (all layers)", "loss: cross_entropy and d loss / d output",
                             "backward (all layers)", f"update: {type(model.optimizer).__name__}"]
        assert sum(r["share"] for r in _kernels(rows)) == pytest.approx(1.0)
        assert rows[-1]["kind"] == "step" and rows[-1]["time_s"] > 0


def test_the_table_is_printed(capsys):
    X, y = _data()
    model = fm.MLP([12, 6, 3], device="cpu", seed=0)
    rows = model.profile(X, y, steps=2, batch_size=8, gemm_gflops=RATE)
    out = capsys.readouterr().out
    for r in rows:
        assert r["kernel"] in out
    assert "GFLOP/s" in out and "share" in out and "of the machine's limit" in out


def test_the_sgemm_rate_is_measured_when_not_given():
    X, y = _data()
    model = fm.MLP([12, 6, 3], device="cpu", seed=0)
    step = model.profile(X, y, steps=1, batch_size=8, verbose=0)[-1]
    assert step["gemm_gflops"] > 0 and 0 < step["fraction_of_limit"]


def test_a_float64_model_is_measured_against_dgemm(monkeypatch, capsys):
    from fastmlp import profile as prof

    asked = []
    monkeypatch.setattr(prof, "sgemm_gflops", lambda **kw: asked.append(kw) or 50.0)
    X, y = _data()
    for dtype, name in (("float64", "dgemm"), ("float32", "sgemm")):
        model = fm.MLP([12, 6, 3], device="cpu", seed=0, dtype=dtype)
        step = model.profile(X, y, steps=1, batch_size=8)[-1]
        assert asked.pop() == {"dtype": model.dtype} and step["gemm_gflops"] == 50.0
        assert f"at 50 GFLOP/s ({name})" in capsys.readouterr().out


def test_the_gemm_rate_measures_the_dtype_asked_for(monkeypatch):
    from fastmlp import profile as prof

    seen, matmul = [], np.matmul
    monkeypatch.setattr(prof.np, "matmul", lambda a, b, out: seen.append(a.dtype) or matmul(a, b, out=out))
    assert prof.sgemm_gflops(64, 1, np.float64) > 0 and set(seen) == {np.dtype(np.float64)}
    seen.clear()
    assert prof.sgemm_gflops(64, 1) > 0 and set(seen) == {np.dtype(np.float32)}


@pytest.mark.parametrize("kwargs, error, words", [
    ({"steps": 0}, ValueError, "steps must be an integer >= 1; got 0"),
    ({"steps": 2.5}, TypeError, "steps must be an integer"),
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1; got 0"),
    ({"batch_size": "8"}, TypeError, "batch_size must be an integer"),
    ({"gemm_gflops": -5.0}, ValueError, "gemm_gflops must be a finite number in (0"),
    ({"gemm_gflops": "fast"}, TypeError, "gemm_gflops must be a real number"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, words):
    X, y = _data()
    model = fm.MLP([12, 6, 3], device="cpu", seed=0)
    with pytest.raises(error) as info:
        model.profile(X, y, **{"verbose": 0, **kwargs})
    assert words in str(info.value)


def test_bad_data_raise_clear_errors():
    X, y = _data()
    model = fm.MLP([12, 6, 3], device="cpu", seed=0)
    with pytest.raises(ValueError, match="12 features"):
        model.profile(X[:, :5], y, verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.profile(X, y[:-1], verbose=0)
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="dense X"):
        model.profile(sparse.csr_matrix(X), y, verbose=0)


def test_the_blas_kernels_are_named_and_a_slowing_pin_is_explained(monkeypatch):
    import llvmlite.binding as llvm

    from fastmlp.kernels import blas

    core = blas.openblas_core()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    openblas = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"
                and i["filepath"] and blas.LIBRARY and i["filepath"].endswith(blas.LIBRARY.rsplit("/", 1)[-1])]
    if openblas:
        assert core.lower() == openblas[0]["architecture"].lower()
    avx512 = {f: True for f in blas._AVX512}
    monkeypatch.setattr(llvm, "get_host_cpu_features", lambda: avx512)
    monkeypatch.setattr(blas, "openblas_core", lambda: "Haswell")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert "OPENBLAS_CORETYPE=Haswell" in blas.slow_core_advice()
    monkeypatch.setattr(llvm, "get_host_cpu_features", lambda: dict(avx512, avx512bw=False))
    assert blas.slow_core_advice() is None  # a CPU without AVX-512 BW: Haswell is its best
    monkeypatch.setattr(llvm, "get_host_cpu_features", lambda: avx512)
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert blas.slow_core_advice() is None  # OpenBLAS's own choice
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    monkeypatch.setattr(blas, "openblas_core", lambda: "SkylakeX")
    assert blas.slow_core_advice() is None
    monkeypatch.setattr(blas, "openblas_core", lambda: None)
    assert blas.slow_core_advice() is None  # not OpenBLAS


def test_profile_names_the_blas_kernels(capsys):
    from fastmlp.kernels import blas

    X, y = _data()
    step = fm.MLP([12, 6, 3], device="cpu", seed=0).profile(X, y, steps=1, batch_size=8,
                                                             gemm_gflops=RATE)[-1]
    assert step["blas_core"] == blas.openblas_core()
    assert step["blas_advice"] == blas.slow_core_advice()
    if step["blas_core"]:
        assert f"BLAS: OpenBLAS, {step['blas_core']} kernels" in capsys.readouterr().out


def test_a_step_faster_than_the_limit_says_the_rate_was_measured_on_a_busy_machine():
    """A GEMM rate measured while other work held the cores makes the step look faster than
    its own products: the table says so instead of printing "230 % of the machine's limit"."""
    X, y = _data()
    model = fm.MLP([12, 9, 3], device="cpu", seed=0)
    rows = model.profile(X, y, steps=3, batch_size=10, gemm_gflops=1e-6, verbose=0)
    step = rows[-1]
    assert step["fraction_of_limit"] > 1
    text = fm.profile.format_profile(rows, 10, 3)
    assert "busy" in text and "gemm_gflops=" in text
    assert "% of the machine's limit" not in text
    quiet = fm.profile.format_profile(model.profile(X, y, steps=3, batch_size=10,
                                                    gemm_gflops=1e6, verbose=0), 10, 3)
    assert "% of the machine's limit" in quiet and "busy" not in quiet
