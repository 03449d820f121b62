"""Workloads that need a fresh process; run by the suite as ``python bench/child.py MODE ...``.

    python bench/child.py cold-start              import fastmlp, train one step (batch 128)
    python bench/child.py memory N BATCH EPOCHS   train MNIST-shaped data, report memory

Each prints one JSON object on its last line of stdout. Only the standard library is
imported before the clock starts, so `cold-start` times what a user's script pays.
"""

import json
import sys
import time

T_START = time.perf_counter()


def cold_start():
    import numpy as np

    t_numpy = time.perf_counter()
    import fastmlp

    t_import = time.perf_counter()
    model = fastmlp.MLP([784, 256, 128, 10], optimizer=fastmlp.SGD(lr=0.01), seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((128, 784), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    loss = model.train_step(X, y)
    t_step = time.perf_counter()
    return {
        "numpy_import_s": t_numpy - T_START,
        "fastmlp_import_s": t_import - t_numpy,
        "first_step_s": t_step - t_import,
        "to_first_step_s": t_step - T_START,
        "loss": loss,
    }


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _rss():
    return _status_kib("VmRSS") * 1024


def _reset_peak():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory(n, batch, epochs):
    import gc
    import resource

    import numpy as np

    import fastmlp

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from benchlib import SIZES, make_data, memory_budget

    # compile and warm up everything first, on a throwaway model and tiny data, so the
    # measurement below sees training, not the compiler
    warm = fastmlp.MLP(SIZES, optimizer=fastmlp.SGD(lr=0.01, momentum=0.9), seed=0)
    Xw, yw = make_data(4 * batch, seed=1)
    warm.fit(Xw, yw, epochs=1, batch_size=batch, verbose=0)
    warm.predict(Xw)
    del warm, Xw, yw
    gc.collect()

    baseline = _rss()
    hwm_reset = _reset_peak()
    X, y = make_data(n)
    data_bytes = X.nbytes + y.nbytes
    model = fastmlp.MLP(SIZES, optimizer=fastmlp.SGD(lr=0.01, momentum=0.9), seed=0)
    n_state = len(model.optimizer.state_names) * model.n_parameters

    rss_after_epoch = []

    class Probe(fastmlp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rss_after_epoch.append(_rss())

    t = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[Probe()])
    train_s = time.perf_counter() - t
    if hwm_reset:
        peak = _status_kib("VmHWM") * 1024
    else:  # whole-process peak: includes the compiler's, so only an upper bound
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    budget = memory_budget(data_bytes, model.n_parameters, n_state)
    return {
        "samples": n,
        "batch": batch,
        "epochs": epochs,
        "train_s": train_s,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_above_baseline": peak - baseline,
        "peak_is_training_only": hwm_reset,
        "data_bytes": data_bytes,
        "param_bytes": 4 * model.n_parameters,
        "state_bytes": 4 * n_state,
        "budget_bytes": budget,
        "rss_after_epoch": rss_after_epoch,
        "growth_bytes": rss_after_epoch[-1] - rss_after_epoch[0],
    }


def main(argv):
    mode = argv[0]
    if mode == "cold-start":
        result = cold_start()
    elif mode == "memory":
        result = memory(*(int(a) for a in argv[1:4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; use cold-start or memory")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
