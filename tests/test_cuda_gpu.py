"""The CUDA backend on a real GPU, at real sizes (784-256-128-10 at batch 128 and 512, a
4096 x 4096 product, a million parameters), against float64 NumPy.

- ``test_kernels_compile_for_a_real_gpu`` needs no GPU: it compiles every kernel of
  kernels/cuda/ to PTX for sm_80 in a subprocess, which type-checks them for the real
  target (the simulator runs them as Python and checks no types). It needs numba-cuda and
  the NVVM and NVRTC libraries (pip install nvidia-nvvm nvidia-cuda-nvrtc, or
  numba-cuda[cu13]) and skips without them.
- The start-up check of numba-cuda's toolkit against the driver is unit-tested with mocked
  versions (no GPU needed).
- Every other test is marked ``gpu`` and skips unless ``kernels.cuda.is_available()`` on a
  real device (not under the simulator). ``python -m pytest -m gpu tests/test_cuda_gpu.py``
  (or ``python bench/gpu.py``, which runs them first) answers on the first GPU: single
  kernels at real sizes, ``fit`` on CUDA equal to the CPU's (device totals, gathering on
  the device, one read per epoch), the fused kernels at their real launch configuration,
  ``clip_norm`` without host reads, two models in two threads, inference from many
  threads, and no NumbaPerformanceWarning under ``-W error``.

Tolerances for the products are the rigorous forward-error bound of a dot product of
length K, gamma_K * (|A| @ |B|) with gamma_K = K u / (1 - K u), u the unit roundoff, plus a
few units in the last place for the epilogue; everything else uses rtol 1e-5 (float32) /
1e-12 (float64) of the terms' scale, as the other kernel tests.

Setting FASTMLP_CUDA_GPU_TESTS_SMALL=1 together with NUMBA_ENABLE_CUDASIM=1 runs the gpu
tests at tiny sizes under the simulator (a check of the tests themselves).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import reference as ref
from _shared_threads import run_threads
from helpers import DTYPE_IDS, DTYPES, assert_close, randn, rng_for

ROOT = Path(__file__).resolve().parents[1]
SMALL = os.environ.get("FASTMLP_CUDA_GPU_TESTS_SMALL", "") == "1"


def _gpu_unavailable_reason():
    try:
        from fastmlp.kernels import cuda as kc
    except Exception as exc:  # pragma: no cover - the module imports without CUDA
        return f"kernels.cuda does not import: {exc}"
    if kc.SIM and not SMALL:
        return "running under the CUDA simulator, not on a GPU"
    reason = kc.why_unavailable()
    return None if reason is None else f"no CUDA GPU: {reason}"


_REASON = _gpu_unavailable_reason()


def on_gpu(test):
    """Marks a test ``gpu`` and skips it unless a real GPU (or the small simulator mode)
    answers."""
    return pytest.mark.gpu(pytest.mark.skipif(_REASON is not None, reason=_REASON or "")(test))


per_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)

UNIT = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}

MNIST = (16, 12, 8, 4) if SMALL else (784, 256, 128, 10)
BATCHES = (5, 9) if SMALL else (128, 512)
BIG_N = 40 if SMALL else 4096
N_PARAMS = 300 if SMALL else 1_000_003


def kcuda():
    from fastmlp.kernels import cuda as kc

    return kc


@pytest.fixture
def kc():
    """The CUDA backend module."""
    return kcuda()


def dtype_rng(dtype, *key):
    """The test's generator: its key, then the dtype's name."""
    return rng_for(*key, np.dtype(dtype).str)


def gamma(k, dtype):
    u = UNIT[np.dtype(dtype)]
    return k * u / (1 - k * u)


def abs_prod(A, B):
    return np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64))


def assert_within(actual, expected, bound, what=""):
    """|actual - expected| <= bound elementwise (bound an array or a number)."""
    err = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    excess = err - bound
    assert excess.max(initial=-1.0) <= 0, (
        f"{what}: max error {err.max():.3g}, worst excess over the bound {excess.max():.3g}")


def f64(a):
    return np.asarray(a, np.float64)


# ---------------------------------------------------------------------------------------
# compile-only: no GPU needed

_COMPILE_SCRIPT = textwrap.dedent(r"""
    import json, re, sys, types
    import numpy as np
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        load_nvidia_dynamic_lib("nvvm")
        load_nvidia_dynamic_lib("nvrtc")
    except Exception as exc:
        print("SKIP: NVVM/NVRTC not found:", exc)
        sys.exit(77)
    import numba
    from numba import cuda
    from numba.cuda import dispatcher as _dispatcher
    from fastmlp.kernels import codes
    from fastmlp.kernels import cuda as kc

    CC = (9, 0)
    # no GPU: arrays are host arrays (same Numba types as device arrays), and every launch
    # compiles its kernel to PTX for the arguments' types instead of running it
    class HostArray(np.ndarray):
        def copy_to_host(self):
            return np.array(self)
        def is_c_contiguous(self):
            return self.flags.c_contiguous
    kc.device._alloc = kc.memory._alloc = lambda shape, dtype: np.zeros(shape, dtype).view(HostArray)
    kc.device._context = lambda: None
    _dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)
    ptx = {}
    def compile_launch(kernel, grid, block, args):
        sig = tuple(numba.typeof(a) for a in args)
        # keyed by the kernel itself: factories make several kernels of one qualname
        key = (id(kernel), str(sig))
        if key not in ptx:
            ptx[key] = (cuda.compile_ptx(kernel.py_func, sig, cc=CC)[0], sig,
                        kernel.py_func.__qualname__)
    kc.device._run = compile_launch
    H = lambda a: np.asarray(a).view(HostArray)
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        Z = lambda *shape: H(np.zeros(shape, dt))
        A = Z(5, 3); W = Z(4, 3); b = Z(4); O = Z(5, 4); g = Z(3); p = Z(7)
        tot = H(np.zeros(1)); y = H(np.zeros(5, np.int64)); w = H(np.ones(5, dt))
        for ta in (False, True):
            for tb in (False, True):
                kc.matmul(A, A, Z(3, 3), ta, tb)
        for act in sorted(codes.ACTIVATIONS.values()):
            kc.linear_forward(A, W, b, act, O)
            kc.delta_backward(O, W, A, act, A)
            kc.activate(A, act, A); kc.activation_backward(A, act, A)
        kc.weight_grad(O, A, W, b)
        kc.softmax(A, A)
        for T in (y, H(y.astype(np.int32)), Z(5, 3)):
            kc.softmax_cross_entropy(A, T, A, None, 0.1, total=tot)
            kc.softmax_cross_entropy(A, T, A, w, 0.1, total=tot)
        kc.softmax_cross_entropy(A, y, A, w, 0.1)
        kc.sigmoid_binary_cross_entropy(A, A, A, total=tot)
        kc.sigmoid_binary_cross_entropy(A, A, A, w, total=tot)
        kc.sigmoid_binary_cross_entropy(A[:, :1], y, A[:, :1], total=tot)
        kc.mse(A, A, A, total=tot); kc.mse(A, A, A, w, total=tot)
        kc.poisson(A, A, A, total=tot); kc.poisson(A, A, A, w, total=tot)
        kc.softmax_kl_divergence(A, A, A, total=tot); kc.softmax_kl_divergence(A, A, A, w, total=tot)
        kc.add(A, A, A)
        kc.count_binary_correct(A, A, total=H(np.zeros(1, np.int64))); kc.count_binary_correct(A[:, :1], Z(5, 1))
        kc.count_correct(A, y, total=H(np.zeros(1, np.int64)))
        kc.count_correct(A, H(y.astype(np.float64)), total=tot)
        kc.count_correct(A, H(y.astype(np.int32)), total=tot)
        kc.count_correct(A, y)
        kc.regression_sums(A, A, H(np.zeros(3)), H(np.zeros(3)))
        kc.regression_sums(A, A, Z(3), Z(3))
        kc.fill_uniform(A, rng); kc.fill_uniform(b, rng)
        kc.dropout_forward(A, A, 0.5, A); kc.dropout_backward(A, A, 0.5, A, 1, A)
        kc.batchnorm_forward(A, g, g, g, g, 0.1, 1e-5, 1, A, g, A)
        kc.batchnorm_inference(A, g, g, g, g, 1e-5, 1, A)
        kc.batchnorm_backward(A, A, g, g, g, g, A, 1, A)
        kc.sgd_update(p, p, p, 0.1, 0.9, 0.0, True)
        kc.adam_update(p, p, p, p, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, True)
        kc.adam_update(p, p, p, p, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, True, p)
        kc.rmsprop_update(p, p, p, p, p, 0.1, 0.9, 1e-8, 0.0, 0.9, True)
        kc.adagrad_update(p, p, p, 0.1, 0.0, 1e-10)
        kc.scale(p, 0.5)
        kc.clip_grad_norm(p, 1.0, H(np.zeros(1)))
        kc.clip_grad_norm(p, 1.0)
        for src in (np.uint8, np.float32, np.float64, np.int64):
            kc.gather_rows(H(np.zeros((9, 3), src)), y, A)
            kc.gather_rows(H(np.zeros((9, 3), src)), H(y.astype(np.int32)), A)
        kc.zeros((3, 2), dt)
        # the training forward / backward of a Dense stack (fused: every width <= 256), at
        # 1 row per block (batch 4) and 16 (8 in float64) rows per block (batch 4096), and
        # with a column slice among the hidden activations (a tuple of mixed layouts)
        sizes = (5, 7, 3, 2)
        n_params = 5 * 7 + 7 + 7 * 3 + 3 + 3 * 2 + 2
        for batch, sliced in ((4, False), (4096, False), (4, True)):
            As = tuple(Z(batch, s) for s in sizes)
            if sliced:
                As = (As[0], Z(batch, 9)[:, 1:8]) + As[2:]
            Ds = (As[0], As[1], Z(batch, 3), As[3])  # gelu in layer 2 keeps Z
            Ws, bs = kc.fused._layer_views(Z(n_params), sizes)
            dWs, dbs = kc.fused._layer_views(Z(n_params), sizes)
            kc.mlp_forward(As, Ds, Ws, bs, (1, 6, 0))
            kc.mlp_backward(tuple(Z(batch, s) for s in sizes[1:]), As, Ds, Ws, dWs, dbs,
                            (1, 6, 0))
    kc.zeros(4, np.int64)
    # float32 kernels compute in float32: no float64 instruction in the PTX of a kernel
    # whose floating-point arguments are all float32
    f64 = re.compile(r"\.f64\b")
    offenders = {}
    for (_, sig_text), (code, sig, name) in ptx.items():
        floats = {str(getattr(t, "dtype", t)) for t in sig} & {"float32", "float64"}
        if floats == {"float32"}:
            lines = [l.strip() for l in code.splitlines() if f64.search(l)]
            if lines:
                offenders[f"{name}{sig_text}"] = lines[:3] + [f"... {len(lines)} in all"]
    print("compiled", len(ptx), "kernels")
    print("FLOAT64_IN_FLOAT32=" + json.dumps(offenders))
""")


def test_kernels_compile_for_a_real_gpu():
    """Every kernel type-checks and compiles to PTX for sm_90 (no GPU needed), and the
    float32 specialisations hold no float64 instruction."""
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert "compiled" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.startswith("FLOAT64_IN_FLOAT32="))
    offenders = json.loads(line.split("=", 1)[1])
    assert offenders == {}, f"float64 instructions in float32 kernels: {offenders}"


_WITHOUT_NUMBA_CUDA = """
import sys
sys.modules["numba_cuda"] = None  # as on a machine where it is not installed
import numpy as np
import fastmlp as fm
X = np.random.default_rng(0).random((32, 4), dtype=np.float32)
y = np.arange(32) % 3
model = fm.MLP([4, 8, 3], device="auto", seed=0)
model.fit(X, y, epochs=1, batch_size=8, verbose=0)
print("auto:", fm.kernels.backend("auto").name, model.predict(X).shape)
try:
    fm.MLP([4, 8, 3], device="cuda")
except RuntimeError as e:
    print("cuda:", e)
"""


def test_without_numba_cuda_fit_runs_on_the_cpu_and_cuda_says_why():
    """`pip install fastmlp` brings no numba-cuda: the CUDA backend's modules must still
    import (device="auto" looks at them), fit runs on the CPU, device="cuda" names the
    missing package (the README's demo failed on a fresh machine when one module imported a
    name the CUDA import defines)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_NUMBA_CUDA], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert "auto: cpu (32,)" in lines, proc.stdout  # predict: a class per row
    assert any(l.startswith("cuda: ") and "numba-cuda package is not installed" in l
               for l in lines), proc.stdout


@pytest.mark.auto_device
def test_auto_picks_the_gpu_exactly_when_there_is_one(kc):
    """device="auto": CUDA on a machine with a usable GPU (never the simulator), else the
    CPU; a model built with it says which."""
    import fastmlp
    from fastmlp import kernels

    expected = "cuda" if kc.why_unavailable() is None and not kc.SIM else "cpu"
    assert kernels.backend("auto").name == expected
    assert fastmlp.MLP([3, 2], device="auto", seed=0).device == expected


def test_the_suite_pins_auto_to_the_cpu():
    from fastmlp import kernels

    assert kernels.backend("auto").name == "cpu"


def test_gemm_grid_takes_millions_of_rows(kc):
    """The row tiles go on grid.x (limit 2^31 - 1), the column tiles on grid.y (65,535): a
    predict on five million rows launches (checked without running it)."""
    for config in (kc.device.GEMM_LARGE, kc.device.GEMM_SMALL):
        BM, BN = config[:2]
        grid = kc.gemm._gemm_grid(5_000_000, 10, config)
        assert grid == (-(-5_000_000 // BM), -(-10 // BN)) and grid[0] < 2**31 - 1
    with pytest.raises(ValueError, match="grid.y"):
        kc.gemm._gemm_grid(4, 65_536 * 64 + 1, (64, 64, 16, 4, 4))


# ---------------------------------------------------------------------------------------
# real GPU


@on_gpu
def test_backend_reports_a_device(kc):
    assert kc.is_available() and kc.why_unavailable() is None


@on_gpu
@per_dtype
def test_matmul_4096(kc, dtype):
    rng = dtype_rng(dtype, "matmul4096")
    n = BIG_N
    A = randn(rng, (n, n), dtype)
    B = randn(rng, (n, n), dtype)
    C = kc.empty((n, n), dtype)
    kc.matmul(kc.to_device(A), kc.to_device(B), C, False, False)
    expected = f64(A) @ f64(B)
    assert_within(kc.to_host(C), expected, gamma(n, dtype) * abs_prod(A, B) + 1e-300,
                  f"matmul {n}")


@on_gpu
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@per_dtype
def test_matmul_transposes_odd_sizes(kc, dtype, trans_a, trans_b):
    rng = dtype_rng(dtype, "matmul_t", trans_a, trans_b)
    m, k, n = (13, 7, 21) if SMALL else (1001, 515, 263)
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C = kc.empty((m, n), dtype)
    kc.matmul(kc.to_device(A), kc.to_device(B), C, trans_a, trans_b)
    opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
    assert_within(kc.to_host(C), f64(opA) @ f64(opB), gamma(k, dtype) * abs_prod(opA, opB),
                  "matmul")


def mlp_params(rng, dtype):
    shapes = [(MNIST[i + 1], MNIST[i]) for i in range(len(MNIST) - 1)]
    return [(randn(rng, s, dtype, scale=np.sqrt(2 / s[1])), randn(rng, (s[0],), dtype, 0.1))
            for s in shapes]


@on_gpu
@pytest.mark.parametrize("batch", BATCHES)
@per_dtype
def test_mnist_layers(kc, dtype, batch):
    """784-256-128-10: forward (every activation on the first layer), delta propagation and
    weight gradients of every layer against float64 NumPy."""
    rng = dtype_rng(dtype, "mnist_layers", batch)
    u = UNIT[np.dtype(dtype)]
    params = mlp_params(rng, dtype)
    X = rng.random((batch, MNIST[0])).astype(dtype)
    W1, b1 = params[0]
    for act in sorted(codes.ACTIVATIONS.values()):
        out = kc.empty((batch, W1.shape[0]), dtype)
        kc.linear_forward(kc.to_device(X), kc.to_device(W1), kc.to_device(b1), act, out)
        expected = np.empty((batch, W1.shape[0]))
        ref.linear_forward(f64(X), f64(W1), f64(b1), act, expected)
        scale = abs_prod(X, W1.T) + np.abs(f64(b1))
        bound = 1.2 * gamma(MNIST[0] + 1, dtype) * scale + 8 * u * np.abs(expected) + 1e-30
        assert_within(kc.to_host(out), expected, bound, f"linear_forward act={act}")
    A = [X]
    for li, (W, b) in enumerate(params):
        act = codes.RELU if li < len(params) - 1 else codes.IDENTITY
        out = kc.empty((batch, W.shape[0]), dtype)
        kc.linear_forward(kc.to_device(A[-1]), kc.to_device(W), kc.to_device(b), act, out)
        A.append(kc.to_host(out))
    for li in range(len(params), 0, -1):
        W, _ = params[li - 1]
        delta = randn(rng, (batch, W.shape[0]), dtype, scale=1.0 / batch)
        dW, db = kc.empty(W.shape, dtype), kc.empty(W.shape[0], dtype)
        kc.weight_grad(kc.to_device(delta), kc.to_device(A[li - 1]), dW, db)
        assert_within(kc.to_host(dW), f64(delta).T @ f64(A[li - 1]),
                      gamma(batch, dtype) * abs_prod(delta.T, A[li - 1]) + 1e-300, f"dW {li}")
        assert_within(kc.to_host(db), f64(delta).sum(axis=0),
                      gamma(batch, dtype) * np.abs(f64(delta)).sum(axis=0) + 1e-300, f"db {li}")
        if li > 1:
            out = kc.empty((batch, W.shape[1]), dtype)
            kc.delta_backward(kc.to_device(delta), kc.to_device(W), kc.to_device(A[li - 1]),
                              codes.RELU, out)
            expected = (f64(delta) @ f64(W)) * (A[li - 1] > 0)
            assert_within(kc.to_host(out), expected,
                          gamma(W.shape[0], dtype) * abs_prod(delta, W) + 1e-300, f"delta {li}")


@on_gpu
@per_dtype
def test_losses_and_metrics_large(kc, dtype):
    rng = dtype_rng(dtype, "losses_large")
    for batch, k in ((BATCHES[-1], 10), (BATCHES[0], 1000 if not SMALL else 7), (100_000 if not SMALL else 50, 10)):
        Z = randn(rng, (batch, k), dtype, scale=3.0)
        y = rng.integers(0, k, size=batch)
        w = rng.uniform(0, 2, size=batch).astype(dtype)
        Zd, yd, wd = kc.to_device(Z), kc.to_device(y), kc.to_device(w)
        for weights in (None, w):
            dZ_ref = np.empty(Z.shape)
            loss_ref = ref.softmax_cross_entropy(f64(Z), y, dZ_ref, None if weights is None
                                                 else f64(weights), 0.1)
            dZ = kc.empty(Z.shape, dtype)
            loss = kc.softmax_cross_entropy(Zd, yd, dZ, None if weights is None else wd, 0.1)
            assert_close(loss, loss_ref, dtype, scale=loss_ref, what=f"ce loss {(batch, k)}")
            assert_close(kc.to_host(dZ), dZ_ref, dtype, scale=2.0 * 2 / batch,
                         what=f"ce dZ {(batch, k)}")
            total = kc.zeros(1, np.float64)
            kc.softmax_cross_entropy(Zd, yd, dZ, None if weights is None else wd, 0.1, total=total)
            kc.softmax_cross_entropy(Zd, yd, dZ, None if weights is None else wd, 0.1, total=total)
            assert_close(kc.to_host(total)[0], 2 * batch * loss_ref, dtype,
                         scale=2 * batch * loss_ref)
        T = rng.random((batch, k)).astype(dtype)
        for fname in ("sigmoid_binary_cross_entropy", "mse"):
            dZ_ref = np.empty(Z.shape)
            loss_ref = getattr(ref, fname)(f64(Z), f64(T), dZ_ref, f64(w))
            dZ = kc.empty(Z.shape, dtype)
            loss = getattr(kc, fname)(Zd, kc.to_device(T), dZ, wd)
            assert_close(loss, loss_ref, dtype, scale=loss_ref, what=f"{fname} {(batch, k)}")
            assert_close(kc.to_host(dZ), dZ_ref, dtype, scale=np.abs(dZ_ref).max() * 2,
                         what=f"{fname} dZ")
        assert kc.count_correct(Zd, yd) == ref.count_correct(Z, y)
        total = kc.zeros(1, np.int64)
        kc.count_correct(Zd, yd, total=total)
        assert kc.to_host(total)[0] == ref.count_correct(Z, y)


@on_gpu
@per_dtype
def test_optimizers_on_a_million_parameters(kc, dtype):
    rng = dtype_rng(dtype, "optim_large")
    n = N_PARAMS
    p0 = randn(rng, (n,), dtype)
    cases = {
        "sgd": (("p", "buf"), lambda s, g, t: ("sgd_update", (s["p"], g, s["buf"], 0.1, 0.9, 1e-3, True))),
        "adam": (("p", "m", "v", "vm"), lambda s, g, t: (
            "adam_update", (s["p"], g, s["m"], s["v"], t, 1e-3, 0.9, 0.999, 1e-8, 1e-2, True, s["vm"]))),
        "rmsprop": (("p", "sq", "ga", "buf"), lambda s, g, t: (
            "rmsprop_update", (s["p"], g, s["sq"], s["ga"], s["buf"], 1e-3, 0.99, 1e-8, 1e-3, 0.9, True))),
    }
    for label, (names, make) in cases.items():
        host = {k: (p0.copy() if k == "p" else np.zeros(n, dtype)) for k in names}
        dev = {k: kc.to_device(v) for k, v in host.items()}
        for t in range(1, 4):
            g = randn(rng, (n,), dtype)
            fname, args = make(host, g, t)
            getattr(ref, fname)(*args)
            fname, args = make(dev, kc.to_device(g), t)
            getattr(kc, fname)(*args)
        for k in names:
            assert_close(kc.to_host(dev[k]), host[k], dtype, what=f"{label} {k}")
    g = randn(rng, (n,), dtype)
    g_ref = g.copy()
    norm_ref = ref.clip_grad_norm(g_ref, 1.0)
    dg = kc.to_device(g)
    assert_close(kc.clip_grad_norm(dg, 1.0), norm_ref, dtype, scale=norm_ref)
    assert_close(kc.to_host(dg), g_ref, dtype)


@on_gpu
def test_fill_uniform_million(kc):
    for dtype in DTYPES:
        U = kc.empty((1000, 1000) if not SMALL else (50, 50), dtype)
        kc.fill_uniform(U, np.random.default_rng(0))
        u = kc.to_host(U)
        assert 0 <= u.min() and u.max() < 1
        tol = 5 / np.sqrt(12 * u.size)
        assert abs(u.mean() - 0.5) < tol
        hist = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
        assert np.abs(hist - 0.1).max() < (0.003 if not SMALL else 0.06)
        U2 = kc.empty(U.shape, dtype)
        kc.fill_uniform(U2, np.random.default_rng(0))
        np.testing.assert_array_equal(kc.to_host(U2), u)


@on_gpu
@per_dtype
def test_batchnorm_dropout_gather_large(kc, dtype):
    rng = dtype_rng(dtype, "bn_large")
    batch, f = (BATCHES[-1], MNIST[1])
    X = randn(rng, (batch, f), dtype, 2.0) + 1
    gamma_, beta = randn(rng, (f,), dtype) + 1, randn(rng, (f,), dtype)
    rm, rv = np.zeros(f, dtype), np.ones(f, dtype)
    outs_ref = [np.empty((batch, f), dtype), np.empty(f, dtype), np.empty((batch, f), dtype)]
    rm_ref, rv_ref = rm.copy(), rv.copy()
    ref.batchnorm_forward(X, gamma_, beta, rm_ref, rv_ref, 0.1, 1e-5, codes.RELU, *outs_ref)
    d = [kc.empty((batch, f), dtype), kc.empty(f, dtype), kc.empty((batch, f), dtype)]
    rmd, rvd = kc.to_device(rm), kc.to_device(rv)
    kc.batchnorm_forward(kc.to_device(X), kc.to_device(gamma_), kc.to_device(beta), rmd, rvd,
                         0.1, 1e-5, codes.RELU, *d)
    for a, b in zip(d, outs_ref):
        assert_close(kc.to_host(a), b, dtype, scale=np.abs(b).max() * 2)
    assert_close(kc.to_host(rmd), rm_ref, dtype)
    assert_close(kc.to_host(rvd), rv_ref, dtype)
    Xs = rng.integers(0, 256, size=(60_000 if not SMALL else 70, MNIST[0])).astype(np.uint8)
    idx = rng.integers(0, Xs.shape[0], size=batch)
    out = kc.empty((batch, MNIST[0]), np.float32)
    kc.gather_rows(kc.to_device(Xs), kc.to_device(idx), out)
    np.testing.assert_array_equal(kc.to_host(out), Xs[idx].astype(np.float32))


@on_gpu
def test_training_steps_mnist_shapes_match_the_reference(kc):
    """Ten SGD steps of 784-256-128-10 (relu, cross-entropy) in float64 on the GPU and in
    NumPy: the parameters agree to 1e-9."""
    dtype = np.float64
    rng = rng_for("train_mnist")
    batch = BATCHES[0]
    params = mlp_params(rng, dtype)
    X = rng.random((batch * 10, MNIST[0]))
    y = rng.integers(0, MNIST[-1], size=batch * 10)
    dev = [(kc.to_device(W), kc.to_device(b)) for W, b in params]
    bufs_h = [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]
    bufs_d = [(kc.zeros(W.shape, dtype), kc.zeros(b.shape, dtype)) for W, b in params]
    for s in range(10):
        xb, yb = X[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
        for k, P, bufs, xin, yin in ((ref, params, bufs_h, xb, yb),
                                     (kc, dev, bufs_d, kc.to_device(xb), kc.to_device(yb))):
            A = [xin]
            for li, (W, b) in enumerate(P):
                out = k.empty((batch, W.shape[0]), dtype)
                k.linear_forward(A[-1], W, b, codes.RELU if li < len(P) - 1 else codes.IDENTITY, out)
                A.append(out)
            delta = k.empty(A[-1].shape, dtype)
            k.softmax_cross_entropy(A[-1], yin, delta)
            for li in range(len(P), 0, -1):
                W, b = P[li - 1]
                dW, db = k.empty(W.shape, dtype), k.empty(b.shape, dtype)
                k.weight_grad(delta, A[li - 1], dW, db)
                if li > 1:
                    prev = k.empty(A[li - 1].shape, dtype)
                    k.delta_backward(delta, W, A[li - 1], codes.RELU, prev)
                    delta = prev
                k.sgd_update(W.reshape(W.size), dW.reshape(dW.size), bufs[li - 1][0].reshape(W.size),
                             0.05, 0.9, 0.0, False)
                k.sgd_update(b, db, bufs[li - 1][1], 0.05, 0.9, 0.0, False)
    for (W, b), (Wd, bd) in zip(params, dev):
        np.testing.assert_allclose(kc.to_host(Wd), W, rtol=0, atol=1e-9)
        np.testing.assert_allclose(kc.to_host(bd), b, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------
# the start-up check of numba-cuda's toolkit against the driver (no GPU needed)


@pytest.mark.parametrize("driver, toolkit, extra", [
    ((12, 4), (13, 0), "cuda12"),  # CUDA 13 NVVM, CUDA 12 driver: nothing would load
    ((12, 0), (13, 1), "cuda12"),
    ((11, 8), (12, 6), None),  # no extra for CUDA 11: update the driver
    ((13, 0), (14, 0), "cuda13"),
])
def test_a_toolkit_newer_than_the_driver_is_refused_naming_the_extra(kc, driver, toolkit, extra):
    reason = kc.device._toolkit_mismatch(driver, toolkit)
    assert reason is not None
    assert f"CUDA {toolkit[0]}.{toolkit[1]}" in reason and f"CUDA {driver[0]}.{driver[1]}" in reason
    assert "update the NVIDIA driver" in reason
    if extra is None:
        assert "fastmlp[" not in reason
    else:
        assert f"pip install 'fastmlp[{extra}]'" in reason and f"numba-cuda[cu{driver[0]}]" in reason


@pytest.mark.parametrize("driver, toolkit", [((12, 4), (12, 4)), ((12, 2), (12, 8)),
                                             ((13, 0), (12, 9)), ((13, 1), (13, 0))])
def test_a_toolkit_of_the_drivers_major_version_or_older_is_accepted(driver, toolkit):
    """Older major versions run on newer drivers; within one major version numba-cuda links
    for the driver (minor version compatibility)."""
    assert kcuda().device._toolkit_mismatch(driver, toolkit) is None


def test_the_start_up_check_reports_the_mismatch(kc, monkeypatch):
    """why_unavailable() asks the driver and NVRTC for their versions and reports a
    mismatch as the reason the backend is unavailable (and device='cuda' raises it)."""
    if kc.cuda is None or kc.SIM:
        pytest.skip("needs numba-cuda outside the simulator")
    from numba.cuda.cudadrv import driver as _driver
    from numba.cuda.cudadrv import nvvm as _nvvm
    from numba.cuda.cudadrv import runtime as _runtime

    fake = type("FakeDriver", (), {"is_available": True, "get_version": lambda self: (12, 2)})()
    monkeypatch.setattr(_driver, "driver", fake)
    monkeypatch.setattr(_nvvm, "is_available", lambda: True)
    monkeypatch.setattr(_runtime, "get_version", lambda: (13, 0))
    kc.why_unavailable.cache_clear()
    try:
        reason = kc.why_unavailable()
        assert reason is not None and "fastmlp[cuda12]" in reason
        from fastmlp import kernels

        with pytest.raises(RuntimeError, match=r"fastmlp\[cuda12\]"):
            kernels.backend("cuda")
    finally:
        kc.why_unavailable.cache_clear()


# ---------------------------------------------------------------------------------------
# the whole model on a real GPU: fit, clipping, threads, warnings

FIT_N = 60 if SMALL else 1000
FIT_BATCH = 8 if SMALL else 128
NARROW = (6, 12, 12, 3) if SMALL else (32, 64, 64, 64, 2)


def fit_problem(sizes, n=FIT_N, seed=0):
    rng = rng_for("fit problem", sizes, n, seed)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = (X[:, : sizes[-1]].argmax(axis=1) + (X[:, 0] > 1)) % sizes[-1]
    return X, y


def fitted_pair(sizes, dtype, optimizer, epochs=2, **fit):
    """The same model (same initial weights) fitted on CUDA and on the CPU."""
    import fastmlp

    X, y = fit_problem(sizes)
    models = [fastmlp.MLP(list(sizes), activation="tanh", device=d, dtype=dtype, seed=0,
                          optimizer=optimizer()) for d in ("cuda", "cpu")]
    models[0].set_weights(models[1].get_weights())
    histories = [m.fit(X, y, epochs=epochs, batch_size=FIT_BATCH, verbose=0, **fit)
                 for m in models]
    return models, histories, (X, y)


FIT_TOL = {np.dtype(np.float32): dict(rtol=2e-3, atol=2e-4),
           np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11)}


def assert_same_fit(models, histories, data, dtype):
    tol = FIT_TOL[np.dtype(dtype)]
    (gpu, cpu), (hg, hc) = models, histories
    assert hg.history.keys() == hc.history.keys()
    for key in hc.history:
        np.testing.assert_allclose(hg.history[key], hc.history[key], err_msg=key, **tol)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, **tol)
    np.testing.assert_allclose(gpu.predict_proba(data[0]), cpu.predict_proba(data[0]), **tol)


@on_gpu
@pytest.mark.parametrize("sizes", [MNIST, NARROW], ids=["mnist", "narrow-fused"])
@per_dtype
def test_fit_on_cuda_equals_fit_on_the_cpu(dtype, sizes):
    """fit on CUDA (data uploaded once, batches gathered on the device, the loss and the
    right answers summed on the device and read once per epoch) gives the CPU's history and
    weights: MNIST's shape (per-layer GEMMs) and a narrow network (the fused kernels), a
    last batch shorter than the others, validation data, shuffling, momentum."""
    import fastmlp

    models, histories, data = fitted_pair(
        sizes, dtype, lambda: fastmlp.SGD(lr=0.05, momentum=0.9), validation_split=0.2)
    assert "val_accuracy" in histories[0].history
    assert_same_fit(models, histories, data, dtype)


def count_host_reads(monkeypatch):
    """Counts the device-to-host copies (every read of the GPU's results goes through the
    device array's copy_to_host)."""
    cls = type(kcuda().empty(1, np.float32))
    reads = []
    real = cls.copy_to_host

    def copy_to_host(self, *args, **kwargs):
        reads.append(self.shape)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "copy_to_host", copy_to_host)
    return reads


@on_gpu
@pytest.mark.parametrize("clip", [None, 0.5], ids=["no-clip", "clip_norm"])
def test_fit_reads_the_gpu_once_per_epoch_not_per_step(clip, monkeypatch):
    """The host reads nothing per step, clip_norm included (the norm and the clipping stay
    on the device): an epoch of 2n steps reads exactly as much as an epoch of n steps."""
    import fastmlp

    reads = count_host_reads(monkeypatch)
    counts = []
    for n in (FIT_N, 2 * FIT_N):
        X, y = fit_problem(NARROW, n=n)
        model = fastmlp.MLP(list(NARROW), device="cuda", seed=0,
                            optimizer=fastmlp.SGD(lr=0.05, clip_norm=clip))
        reads.clear()
        model.fit(X, y, epochs=1, batch_size=FIT_BATCH, verbose=0)
        counts.append(len(reads))
    assert counts[0] == counts[1], f"host reads grow with the steps: {counts}"


@on_gpu
@per_dtype
def test_clip_norm_on_cuda_equals_the_cpu(dtype):
    """Gradient clipping decided on the device (no host synchronisation) clips as the CPU
    does: a small max_norm, so that most steps clip."""
    import fastmlp

    models, histories, data = fitted_pair(
        NARROW, dtype, lambda: fastmlp.SGD(lr=0.1, momentum=0.9, clip_norm=0.05))
    assert_same_fit(models, histories, data, dtype)
    models, histories, data = fitted_pair(
        MNIST, dtype, lambda: fastmlp.Adam(lr=1e-3, clip_norm=0.05), epochs=1)
    assert_same_fit(models, histories, data, dtype)


@on_gpu
def test_two_models_in_two_threads_equal_one_after_the_other():
    """Two models trained at once from two threads on the GPU end exactly where each ends
    trained alone (no scratch or read-back buffer shared between them)."""
    if kcuda().SIM:
        pytest.skip("the simulator's fake cuda module is not safe for host threads")
    import fastmlp

    X, y = fit_problem(MNIST)

    def train(seed):
        model = fastmlp.MLP(list(MNIST), device="cuda", seed=seed,
                            optimizer=fastmlp.SGD(lr=0.05, momentum=0.9, clip_norm=1.0))
        history = model.fit(X, y, epochs=2, batch_size=FIT_BATCH, verbose=0)
        return history.history, model.get_weights()

    alone = [train(seed) for seed in (1, 2)]
    together = [None, None]

    def run(i):
        together[i] = train(i + 1)

    run_threads(run, 2)
    for (h1, w1), (h2, w2) in zip(alone, together):
        assert h1 == h2
        for a, b in zip(w1, w2):
            np.testing.assert_array_equal(a, b)


@on_gpu
@pytest.mark.parametrize("sizes", [MNIST, NARROW], ids=["mnist", "narrow-fused"])
def test_inference_from_many_threads_equals_one_thread(sizes):
    """predict_proba, predict and evaluate from several threads at once on one CUDA model
    give exactly the single-threaded answers."""
    if kcuda().SIM:
        pytest.skip("the simulator's fake cuda module is not safe for host threads")
    import fastmlp

    X, y = fit_problem(sizes)
    model = fastmlp.MLP(list(sizes), device="cuda", seed=0)
    model.fit(X, y, epochs=1, batch_size=FIT_BATCH, verbose=0)
    expected = (model.predict_proba(X, batch_size=97), model.predict(X), model.evaluate(X, y))
    results = []

    def run(_):
        for _ in range(3):
            results.append((model.predict_proba(X, batch_size=97), model.predict(X),
                            model.evaluate(X, y)))

    run_threads(run, 4)
    assert len(results) == 12
    for proba, labels, scores in results:
        np.testing.assert_array_equal(proba, expected[0])
        np.testing.assert_array_equal(labels, expected[1])
        assert scores == expected[2]


@on_gpu
def test_no_performance_warning_under_w_error():
    """A fresh process with every warning an error builds, fits (narrow and MNIST-shaped,
    small batches: grids far under 128 blocks), predicts and evaluates on the GPU; and a
    launch of the user's own with a small grid still warns."""
    if kcuda().SIM:
        pytest.skip("the simulator does not warn about occupancy")
    script = textwrap.dedent(f"""
        import warnings
        import numpy as np
        import fastmlp
        from numba import cuda
        from numba.core.errors import NumbaPerformanceWarning
        rng = np.random.default_rng(0)
        for sizes in ({MNIST!r}, {NARROW!r}):
            X = rng.standard_normal((40, sizes[0])).astype(np.float32)
            y = rng.integers(0, sizes[-1], 40)
            model = fastmlp.MLP(list(sizes), device="cuda", seed=0,
                                optimizer=fastmlp.Adam(clip_norm=1.0))
            model.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
            model.predict(X); model.evaluate(X, y)

        @cuda.jit
        def user_kernel(a):
            a[cuda.grid(1)] = 1

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            user_kernel[1, 1](cuda.device_array(1))
        assert any(issubclass(w.category, NumbaPerformanceWarning) for w in caught), caught
        print("OK")
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-6000:]


# ---------------------------------------------------------------------------------------
# the fused kernels at their real launch configuration


def stack_buffers(kc, batch, sizes, acts, dtype):
    L = len(acts)
    A = [None] + [kc.empty((batch, s), dtype) for s in sizes[1:]]
    D = [None] + [kc.empty((batch, sizes[l + 1]), dtype) if acts[l] in codes.NEEDS_PREACTIVATION
                  else A[l + 1] for l in range(L)]
    delta = [kc.empty((batch, s), dtype) for s in sizes[1:]]
    return A, D, delta


FUSED_REAL = (100, 256, 129, 10)  # pitch 257: the widest the fused kernels take
FUSED_CONFIGS = {  # (dtype, batch) -> (rows per block, rows per thread, column threads)
    (np.float32, 1 << 14): (16, 4, 64),  # 4 row groups x 64 = 256 threads
    (np.float64, 1 << 14): (8, 4, 128),  # 8 rows: two (8, 257) float64 buffers in 48 KiB
}


@on_gpu
@pytest.mark.parametrize("batch", (1, 9, 37) if SMALL else (1, 128, 1000, (1 << 14) + 3),
                         ids=lambda b: f"B{b}")
@per_dtype
def test_fused_kernels_at_their_real_launch_configuration(kc, dtype, batch, monkeypatch):
    """mlp_forward / mlp_backward of a 100-256-129-10 network (tanh, gelu, identity) through
    the fused kernels at the GPU's own launch sizes (16 rows per block, 4 per thread, 256
    threads, pitch 257; 8 rows in float64; 1 row per block at batch 128) against float64
    NumPy; the fused kernels ran (one launch forward, L + 1 backward)."""
    sizes = (20, 24, 17, 5) if SMALL else FUSED_REAL
    acts = (codes.TANH, codes.GELU, codes.IDENTITY)
    dt = np.dtype(dtype).type
    R, RT, C = kc.fused._fused_config(dt, sizes, batch)
    if not SMALL:
        assert kc.fused._pitch(sizes) == 257
        if (dt, batch - 3) in FUSED_CONFIGS:
            assert (R, RT, C) == FUSED_CONFIGS[dt, batch - 3]
            assert (R // RT) * C == 256
        # enough blocks for every multiprocessor (batch 128: one row per block)
        assert -(-batch // R) >= kc.device._multiprocessors() or R == 1
    rng = dtype_rng(dtype, "fused real", batch)
    L = len(acts)
    Ws = [randn(rng, (sizes[l + 1], sizes[l]), dtype, 1 / np.sqrt(sizes[l])) for l in range(L)]
    bs = [randn(rng, (sizes[l + 1],), dtype, 0.1) for l in range(L)]
    X = randn(rng, (batch, sizes[0]), dtype)
    top = randn(rng, (batch, sizes[-1]), dtype, 1.0 / batch)
    rW, rb = [f64(w) for w in Ws], [f64(v) for v in bs]
    # the GPU
    launched = []
    real_run = kc.device._run
    monkeypatch.setattr(kc.device, "_run", lambda k, g, b, a: (launched.append((k, g, b)),
                                                               real_run(k, g, b, a)))
    A, D, delta = stack_buffers(kc, batch, sizes, acts, dtype)
    A[0] = D[0] = kc.to_device(X)
    kc.write(delta[-1], top)
    W, b = tuple(kc.to_device(w) for w in Ws), tuple(kc.to_device(v) for v in bs)
    dW = tuple(kc.empty(w.shape, dtype) for w in Ws)
    db = tuple(kc.empty(v.shape, dtype) for v in bs)
    kc.mlp_forward(tuple(A), tuple(D), W, b, acts)
    kc.mlp_backward(tuple(delta), tuple(A), tuple(D), W, dW, db, acts)
    threads = (R // RT) * C
    assert launched[0] == (kc.fused._fused_forward_kernel(dt, sizes, acts, True, R, RT, C),
                           -(-batch // R), threads)
    assert launched[1] == (kc.fused._fused_delta_kernel(dt, sizes, acts, R, RT, C),
                           -(-batch // R), threads)
    assert len(launched) == 2 + L
    # every layer against float64 NumPy from the GPU's own input to it
    u = UNIT[np.dtype(dtype)]
    for l in range(L):
        a_in = X if l == 0 else kc.to_host(A[l])
        scale = abs_prod(a_in, rW[l].T) + np.abs(rb[l])
        bound = 1.2 * gamma(sizes[l] + 1, dtype) * scale + 1e-30
        expected = np.empty((batch, sizes[l + 1]))
        ref.linear_forward(f64(a_in), rW[l], rb[l], acts[l], expected)
        assert_within(kc.to_host(A[l + 1]), expected, bound + 16 * u * np.abs(expected), f"A[{l + 1}]")
        if acts[l] in codes.NEEDS_PREACTIVATION:
            ref.linear_forward(f64(a_in), rW[l], rb[l], codes.IDENTITY, expected)
            assert_within(kc.to_host(D[l + 1]), expected, bound + 4 * u * np.abs(expected),
                          f"Z[{l + 1}]")
    for l in range(L - 1, 0, -1):
        d_in = kc.to_host(delta[l])
        expected = (f64(d_in) @ rW[l]) * ref_df(acts[l - 1], kc.to_host(D[l]))
        bound = gamma(sizes[l + 1], dtype) * abs_prod(d_in, np.abs(rW[l])) * 1.2 + \
            8 * u * np.abs(expected) + 1e-30
        assert_within(kc.to_host(delta[l - 1]), expected, bound, f"delta[{l - 1}]")
    for l in range(L):
        d, a_in = kc.to_host(delta[l]), (X if l == 0 else kc.to_host(A[l]))
        assert_within(kc.to_host(dW[l]), f64(d).T @ f64(a_in),
                      gamma(batch, dtype) * abs_prod(d.T, a_in) + 1e-300, f"dW[{l}]")
        assert_within(kc.to_host(db[l]), f64(d).sum(axis=0),
                      gamma(batch, dtype) * np.abs(f64(d)).sum(axis=0) + 1e-300, f"db[{l}]")


def ref_df(act, D):
    """f'(D) in float64 by the reference (D: the stored activation, or Z for gelu)."""
    out = np.ones(D.shape)
    ref.activation_backward(f64(D), act, out)
    return out
