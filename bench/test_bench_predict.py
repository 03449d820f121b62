"""Inference throughput: predict() of 10000 MNIST-shaped samples at batch 1024 (group ``predict``).

fastmlp's `model.predict` next to the same forward pass in NumPy and PyTorch (inference mode).
"""

import pytest

from benchlib import CONTENDERS, SMOKE, make_data, min_time

N_PREDICT = 512 if SMOKE else 10000
BATCH = 1024


@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_predict(benchmark, request, contender):
    if contender in ("torch", "jax"):
        request.getfixturevalue(contender)  # skips cleanly without PyTorch / JAX
    X, _ = make_data(N_PREDICT, seed=2)
    model = CONTENDERS[contender]()
    model.predict(X, batch_size=BATCH)  # compile, allocate
    benchmark.group = "predict"
    benchmark.extra_info.update(kind="predict", contender=contender, batch=BATCH, samples=len(X))
    benchmark(model.predict, X, batch_size=BATCH)
    t = min_time(benchmark)
    if t:
        benchmark.extra_info["samples_per_s"] = len(X) / t


THREAD_BATCH = 256
THREAD_CALLS = 8 if SMOKE else 64


def _predict_in_threads(model, X, threads):
    """THREAD_CALLS predict calls of THREAD_BATCH rows, shared out over `threads` threads
    working on the same model at once."""
    import threading

    per_thread = THREAD_CALLS // threads

    def work(i):
        for j in range(per_thread):
            start = ((i * per_thread + j) * THREAD_BATCH) % (len(X) - THREAD_BATCH + 1)
            model.predict(X[start : start + THREAD_BATCH])

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_predict_threads(benchmark):
    """One model serving predict() from 2 threads at once against 1 thread, in interleaved
    rounds (batches of 256 rows): the inference path shares no buffers, so two threads run
    side by side on two cores. The benchmark times the 2-thread rounds; each is preceded by
    a 1-thread round timed alongside (extra_info: both throughputs and their ratio)."""
    import time

    X, _ = make_data(N_PREDICT, seed=3)
    model = CONTENDERS["fastmlp"]()
    _predict_in_threads(model, X, 2)  # compile, allocate
    one_thread = []

    def one_thread_round():
        start = time.perf_counter()
        _predict_in_threads(model, X, 1)
        one_thread.append(time.perf_counter() - start)

    benchmark.group = "predict threads"
    benchmark.extra_info.update(kind="predict threads", contender="fastmlp", threads=2,
                                batch=THREAD_BATCH, samples=THREAD_CALLS * THREAD_BATCH)
    benchmark.pedantic(_predict_in_threads, args=(model, X, 2), setup=one_thread_round,
                       rounds=1 if SMOKE else 15, iterations=1)
    t = min_time(benchmark)
    if t:
        samples = THREAD_CALLS * THREAD_BATCH
        benchmark.extra_info.update(samples_per_s=samples / t,
                                    samples_per_s_1_thread=samples / min(one_thread),
                                    speedup_2_threads=min(one_thread) / t)
