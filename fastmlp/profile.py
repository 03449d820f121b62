"""Where one training step's time goes: ``model.profile(X, y, steps=50)``.

A training step of a plain stack of Dense layers is, kernel by kernel (lecture notation,
layer l = 1..L, weights W_l of shape (out, in)):

    gather      A_0 = X[idx], T = y[idx]
    forward     Z_l = A_{l-1} W_l^T            (the product: 2 B in out FLOP)
                A_l = f(Z_l + b_l)             (the epilogue: bias and activation)
    loss        loss, delta_L = d loss / d Z_L
    backward    dW_l = delta_l^T A_{l-1}, db_l = sum delta_l   (2 B in out FLOP)
                delta_{l-1} = delta_l W_l      (2 B in out FLOP; not for l = 1)
                delta_{l-1} *= f'(A_{l-1})     (the epilogue)
    update      theta -= lr grad               (one optimizer call over all parameters)

`profile` runs each of these as its own kernel call (the contract's `gather_rows`, `matmul`,
`linear_forward`, `activation_backward`, `weight_grad`, the loss and the optimizer), `steps`
times on mini-batches of X, y, and times every call (the median over the steps). `fit` runs
the forward and backward layer loops as one compiled call each (`mlp_forward` /
`mlp_backward`), so the forward epilogue is not a call of its own there: its time here is
that of `linear_forward` (product and epilogue) minus that of the product alone. The step
as `fit` runs it is timed too, and its FLOP at the machine's GEMM rate in the model's dtype
(a NumPy float32 or float64 matmul, or the rate passed in) give the step's fraction of the
physical limit.

Models that are not a plain Dense stack (Dropout, BatchNorm, graphs) are profiled by phase:
gather, forward, loss, backward, update. The model's weights and optimizer state are put
back afterwards: profiling does not train.
"""

import time

import numpy as np

from ._validation import check_float, check_int
from .kernels.codes import ACTIVATIONS, IDENTITY, NEEDS_PREACTIVATION
from .sparse import issparse

#: activation code -> name
_NAME = {code: name for name, code in ACTIVATIONS.items()}

#: size of the square float32 NumPy matmul that measures the machine's sgemm rate
GEMM_SIZE = 1024


def sgemm_gflops(n=GEMM_SIZE, repeat=3, dtype=np.float32):
    """The machine's matrix-product rate in GFLOP/s, float32 (sgemm) unless `dtype` says
    float64 (dgemm): best of `repeat` n x n NumPy matmuls."""
    a = np.random.default_rng(0).random((n, n)).astype(dtype)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)  # wake the BLAS threads
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.matmul(a, a, out=c)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _blas_info(model):
    """What BLAS the CPU backend's products run on: OpenBLAS's kernel set, and a sentence
    when an environment variable holds it to slower kernels than the CPU can run."""
    if model.device != "cpu":
        return {}
    from .kernels import blas

    return {"blas_core": blas.openblas_core(), "blas_advice": blas.slow_core_advice()}


def step_flop(sizes, batch):
    """FLOP of one step of a Dense stack: forward and weight gradient of every layer, input
    gradient of every layer but the first (element-wise work is not counted)."""
    products = [n_in * n_out for n_in, n_out in zip(sizes, sizes[1:])]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


def _kernel_plan(model, v, k, gathers):
    """[(name, flop, call, minus)] of one step of a plain Dense stack, in the order fit runs
    them; `minus` names the row whose time is subtracted from this one's (None: none)."""
    W, b, dW, db, acts = model.W, model.b, model.dW, model.db, model._act
    B, L = v.n, len(W)
    plan = list(gathers)
    for l in range(L):
        n_out, n_in = W[l].shape
        flop = 2 * B * n_in * n_out
        act = acts[l]
        Z = v.D[l + 1]  # the pre-activation where f' needs it, else A_l itself
        product = f"forward {l + 1}: Z = A W^T ({B}x{n_in} @ {n_in}x{n_out})"
        plan.append((product, flop, lambda l=l, Z=Z: k.matmul(v.A[l], W[l], Z, False, True), None))
        if act in NEEDS_PREACTIVATION:
            plan.append((f"forward {l + 1}: Z += b", 0,
                         lambda l=l, Z=Z: k.linear_forward(v.A[l], W[l], b[l], IDENTITY, Z), product))
            plan.append((f"forward {l + 1}: A = {_NAME[act]}(Z)", 0,
                         lambda l=l, Z=Z, act=act: k.activate(Z, act, v.A[l + 1]), None))
        else:
            plan.append((f"forward {l + 1}: A = {_NAME[act]}(Z + b)", 0,
                         lambda l=l, act=act: k.linear_forward(v.A[l], W[l], b[l], act, v.A[l + 1]),
                         product))
    plan.append((f"loss: {model.loss} and d loss / d Z", 0, lambda: model._loss_and_grad(v), None))
    for l in reversed(range(L)):
        n_out, n_in = W[l].shape
        flop = 2 * B * n_in * n_out
        plan.append((f"backward {l + 1}: dW = delta^T A, db = sum delta", flop,
                     lambda l=l: k.weight_grad(v.delta[l], v.A[l], dW[l], db[l]), None))
        if l > 0:
            plan.append((f"backward {l + 1}: delta = delta W ({B}x{n_out} @ {n_out}x{n_in})", flop,
                         lambda l=l: k.matmul(v.delta[l], W[l], v.delta[l - 1], False, False), None))
            plan.append((f"backward {l + 1}: delta *= {_NAME[acts[l - 1]]}'", 0,
                         lambda l=l: k.activation_backward(v.D[l], acts[l - 1], v.delta[l - 1]), None))
    plan.append((f"update: {type(model.optimizer).__name__}", 0, model._update, None))
    return plan


def _phase_plan(model, v, gathers):
    """[(name, flop, call, minus)] by phase, for models that are not a plain Dense stack."""
    return list(gathers) + [
        ("forward (all layers)", 0, lambda: model._forward(v, True), None),
        (f"loss: {model.loss} and d loss / d output", 0, lambda: model._loss_and_grad(v), None),
        ("backward (all layers)", 0, lambda: model._backward(v), None),
        (f"update: {type(model.optimizer).__name__}", 0, model._update, None),
    ]


def profile_step(model, X, y, steps=50, batch_size=32, gemm_gflops=None, verbose=1):
    """model.profile's work (see fastmlp.profile's docstring); returns the rows."""
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    if gemm_gflops is not None:
        gemm_gflops = check_float(gemm_gflops, "gemm_gflops", low=0, low_open=True)
    Xs, T, labels = model._check_fit_data(X, y)
    if issparse(Xs[0]):
        raise TypeError("profile needs dense X (a NumPy array); got a sparse matrix. "
                        "Profile on X.toarray() of a few thousand rows.")
    n = Xs[0].shape[0]
    B = min(batch_size, n)
    k = model._kernels
    sync = k.synchronize
    rng = np.random.default_rng(0)  # the batches' order: the model's own generator is left alone
    Xk = tuple(k.asarray(X_j) for X_j in Xs)
    T2 = k.asarray(T if T.ndim == 2 else T.reshape(-1, 1))
    orders = [k.asarray(rng.choice(n, B, replace=False)) for _ in range(4)]
    dense_stack = getattr(model, "_dense_only", False)
    if gemm_gflops is None and dense_stack:
        gemm_gflops = sgemm_gflops(dtype=model.dtype)  # dgemm's rate for a float64 model

    with model._guard.training("profile"), model._guard.step_lock:
        snapshot = model._snapshot()
        rng_state = model._rng.bit_generator.state  # dropout masks draw from it
        try:
            v = model._buffers_for(B, T).views(B)
            current = {"idx": orders[0]}
            gathers = [(f"gather X rows ({B}x{X_j.shape[1]})" if len(Xk) == 1 else
                        f"gather {model._input_names[j]} rows", 0,
                        lambda X_j=X_j, Xv=Xv: k.gather_rows(X_j, current["idx"], Xv), None)
                       for j, (X_j, Xv) in enumerate(zip(Xk, v.X))]
            gathers.append((f"gather y rows ({B})", 0,
                            lambda: k.gather_rows(T2, current["idx"], v.T2d), None))
            plan = _kernel_plan(model, v, k, gathers) if dense_stack else _phase_plan(model, v, gathers)
            times = {name: [] for name, *_ in plan}
            step_times = []
            for s in range(steps + 2):  # 2 steps warm up (compilation, caches)
                current["idx"] = orders[s % len(orders)]
                for name, _, call, _ in plan:
                    sync()
                    t = time.perf_counter()
                    call()
                    sync()
                    if s >= 2:
                        times[name].append(time.perf_counter() - t)
                # the step as fit runs it (fused layer loops), on the same batch
                sync()
                t = time.perf_counter()
                for _, _, gather, _ in gathers:
                    gather()
                model._step(v)
                sync()
                if s >= 2:
                    step_times.append(time.perf_counter() - t)
        finally:
            model._restore(snapshot)
            model._rng.bit_generator.state = rng_state

    median = {name: float(np.median(t)) for name, t in times.items()}
    rows = []
    for name, flop, _, minus in plan:
        # a fused epilogue: the fused call's time minus that of its product alone
        t = median[name] if minus is None else max(median[name] - median[minus], 0.0)
        rows.append({"kernel": name, "kind": "kernel", "time_s": t, "flop": flop,
                     "gflops": flop / t / 1e9 if flop and t > 0 else None})
    total = sum(r["time_s"] for r in rows)
    for r in rows:
        r["share"] = r["time_s"] / total if total > 0 else 1.0 / len(rows)
    flop = step_flop(model.sizes, B) if dense_stack else None
    step_t = float(np.median(step_times))
    limit_t = flop / (gemm_gflops * 1e9) if flop else None
    rows.append({"kernel": "sum of the kernels above", "kind": "sum", "time_s": total,
                 "flop": flop, "gflops": flop / total / 1e9 if flop and total > 0 else None,
                 "share": 1.0})
    rows.append({"kernel": "step as fit runs it", "kind": "step", "time_s": step_t, "flop": flop,
                 "gflops": flop / step_t / 1e9 if flop and step_t > 0 else None,
                 "share": None,
                 "limit_s": limit_t, "gemm_gflops": gemm_gflops,
                 "dtype": np.dtype(model.dtype).name, **_blas_info(model),
                 "fraction_of_limit": limit_t / step_t if limit_t and step_t > 0 else None})
    if verbose:
        print(format_profile(rows, B, steps))
    return rows


def _fmt_t(t):
    return f"{t * 1e6:9.1f} µs" if t < 1e-3 else f"{t * 1e3:9.3f} ms"


def _limit_sentence(fraction, gemm):
    """What the step's fraction of the limit says. Above 1 the limit itself is wrong: the
    GEMM rate was measured while other work held the cores (a step cannot beat the products
    it is made of), so the figure is not shown as a share of the machine."""
    if fraction <= 1.0:
        return f"the step runs at {fraction:.0%} of the machine's limit"
    return (f"the step ran faster than that ({fraction:.1f}x), so the {gemm} rate was measured "
            f"while the machine was busy; profile a quiet machine, or pass gemm_gflops= "
            f"(the rate measured when it was quiet)")


def format_profile(rows, batch, steps):
    """The profile as a text table."""
    width = max(len(r["kernel"]) for r in rows)
    lines = [f"one training step, batch {batch}: median of {steps} steps per kernel call",
             f"{'kernel':<{width}}  {'time':>12}  {'GFLOP/s':>8}  {'share':>6}"]
    for r in rows:
        if r["kind"] == "sum":
            lines.append("-" * (width + 34))
        g = f"{r['gflops']:8.1f}" if r["gflops"] else " " * 8
        share = f"{r['share']:6.1%}" if r["share"] is not None else " " * 6
        lines.append(f"{r['kernel']:<{width}}  {_fmt_t(r['time_s']):>12}  {g}  {share}")
    step = rows[-1]
    if step.get("fraction_of_limit"):
        gemm = "dgemm" if step.get("dtype") == "float64" else "sgemm"
        lines.append(f"the step's {step['flop'] / 1e6:.2f} MFLOP at {step['gemm_gflops']:.0f} "
                     f"GFLOP/s ({gemm}) take {_fmt_t(step['limit_s']).strip()}: "
                     + _limit_sentence(step["fraction_of_limit"], gemm))
    if step.get("blas_core"):
        lines.append(f"BLAS: OpenBLAS, {step['blas_core']} kernels")
    if step.get("blas_advice"):
        lines.append(f"note: {step['blas_advice']}")
    return "\n".join(lines)
