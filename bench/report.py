"""Turn the suite's pytest-benchmark JSON into the README's Markdown tables.

    python -m pytest bench/ --benchmark-json=out.json
    python bench/report.py out.json > bench/RESULTS.md

Several files may be given (e.g. a full run, then the epoch group re-run when the machine was
quieter): a benchmark in a later file replaces the one of the same name in an earlier file,
and the machine description is the last file's. Ratios stay within one run as long as a
whole group is re-run (``pytest bench/test_bench_epoch.py``).

Prints: the machine; the epoch table (per batch size fastmlp / NumPy / PyTorch, the ratios,
fastmlp's GFLOP/s and its fraction of the GEMM ceiling); the kernel tables; cold start;
predict throughput; fastmlp against onnxruntime (deploy); memory; the MNIST recipe; and the targets, each met or not met.
Columns of a contender that was not measured (PyTorch not installed) are left out.
Standard library only. Times are the fastest round of each benchmark.
"""

import argparse
import json
import sys

NAMES = {"fastmlp": "fastmlp (cpu)", "numpy": "hand-written NumPy", "torch": "PyTorch CPU",
         "jax": "JAX jit (CPU)"}
SHORT = {"fastmlp": "fastmlp", "numpy": "NumPy", "torch": "PyTorch", "jax": "JAX"}
MiB = 2**20

#: (batch, {peer: minimum speed-up over it}, minimum fraction of the sgemm limit)
EPOCH_TARGETS = [(32, {"jax": 1.3, "torch": 2.0}, 0.60), (128, {"jax": 1.3, "torch": 1.5}, 0.80),
                 (512, {"jax": 1.3, "torch": 1.13}, 0.85)]
#: the small network: minimum speed-up per step over JAX; the wide one: fraction of the limit
SMALL_TARGET_VS_JAX = 2.0
WIDE_TARGET_FRACTION = 0.85
COLD_START_TARGET_S = 3.0
#: RSS may move by a few pages; more than this from epoch 1 to epoch 5 counts as growth
GROWTH_TOLERANCE = 1 * MiB
MNIST_TARGET = (0.98, 10.0)


def fmt_time(seconds):
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def fmt_mib(n):
    return f"{n / MiB:.1f} MiB"


def met(ok):
    return "met" if ok else "**not met**"


def table(header, rows, align=None):
    align = align or ["---:"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Results:
    def __init__(self, doc):
        self.doc = doc
        self.benchmarks = doc.get("benchmarks", [])

    def of_kind(self, kind):
        return [b for b in self.benchmarks if b.get("extra_info", {}).get("kind") == kind]

    @staticmethod
    def t(b):
        return None if b is None else b["stats"]["min"]

    def epoch_rounds(self, batch, contender):
        """{round: time} of one contender's epochs at this batch size (fastest of each entry)."""
        out = {}
        for i, b in enumerate(self.of_kind("epoch")):
            info = b["extra_info"]
            if info["batch"] == batch and info["contender"] == contender:
                out[info.get("round", -1 - i)] = self.t(b)
        return out

    def scale_rounds(self, kind, contender):
        """{round: time} of one contender in a scale group ('small network', 'wide network')."""
        return {b["extra_info"].get("round", -1 - i): self.t(b)
                for i, b in enumerate(self.of_kind(kind)) if b["extra_info"]["contender"] == contender}

    @staticmethod
    def fastest(rounds):
        """The best time of {round: time}, or None."""
        return min(rounds.values()) if rounds else None

    def epoch_time(self, batch, contender):
        """The fastest epoch of a contender, or None."""
        return self.fastest(self.epoch_rounds(batch, contender))

    def scale_time(self, kind, contender):
        return self.fastest(self.scale_rounds(kind, contender))

    def ratios(self, rounds_of, key, contender):
        """(contender's best time / fastmlp's best time, the median over interleaved rounds of
        contender's time / fastmlp's time in that round), each None when not measured.
        rounds_of: epoch_rounds (key: the batch size) or scale_rounds (key: the group)."""
        other, fm = rounds_of(key, contender), rounds_of(key, "fastmlp")
        best_other, best_fm = self.fastest(other), self.fastest(fm)
        ratio = best_other / best_fm if best_other and best_fm else None
        paired = sorted(other[r] / fm[r] for r in other if r in fm and r >= 0)
        if not paired:
            return ratio, None
        mid = len(paired) // 2
        return ratio, paired[mid] if len(paired) % 2 else (paired[mid - 1] + paired[mid]) / 2

    def scale_fraction(self, kind, contender="fastmlp"):
        """The fraction of the sgemm limit a contender reached in a scale group."""
        t, c = self.scale_time(kind, contender), self.ceiling()
        runs = self.of_kind(kind)
        return runs[0]["extra_info"]["flop"] / t / 1e9 / c if t and c and runs else None

    def epoch_info(self):
        return self.of_kind("epoch")[0]["extra_info"]

    def epoch_gflops(self, batch, contender):
        t = self.epoch_time(batch, contender)
        return self.epoch_info()["flop"] / t / 1e9 if t else None

    def fraction_of_ceiling(self, batch, contender):
        g, c = self.epoch_gflops(batch, contender), self.ceiling()
        return g / c if g and c else None

    def epoch_batches(self):
        return sorted({b["extra_info"]["batch"] for b in self.of_kind("epoch")})

    def contenders(self, kind):
        present = {b["extra_info"]["contender"] for b in self.of_kind(kind)}
        return [c for c in NAMES if c in present]

    def ceiling(self):
        """The best float32 GEMM rate seen in the run (ceiling group, re-measured per epoch group)."""
        values = [b["extra_info"].get("gflops") for b in self.of_kind("ceiling")]
        for kind in ("epoch", "small network", "wide network"):
            values += [b["extra_info"].get("ceiling_gflops") for b in self.of_kind(kind)]
        values = [v for v in values if v]
        return max(values) if values else None


def machine_section(res):
    info = res.doc.get("machine_info", {}).get("fastmlp_bench", {})
    if not info:
        return "Machine: unknown (JSON not written by the bench suite)."
    torch = f"PyTorch {info['torch']} ({info['torch_threads']} threads)" if info.get("torch") else "PyTorch not installed"
    flags = f" ({info['cpu_flags']})" if info.get("cpu_flags") else ""
    text = (f"Machine: {info['cpu_model']}{flags}, {info['cores']} cores; Python {info['python']}, "
            f"NumPy {info['numpy']} ({info['blas']}), Numba {info['numba']}, {torch}, "
            f"{'JAX ' + info['jax'] if info.get('jax') else 'JAX not installed'}; "
            f"measured {info['date']}. Each time is the fastest round of its benchmark.")
    if info.get("smoke"):
        text = ("**Smoke run** (FASTMLP_BENCH_SMOKE=1: tiny data, one round): the numbers "
                "below mean nothing.\n\n" + text)
    ceiling = res.ceiling()
    if ceiling:
        runs = res.of_kind("ceiling")
        n = runs[0]["extra_info"]["n"] if runs else "2048"
        text += f"\n\nfloat32 GEMM ceiling (NumPy {n} x {n} matmul): **{ceiling:.0f} GFLOP/s**"
        other = [b["extra_info"].get("gflops") for b in res.of_kind("gemm torch")]
        if other and other[0]:
            text += f" (PyTorch's own torch.mm, same shape: {other[0]:.0f} GFLOP/s)"
        text += "."
    return text


def epoch_section(res):
    batches = res.epoch_batches()
    if not batches:
        return None
    contenders = res.contenders("epoch")
    info = res.epoch_info()
    rounds = max(len(res.epoch_rounds(b, c)) for b in batches for c in contenders)
    header = ["batch"] + [NAMES[c] for c in contenders]
    others = [c for c in ("jax", "torch", "numpy") if c in contenders]
    header += [f"fastmlp vs {SHORT[c]}" for c in others]
    header += ["fastmlp GFLOP/s", "% of ceiling"]
    rows = []
    for batch in batches:
        row = [batch]
        for c in contenders:
            t, g = res.epoch_time(batch, c), res.epoch_gflops(batch, c)
            row.append(f"{fmt_time(t)} ({g:.0f} GFLOP/s)" if t else "-")
        for c in others:
            r, p = res.ratios(res.epoch_rounds, batch, c)
            row.append(f"{fmt_ratio(r)} ({fmt_ratio(p)})" if r and p else fmt_ratio(r))
        g, f = res.epoch_gflops(batch, "fastmlp"), res.fraction_of_ceiling(batch, "fastmlp")
        row.append(f"{g:.0f}" if g else "-")
        row.append(f"{f:.0%}" if f else "-")
        rows.append(row)
    title = (f"### One training epoch\n\n{info['samples']} x 784 MNIST-shaped float32 data, "
             f"784-256-128-10 ReLU, softmax cross-entropy, plain SGD; fastest of {rounds} "
             f"interleaved rounds. GFLOP/s counts the products a step really computes "
             f"(forward and weight gradient of every layer, input gradient of every layer "
             f"but the first): {info['flop'] / info['samples'] / 1e6:.3f} MFLOP per sample, "
             f"{info['flop'] / 1e9:.1f} GFLOP per epoch. \"fastmlp vs X\" is X's time / fastmlp's time "
             f"(above 1: fastmlp is faster): fastest / fastest, and in brackets the median of "
             f"the ratios within each round.")
    return title + "\n\n" + table(header, rows)


def scale_section(res):
    """Small (overhead-bound) and wide (GEMM-bound) networks: time per step, ratios, limit."""
    rows = []
    peers = [c for c in ("jax", "torch") if any(c in res.contenders(k) for k in ("small network", "wide network"))]
    rounds = 0
    for kind in ("small network", "wide network"):
        runs = res.of_kind(kind)
        if not runs:
            continue
        i = runs[0]["extra_info"]
        steps = i["steps"]
        rounds = max(rounds, len(res.scale_rounds(kind, "fastmlp")))
        row = [kind, "-".join(map(str, i["sizes"])), i["batch"]]
        for c in ["fastmlp"] + peers:
            t = res.scale_time(kind, c)
            row.append(fmt_time(t / steps) if t else "-")
        for c in peers:
            r, p = res.ratios(res.scale_rounds, kind, c)
            row.append(f"{fmt_ratio(r)} ({fmt_ratio(p)})" if r and p else fmt_ratio(r))
        c = res.ceiling()
        row.append(fmt_time(i["flop"] / steps / 1e9 / c) if c else "-")
        f = res.scale_fraction(kind)
        row.append(f"{f:.0%}" if f else "-")
        rows.append(row)
    if not rows:
        return None
    header = ["network", "sizes", "batch", "fastmlp per step"] + [f"{SHORT[c]} per step" for c in peers]
    header += [f"fastmlp vs {SHORT[c]}" for c in peers] + ["limit per step", "% of limit"]
    return ("### Small and wide networks\n\nPlain SGD, softmax cross-entropy, ReLU; time per "
            f"training step (a timed epoch / its steps), fastest of {rounds} interleaved rounds, "
            "in brackets the median of the per-round ratios. fastmlp runs `fit`, JAX the whole "
            "step under `jax.jit`, PyTorch eager. The limit is the step's products at the "
            "sgemm rate.\n\n" + table(header, rows, [":---", ":---"] + ["---:"] * (len(header) - 2)))


def kernel_section(res):
    kernels = res.of_kind("kernel")
    if not kernels:
        return None
    by = {}
    for b in kernels:
        info = b["extra_info"]
        by[(info["kernel"], info.get("batch"), info["backend"])] = res.t(b)
    names = list(dict.fromkeys(b["extra_info"]["kernel"] for b in kernels))
    batches = sorted({b["extra_info"]["batch"] for b in kernels if "batch" in b["extra_info"]})
    per_batch = [k for k in names if any((k, bt, "cpu") in by for bt in batches)]
    other = [k for k in names if k not in per_batch]

    def cell(kernel, batch):
        cpu, ref = by.get((kernel, batch, "cpu")), by.get((kernel, batch, "reference"))
        if cpu is None:
            return "-"
        if ref is None:
            return fmt_time(cpu)
        return f"{fmt_time(cpu)} (ref {fmt_time(ref)}, {ref / cpu:.1f}x)"

    out = ["### Kernels\n\nfastmlp-cpu (Numba + BLAS) per call, with the NumPy reference "
           "backend and the speed-up (reference / cpu) in brackets; shapes of the "
           "784-256-128-10 network, each kernel's share of one training step (see "
           "bench/test_bench_kernels.py)."]
    if per_batch:
        rows = [[f"`{k}`"] + [cell(k, bt) for bt in batches] for k in per_batch]
        out.append(table(["kernel"] + [f"batch {bt}" for bt in batches], rows,
                         [":---"] + ["---:"] * len(batches)))
    if other:
        params = next((b["extra_info"].get("parameters") for b in kernels
                       if b["extra_info"]["kernel"] in other), None)
        rows = []
        for k in other:
            cpu, ref = by.get((k, None, "cpu")), by.get((k, None, "reference"))
            rows.append([f"`{k}`", fmt_time(cpu), fmt_time(ref),
                         fmt_ratio(ref / cpu) if cpu and ref else "-"])
        out.append(table([f"optimizer update ({params} parameters)", "fastmlp-cpu", "reference",
                          "speed-up"], rows, [":---", "---:", "---:", "---:"]))
    return "\n\n".join(out)


def cold_start_section(res):
    runs = res.of_kind("cold start")
    if not runs:
        return None
    label = {"warm": "warm (filled by an earlier run)", "cold": "cold (empty)",
             "off": "off (FASTMLP_NO_CACHE=1)"}
    rows = []
    for b in runs:
        info = b["extra_info"]
        rows.append([label.get(info["cache"], info["cache"]), fmt_time(res.t(b)),
                     fmt_time(info.get("numpy_import_s", 0) + info.get("fastmlp_import_s", 0)),
                     fmt_time(info.get("first_step_s"))])
    return ("### Cold start\n\nA fresh process: `python bench/child.py cold-start` imports "
            "fastmlp and trains one step (784-256-128-10, batch 128); whole process wall "
            "time, fastest round.\n\n"
            + table(["Numba kernel cache", "process start to exit", "import numpy + fastmlp",
                     "first train_step"], rows, [":---", "---:", "---:", "---:"]))


def predict_section(res):
    runs = res.of_kind("predict")
    if not runs:
        return None
    rows = []
    info0 = runs[0]["extra_info"]
    for c in res.contenders("predict"):
        b = next(b for b in runs if b["extra_info"]["contender"] == c)
        rows.append([NAMES[c], fmt_time(res.t(b)), f"{b['extra_info']['samples'] / res.t(b):,.0f}"])
    return (f"### Inference\n\n`predict` of {info0['samples']} samples at batch "
            f"{info0['batch']} (class labels).\n\n"
            + table(["", "time", "samples/s"], rows, [":---", "---:", "---:"]))


def deploy_section(res):
    """fastmlp's predict_proba against onnxruntime on the exported model, per batch size."""
    runs = res.of_kind("deploy")
    if not runs:
        return None
    times = {(b["extra_info"]["contender"], b["extra_info"]["batch"]): res.t(b) for b in runs}
    rows, goals = [], {1: ("batch-1 latency within 2x of onnxruntime's", lambda r: r >= 0.5),
                       1024: ("at least as fast as onnxruntime", lambda r: r >= 1.0)}
    for batch in sorted({k[1] for k in times}):
        fm, rt = times.get(("fastmlp", batch)), times.get(("onnxruntime", batch))
        ratio = rt / fm if fm and rt else None
        goal, ok = goals.get(batch, ("-", None))
        rows.append([batch, fmt_time(fm), fmt_time(rt), fmt_ratio(ratio),
                     f"{batch / fm:,.0f}" if fm else "-",
                     f"{goal}: {met(ok(ratio))}" if ok and ratio else "-"])
    return ("### Deploy: fastmlp vs onnxruntime\n\n`predict_proba` of one batch against "
            "onnxruntime running the model's ONNX export (784-256-128-10, same run); ratio = "
            "onnxruntime's time / fastmlp's (> 1: fastmlp is faster).\n\n"
            + table(["batch", "fastmlp", "onnxruntime", "ratio", "fastmlp samples/s", "target"],
                    rows, ["---:", "---:", "---:", "---:", "---:", ":---"]))


def memory_section(res):
    runs = res.of_kind("memory")
    if not runs:
        return None
    i = runs[0]["extra_info"]
    state = i["param_bytes"] + i["state_bytes"]
    peak_note = "" if i.get("peak_is_training_only") else " (whole-process peak: an upper bound)"
    rows = [[fmt_mib(i["peak_above_baseline"]) + peak_note, fmt_mib(i["budget_bytes"]),
             fmt_mib(i["data_bytes"]), fmt_mib(state), fmt_mib(i["baseline_rss"]),
             f"{i['growth_bytes'] / 1024:+.0f} KiB"]]
    return (f"### Memory\n\nA fresh process trains {i['samples']} x 784 float32 samples, "
            f"batch {i['batch']}, SGD with momentum, {i['epochs']} epochs. Peak RSS above the "
            f"baseline (interpreter, NumPy, Numba and the compiled kernels, measured before "
            f"the data is made); budget = data + 2 x (parameters + optimizer state) + 64 MiB; "
            f"growth = RSS after the last epoch - RSS after the first.\n\n"
            + table(["peak above baseline", "budget", "data", "parameters + state",
                     "baseline RSS", f"growth, epoch 1 to {i['epochs']}"], rows))


def mnist_section(res):
    runs = res.of_kind("mnist recipe")
    if not runs:
        return None
    i = runs[0]["extra_info"]
    return ("### MNIST recipe\n\nReal MNIST (`../shared/datasets/mnist`), training time "
            "(the `fit` calls, kernels compiled beforehand) and test accuracy.\n\n"
            + table(["recipe", "training time", "test accuracy"],
                    [[i["recipe"], fmt_time(i["train_s"]), f"{i['test_accuracy']:.2%}"]],
                    [":---", "---:", "---:"]))


def targets_section(res):
    rows = []
    for batch, speedups, fraction in EPOCH_TARGETS:
        for peer, speedup in speedups.items():
            goal = f"epoch at batch {batch}: >= {speedup}x faster than {NAMES[peer]}"
            r, p = res.ratios(res.epoch_rounds, batch, peer)
            if r:
                rows.append([goal, f"{fmt_ratio(r)} (per round: {fmt_ratio(p)})", met(r >= speedup)])
            else:
                rows.append([goal, "not measured", "-"])
        goal = f"epoch at batch {batch}: >= {fraction:.0%} of the sgemm limit"
        f = res.fraction_of_ceiling(batch, "fastmlp")
        rows.append([goal, f"{f:.0%}" if f else "not measured", met(f >= fraction) if f else "-"])
    goal = f"small network: >= {SMALL_TARGET_VS_JAX}x faster per step than JAX jit"
    r, p = res.ratios(res.scale_rounds, "small network", "jax")
    rows.append([goal, f"{fmt_ratio(r)} (per round: {fmt_ratio(p)})" if r else "not measured",
                 met(r >= SMALL_TARGET_VS_JAX) if r else "-"])
    goal = f"wide network: >= {WIDE_TARGET_FRACTION:.0%} of the sgemm limit"
    f = res.scale_fraction("wide network")
    rows.append([goal, f"{f:.0%}" if f else "not measured", met(f >= WIDE_TARGET_FRACTION) if f else "-"])
    warm = [b for b in res.of_kind("cold start") if b["extra_info"]["cache"] == "warm"]
    goal = f"cold start, warm cache: <= {COLD_START_TARGET_S:g} s to the first trained step"
    if warm:
        t = res.t(warm[0])
        rows.append([goal, f"{t:.2f} s (whole process)", met(t <= COLD_START_TARGET_S)])
    else:
        rows.append([goal, "not measured", "-"])
    mem = res.of_kind("memory")
    if not mem:
        rows.append(["peak memory and its growth", "not measured", "-"])
    else:
        i = mem[0]["extra_info"]
        rows.append(["peak memory <= data + 2 x (parameters + optimizer state) + 64 MiB",
                     f"{fmt_mib(i['peak_above_baseline'])} of {fmt_mib(i['budget_bytes'])}",
                     met(i["peak_above_baseline"] <= i["budget_bytes"])])
        rows.append([f"no memory growth from epoch to epoch (<= {GROWTH_TOLERANCE // MiB} MiB)",
                     f"{i['growth_bytes'] / 1024:+.0f} KiB", met(i["growth_bytes"] <= GROWTH_TOLERANCE)])
    mn = res.of_kind("mnist recipe")
    acc, limit = MNIST_TARGET
    goal = f"MNIST >= {acc:.0%} test accuracy in <= {limit:g} s of training"
    if mn:
        i = mn[0]["extra_info"]
        rows.append([goal, f"{i['test_accuracy']:.2%} in {i['train_s']:.1f} s",
                     met(i["test_accuracy"] >= acc and i["train_s"] <= limit)])
    else:
        rows.append([goal, "not measured", "-"])
    return "### Targets\n\n" + table(["target", "measured", ""], rows, [":---", "---:", ":---"])


def merge(docs):
    """One document from several runs: later benchmarks replace earlier ones of the same name."""
    if len(docs) == 1:
        return docs[0]
    by_name = {}
    for doc in docs:
        for b in doc.get("benchmarks", []):
            by_name.pop(b["fullname"], None)
            by_name[b["fullname"]] = b
    merged = dict(docs[-1])
    merged["benchmarks"] = list(by_name.values())
    merged["merged_runs"] = [{"datetime": d.get("datetime"),
                              "groups": sorted({b["group"] or "" for b in d.get("benchmarks", [])})}
                             for d in docs]
    return merged


def runs_note(doc):
    runs = doc.get("merged_runs")
    if not runs:
        return None
    lines = [f"- run {i + 1} ({r['datetime']}): {', '.join(r['groups'])}"
             for i, r in enumerate(runs)]
    return ("Merged from several runs (a benchmark of a later run replaces the same-named one of an "
            "earlier run; re-run whole groups so that ratios stay within one run):\n" + "\n".join(lines))


def report(doc):
    res = Results(doc)
    sections = [machine_section(res), runs_note(doc), epoch_section(res), scale_section(res), kernel_section(res),
                cold_start_section(res), predict_section(res), deploy_section(res), memory_section(res),
                mnist_section(res), targets_section(res)]
    return "\n\n".join(s for s in sections if s) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+",
                   help="file(s) written by pytest bench/ --benchmark-json=FILE; later ones win")
    args = p.parse_args(argv)
    docs = []
    for path in args.json:
        with open(path) as f:
            docs.append(json.load(f))
    sys.stdout.write(report(merge(docs)))


if __name__ == "__main__":
    main()
