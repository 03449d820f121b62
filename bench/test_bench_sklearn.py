"""fastmlp.MLPClassifier against scikit-learn's MLPClassifier (group ``sklearn``).

Two problems, each fitted by scikit-learn 1.9, by fastmlp with its defaults (dtype "auto":
float64 for the float64 input, as scikit-learn computes) and by fastmlp with
``dtype="float32"``, all from the same ``random_state`` (so the same initial weights and
shuffles), adam, ``n_iter_no_change=np.inf`` so that every fit runs all its iterations:

- ``tabular``: ``make_classification(20000, 20, n_informative=10, n_classes=3)``, float64,
  ``hidden_layer_sizes=(64, 64)``, 30 iterations (target: fastmlp >= 10x faster);
- ``mnist``: MNIST's 60000 x 784 training images as float64 in [0, 1],
  ``hidden_layer_sizes=(256, 128)``, 3 iterations (target: >= 2x; skipped without MNIST).

scikit-learn is timed twice: as installed (its BLAS with its default thread count) and
with its BLAS limited to one thread -- on a small, busy machine OpenBLAS's threads cost
scikit-learn more than they give, and fastmlp runs small steps on one thread itself, so
the second ratio is the one that measures the kernels and the loop, not the threading.

Rounds are interleaved (sklearn twice, fastmlp, fastmlp float32, then again) so that the ratios
come from the same minutes of a noisy machine, with a pause of PAUSE seconds before each
fit; the fastest round of each counts. Kernels
are compiled before the clock starts. ``extra_info`` holds the training accuracy (the fits
must be the same fits, not a faster worse one) and the BLAS thread count.
"""

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from benchlib import SMOKE

pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp._download import local_copy  # noqa: E402
from fastmlp.datasets import load_idx  # noqa: E402

#: MNIST: $FASTMLP_DATA/mnist when it holds the four files, else ../shared/datasets/mnist
SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist"
MNIST = Path(local_copy("mnist", SHARED_MNIST) or SHARED_MNIST)
ROUNDS = {"tabular": 1 if SMOKE else 3, "mnist": 1 if SMOKE else 2}
#: seconds between two fits: OpenBLAS's idle threads spin for ~0.1 s after a product on
#: several threads (scikit-learn's), and would run on into the next fit's time
PAUSE = 0 if SMOKE else 0.3


def _tabular():
    n = 600 if SMOKE else 20000
    X, y = make_classification(n, 20, n_informative=10, n_classes=3, random_state=0)
    return X, y, dict(hidden_layer_sizes=(64, 64), max_iter=2 if SMOKE else 30)


def _mnist():
    images, labels = MNIST / "train-images-idx3-ubyte.gz", MNIST / "train-labels-idx1-ubyte.gz"
    if not (images.exists() and labels.exists()):
        pytest.skip(f"MNIST not found in $FASTMLP_DATA/mnist nor in {MNIST}: put its files there")
    X, y = load_idx(images, labels)
    X = X.astype(np.float64)
    if SMOKE:
        X, y = X[:512], y[:512]
    return X, y, dict(hidden_layer_sizes=(256, 128), max_iter=1 if SMOKE else 3)


class _OneBlasThread:
    """scikit-learn's estimator, fitted with its BLAS limited to one thread (what a user
    can do with threadpoolctl; fastmlp does it itself for small steps)."""

    def __init__(self, **params):
        self.est = SkMLP(**params)

    def fit(self, X, y):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            self.est.fit(X, y)
        self.n_iter_ = self.est.n_iter_
        return self

    def score(self, X, y):
        return self.est.score(X, y)


FITTERS = {
    "sklearn": lambda p: SkMLP(**p),
    "sklearn 1 BLAS thread": lambda p: _OneBlasThread(**p),
    "fastmlp": lambda p: fastmlp.MLPClassifier(device="cpu", **p),
    "fastmlp float32": lambda p: fastmlp.MLPClassifier(device="cpu", dtype="float32", **p),
}


def _blas_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("problem", ["tabular", "mnist"])
def test_sklearn_estimators(benchmark, problem):
    X, y, params = {"tabular": _tabular, "mnist": _mnist}[problem]()
    params = dict(params, solver="adam", random_state=0, n_iter_no_change=np.inf)
    small = dict(params, max_iter=1)
    for name in ("fastmlp", "fastmlp float32"):  # compile the kernels first
        FITTERS[name](small).fit(X[:400], y[:400])
    times = {name: [] for name in FITTERS}
    scores = {}

    def one_round():
        for name, make in FITTERS.items():
            est = make(params)
            time.sleep(PAUSE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = time.perf_counter()
                est.fit(X, y)
                times[name].append(time.perf_counter() - start)
            assert est.n_iter_ == params["max_iter"]
            scores[name] = float(est.score(X[:5000], y[:5000]))

    benchmark.group = "sklearn"
    benchmark.extra_info.update(kind="sklearn estimators", problem=problem,
                                samples=int(X.shape[0]), features=int(X.shape[1]),
                                hidden=list(params["hidden_layer_sizes"]),
                                iterations=params["max_iter"], blas_threads=_blas_threads())
    benchmark.pedantic(one_round, rounds=ROUNDS[problem], iterations=1)
    best = {name: min(t) for name, t in times.items()}
    benchmark.extra_info.update(
        seconds={name: round(t, 4) for name, t in best.items()},
        speedup={name: round(best["sklearn"] / best[name], 2) for name in FITTERS if name != "sklearn"},
        speedup_vs_one_thread={name: round(best["sklearn 1 BLAS thread"] / best[name], 2)
                               for name in ("fastmlp", "fastmlp float32")},
        train_accuracy_first_5000=scores)
    print(f"\n{problem}: " + ", ".join(f"{name} {t:.3f} s" for name, t in best.items())
          + " | speed-up " + ", ".join(f"{k} x{v}" for k, v in benchmark.extra_info["speedup"].items())
          + " | vs sklearn on 1 BLAS thread " + ", ".join(
              f"{k} x{v}" for k, v in benchmark.extra_info["speedup_vs_one_thread"].items()))
