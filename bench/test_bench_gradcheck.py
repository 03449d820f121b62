"""gradcheck: the README's line on the README's model (group ``gradcheck``).

``fastmlp.gradcheck(model, X[:8], y[:8])`` on the API tour's 784-256-128-10 float32 ReLU
network (SGD with momentum) after one epoch of MNIST-shaped data: a float64 copy of the
model, the default sample (100 parameters per parameter array, 510 probes of 235146
parameters), two forward passes per probe. Each round is one whole call, the copy
included; the first call (float64 kernels compiled or loaded from the cache) is not timed.
The result must be that of a correct backward pass in float64 (below 1e-6).
"""

import fastmlp
from benchlib import SIZES, SMOKE, min_time

ROUNDS = 1 if SMOKE else 5


def test_gradcheck_readme_line(benchmark, data):
    X, y = data
    model = fastmlp.MLP(SIZES, activation="relu", loss="cross_entropy",
                        optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), device="cpu",
                        dtype="float32", seed=0)
    model.fit(X, y, epochs=1, batch_size=128, verbose=0)
    X8, y8 = X[:8], y[:8]
    fastmlp.gradcheck(model, X8, y8)  # compile (or load) the float64 kernels
    results = []

    def check():
        results.append(fastmlp.gradcheck(model, X8, y8))

    benchmark.group = "gradcheck"
    benchmark.pedantic(check, rounds=ROUNDS, iterations=1)
    result = results[-1]
    assert result < 1e-6, repr(result)
    benchmark.extra_info.update(kind="gradcheck", contender="fastmlp", sizes=SIZES, batch=8,
                                probes=result.checked, parameters=result.total,
                                worst_relative_error=float(result))
    t = min_time(benchmark)
    if t:
        benchmark.extra_info["probes_per_s"] = result.checked / t
