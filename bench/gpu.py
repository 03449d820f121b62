"""The GPU benchmark: one command on the first machine with a GPU.

    python bench/gpu.py            # the gpu tests, then the table (a GPU, numba-cuda, PyTorch for CUDA)
    python bench/gpu.py --smoke    # tiny sizes under numba-cuda's simulator (CI: no GPU needed)

Needs only what the ``cuda`` (or ``cuda12`` / ``cuda13``) extra installs, and PyTorch built
for CUDA for the peer columns (they print "-" without it); no internet (the data are
random, of MNIST's shape).

1. Runs the tests marked ``gpu`` (``pytest -m gpu tests/test_cuda_gpu.py``) and stops on a
   failure: fit on CUDA equal to the CPU's, the fused kernels at their real launch sizes,
   clip_norm without host reads, threads, no performance warnings, kernels at real sizes.
2. Prints one table, every contender on the same GPU, float32:
   - MNIST-shaped epoch (60000 x 784, 784-256-128-10, ReLU, softmax cross-entropy, plain
     SGD): fastmlp ``fit`` vs PyTorch eager (data on the GPU, batches indexed there, as
     its users write it) and PyTorch with the whole step captured in a CUDA graph (replayed
     per full batch); seconds per epoch, and fastmlp's speed-up over eager (target >= 5x on
     an H100).
   - a small network's step (32-64-64-64-2, batch 64): microseconds per step, where the
     host's launch time is all there is.
   - narrow networks as tiny-cuda-nn measures them (widths 64 and 128, MSE, batch 2^14 to
     2^18): samples per second; fastmlp with its fused kernels and with the per-layer GEMMs
     (FUSED_MAX_WIDTH = 0), which settles the settings ``kernels.cuda.fused.FUSED_MAX_WIDTH``
     and ``FUSED_MAX_INPUT`` for this GPU.
   - float32 GEMM 4096 x 4096 x 4096: fastmlp's tiled kernel vs ``torch.matmul`` (cuBLAS),
     TFLOP/s and the fraction (target >= 50 %).

``--smoke`` re-runs this script with NUMBA_ENABLE_CUDASIM=1 set before numba is imported,
at tiny sizes, without the gpu tests and without the PyTorch-CUDA columns: it checks that
the benchmark runs (tests/test_bench_gpu_smoke.py), it measures nothing.

Capturing fastmlp's step in a CUDA graph (not done yet)
-------------------------------------------------------
numba-cuda >= 0.29 can launch kernels into a ``cuda.core`` graph builder (numba-cuda PR
#836). A training step of fastmlp is a fixed sequence of launches (``kernels.cuda.device._run``
is the one place where they happen, so a builder can be swapped in there), on buffers that
are fixed per batch size already (the model's ``_Buffers`` and their views, the per-thread
scratch and partial-sum arrays, the device loss and metric totals, the clip_norm scalars),
and it reads nothing back to the host. What a capture still needs, replayed once per step:
(1) the batch's row indices from a fixed device buffer (fit slices ``order[start:stop]``
per step: copy the slice into a fixed (batch,) buffer inside the graph, or pass ``start``
as a device scalar to ``gather_rows``); (2) the host scalars that change between steps as
device scalars: Adam's and LAMB's step count (bias correction), a learning rate changed
by a schedule, the dropout seed drawn per step; (3) one graph per batch size (the last,
shorter batch of an epoch has its own, or runs uncaptured); (4) the launch configurations
fixed at capture (they are: grids depend on shapes only). The host time per step would then
be one graph launch instead of a dozen kernel launches (see the "small network" row).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

FULL = dict(
    mnist_n=60_000, mnist_batches=(128, 512), repeat=3,
    small=(32, 64, 64, 64, 2), small_batch=64, small_steps=400,
    narrow=((64, 64, 64, 64, 16), (64, 128, 128, 128, 16)), narrow_batches=(1 << 14, 1 << 16, 1 << 18),
    narrow_steps=4, gemm=4096, warmup=1,
)
SMOKE = dict(
    mnist_n=24, mnist_batches=(16,), repeat=1, warmup=0, mnist_sizes=(10, 8, 4),
    small=(4, 8, 2), small_batch=8, small_steps=2,
    narrow=((4, 8, 8, 2),), narrow_batches=(16,),
    narrow_steps=1, gemm=16,
)
MNIST_SIZES = (784, 256, 128, 10)


def _run_gpu_tests():
    """pytest -m gpu on tests/test_cuda_gpu.py; returns its exit status."""
    print("== the gpu tests: python -m pytest -m gpu tests/test_cuda_gpu.py", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs",
                           "-p", "no:cacheprovider", "-p", "no:xdist", "tests/test_cuda_gpu.py"],
                          cwd=ROOT)
    return proc.returncode


def _torch_cuda():
    """torch when it is installed with a usable CUDA device, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _median_time(fn, repeat, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ---------------------------------------------------------------------------------------
# fastmlp


def _fastmlp_fit(sizes, X, y, batch, loss, repeat, per_layer=False, warmup=1):
    """Seconds per epoch of fastmlp's fit on CUDA (warm: kernels compiled, data uploaded
    in the first, untimed epoch; every timed epoch uploads again, as fit does)."""
    import fastmlp
    from fastmlp.kernels.cuda import fused

    activation = "relu"
    saved = fused.FUSED_MAX_WIDTH
    if per_layer:
        fused.FUSED_MAX_WIDTH = 0
    try:
        model = fastmlp.MLP(list(sizes), activation=activation, loss=loss, device="cuda",
                            optimizer=fastmlp.SGD(lr=0.01), seed=0)
        return _median_time(lambda: model.fit(X, y, epochs=1, batch_size=batch, verbose=0),
                            repeat, warmup)
    finally:
        fused.FUSED_MAX_WIDTH = saved


def _fastmlp_step_time(sizes, batch, steps, warmup=1):
    """Microseconds per step of fit for a small network: the median gap between the starts
    of consecutive steps (a batch hook notes them), so host time per step is what counts."""
    import fastmlp
    from cuda_host import _StepTimer

    rng = np.random.default_rng(0)
    X = rng.random((batch * steps, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch * steps)
    model = fastmlp.MLP(list(sizes), device="cuda", optimizer=fastmlp.SGD(lr=0.01), seed=0)
    if warmup:
        model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
    timer = _StepTimer()
    model.fit(X, y, epochs=1, batch_size=batch, verbose=0, callbacks=[timer])
    return float(np.median(timer.gaps)) * 1e6


def _fastmlp_gemm(n, repeat, warmup=1):
    from fastmlp.kernels import cuda as kc

    rng = np.random.default_rng(0)
    A = kc.to_device(rng.random((n, n), dtype=np.float32))
    B = kc.to_device(rng.random((n, n), dtype=np.float32))
    C = kc.empty((n, n), np.float32)

    def run():
        for _ in range(5):
            kc.matmul(A, B, C)
        kc.synchronize()

    return _median_time(run, repeat, warmup) / 5


# ---------------------------------------------------------------------------------------
# PyTorch on the same GPU


def _torch_model(torch, sizes):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).cuda()


def _torch_fit(torch, sizes, X, y, batch, loss, repeat, graphs):
    """Seconds per epoch of PyTorch on the GPU: eager, or with one CUDA graph of the whole
    step replayed per full batch (the last, shorter batch eager)."""
    torch.manual_seed(0)
    Xd = torch.as_tensor(X, device="cuda")
    yd = torch.as_tensor(y, device="cuda")
    n = X.shape[0]
    model = _torch_model(torch, sizes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = torch.nn.CrossEntropyLoss() if loss == "cross_entropy" else torch.nn.MSELoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=False)
        out = criterion(model(xb), yb)
        out.backward()
        opt.step()
        return out

    replay = None
    if graphs:
        static_x, static_y = Xd[:batch].clone(), yd[:batch].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step(static_x, static_y)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step(static_x, static_y)

        def replay(idx):
            static_x.copy_(Xd[idx])
            static_y.copy_(yd[idx])
            graph.replay()

    def epoch():
        order = torch.randperm(n, device="cuda")
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            if replay is not None and idx.shape[0] == batch:
                replay(idx)
            else:
                step(Xd[idx], yd[idx])
        torch.cuda.synchronize()

    return _median_time(epoch, repeat)


def _torch_step_time(torch, sizes, batch, steps):
    rng = np.random.default_rng(0)
    X = rng.random((batch * steps, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch * steps)
    return _torch_fit(torch, sizes, X, y, batch, "cross_entropy", 3, False) / steps * 1e6


def _torch_gemm(torch, n, repeat):
    a = torch.rand(n, n, device="cuda")
    b = torch.rand(n, n, device="cuda")
    c = torch.empty(n, n, device="cuda")

    def run():
        for _ in range(5):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()

    return _median_time(run, repeat) / 5


# ---------------------------------------------------------------------------------------
# the table


def _fmt(value, unit):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "us":
        return f"{value:.0f} us"
    if unit == "samples/s":
        return f"{value / 1e6:.2f} M/s" if value >= 1e5 else f"{value:.0f} /s"
    if unit == "TFLOP/s":
        return f"{value:.2f} TFLOP/s" if value >= 0.01 else f"{value * 1e3:.2f} GFLOP/s"
    return f"{value:.3g}"


def _ratio(ours, theirs, higher_is_better):
    if ours is None or theirs is None or not ours or not theirs:
        return "-"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}x"


def measure(cfg, torch, progress=print):
    """The table's rows: (case, unit, fastmlp, fastmlp per-layer, torch eager, torch graph,
    higher_is_better)."""
    rows = []
    rng = np.random.default_rng(0)
    sizes = cfg.get("mnist_sizes", MNIST_SIZES)
    X = rng.random((cfg["mnist_n"], sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], cfg["mnist_n"])
    for batch in cfg["mnist_batches"]:
        progress(f"   MNIST-shaped epoch, batch {batch}")
        ours = _fastmlp_fit(sizes, X, y, batch, "cross_entropy", cfg["repeat"],
                            warmup=cfg["warmup"])
        eager = graph = None
        if torch is not None:
            eager = _torch_fit(torch, sizes, X, y, batch, "cross_entropy", cfg["repeat"], False)
            graph = _torch_fit(torch, sizes, X, y, batch, "cross_entropy", cfg["repeat"], True)
        rows.append((f"epoch {'-'.join(map(str, sizes))} n={cfg['mnist_n']} batch {batch}",
                     "s", ours, None, eager, graph, False))
    progress(f"   small network step, batch {cfg['small_batch']}")
    ours = _fastmlp_step_time(cfg["small"], cfg["small_batch"], cfg["small_steps"],
                              cfg["warmup"])
    eager = None if torch is None else _torch_step_time(torch, cfg["small"], cfg["small_batch"],
                                                        cfg["small_steps"])
    rows.append((f"step {'-'.join(map(str, cfg['small']))} batch {cfg['small_batch']}", "us",
                 ours, None, eager, None, False))
    for net in cfg["narrow"]:
        for batch in cfg["narrow_batches"]:
            progress(f"   narrow {net}, batch {batch}")
            n = batch * cfg["narrow_steps"]
            Xn = rng.random((n, net[0]), dtype=np.float32)
            Yn = rng.random((n, net[-1]), dtype=np.float32)
            speeds = [n / _fastmlp_fit(net, Xn, Yn, batch, "mse", cfg["repeat"], per_layer,
                                       cfg["warmup"])
                      for per_layer in (False, True)]
            eager = graph = None
            if torch is not None:
                eager = n / _torch_fit(torch, net, Xn, Yn, batch, "mse", cfg["repeat"], False)
                graph = n / _torch_fit(torch, net, Xn, Yn, batch, "mse", cfg["repeat"], True)
            rows.append((f"train {'-'.join(map(str, net))} batch 2^{batch.bit_length() - 1}",
                         "samples/s", speeds[0], speeds[1], eager, graph, True))
    n = cfg["gemm"]
    progress(f"   GEMM {n}^3")
    flop = 2.0 * n**3
    ours = flop / _fastmlp_gemm(n, cfg["repeat"], cfg["warmup"]) / 1e12
    theirs = None if torch is None else flop / _torch_gemm(torch, n, cfg["repeat"]) / 1e12
    rows.append((f"float32 GEMM {n}x{n}x{n}", "TFLOP/s", ours, None, theirs, None, True))
    return rows


def format_table(rows, device):
    head = ("case", "fastmlp", "fastmlp per-layer", "PyTorch eager", "PyTorch graph",
            "fastmlp vs eager")
    body = [(case, _fmt(ours, unit), _fmt(loop, unit), _fmt(eager, unit), _fmt(graph, unit),
             _ratio(ours, eager, higher))
            for case, unit, ours, loop, eager, graph, higher in rows]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [f"fastmlp on {device}, float32 (GEMM column 'PyTorch eager' = torch.matmul, cuBLAS;"
           " the ratio there is the fraction of cuBLAS)",
           line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    return "\n".join(out)


def _device_name(kc):
    if kc.SIM:
        return "the CUDA simulator (smoke run: nothing measured)"
    try:
        return kc.cuda.get_current_device().name.decode() if isinstance(
            kc.cuda.get_current_device().name, bytes) else str(kc.cuda.get_current_device().name)
    except Exception:  # noqa: BLE001 - informative only
        return "a CUDA GPU"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes under the CUDA simulator (no GPU, no gpu tests)")
    parser.add_argument("--skip-tests", action="store_true",
                        help="do not run the gpu tests first")
    args = parser.parse_args(argv)
    if args.smoke and os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() != "1":
        # the simulator must be on before numba is imported: run again with it
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv],
                              env=env).returncode
    from fastmlp.kernels import cuda as kc

    if not args.smoke:
        reason = kc.why_unavailable()
        if kc.SIM:
            reason = "NUMBA_ENABLE_CUDASIM=1 is set (use --smoke for the simulator)"
        if reason is not None:
            print(f"no GPU to benchmark: {reason}", file=sys.stderr)
            return 2
        if not args.skip_tests:
            status = _run_gpu_tests()
            if status != 0:
                print(f"the gpu tests failed (exit {status}): no benchmark", file=sys.stderr)
                return status
    torch = None if args.smoke else _torch_cuda()
    if torch is None:
        print("PyTorch with CUDA: not available here, its columns are skipped", flush=True)
    print("== the benchmark", flush=True)
    rows = measure(SMOKE if args.smoke else FULL, torch, lambda m: print(m, flush=True))
    print(format_table(rows, _device_name(kc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
