"""Layer sizes whose weights cannot fit in memory are a ValueError naming the layer, the
bytes needed and the bound, raised before anything is allocated (issue 32): an MLP, a
Sequential and a graph Model, each in a process under an address-space limit."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.layers import check_parameter_memory, memory_bound
from _shared_memory import assert_refused, run_bounded

SETUP = "import fastmlp as fm"
HUGE = 10**12


def test_mlp_with_a_huge_hidden_layer_is_refused_before_allocating():
    result = run_bounded(SETUP, f"fm.MLP([784, {HUGE}, 10], device='cpu')")
    needed = (784 * HUGE + HUGE) * 4
    assert_refused(result, "ValueError", "layers[0] 'hidden1' (Dense 784 -> 1000000000000)",
                   f"{needed} bytes", "float32", "physical memory")


def test_sequential_and_graph_models_are_refused_before_allocating():
    result = run_bounded(SETUP, f"fm.Sequential([fm.Dense(784, 10), fm.Dense({HUGE})], "
                                "device='cpu', dtype='float64')")
    assert_refused(result, "ValueError", f"layers[1] 'dense", f"(Dense 10 -> {HUGE})",
                   f"{(10 * HUGE + HUGE) * 8} bytes", "float64")
    action = f"""
x = fm.Input(784)
fm.Model(x, fm.Dense(3)(fm.Dense({HUGE}, activation="relu", name="wide")(x)), device="cpu")
"""
    result = run_bounded(SETUP, action)
    assert_refused(result, "ValueError", f"layers[0] 'wide' (Dense 784 -> {HUGE})",
                   f"{(784 * HUGE + HUGE) * 4} bytes")


def test_batchnorm_and_the_total_count_too():
    bound = memory_bound()
    assert isinstance(bound, int) and bound > 0
    with pytest.raises(ValueError,
                       match=rf"layers\[1\] 'bn' \(BatchNorm {HUGE}\).*{16 * HUGE} bytes"):
        check_parameter_memory([fm.Dense(3, HUGE, name="d"), fm.BatchNorm(HUGE, name="bn")],
                               "float32", bound=(3 * HUGE + HUGE) * 4 + 1)
    # each layer fits on its own, the two together do not: the second is named, with the total
    layers = [fm.Dense(100, 100, name="a"), fm.Dense(100, 100, name="b")]
    with pytest.raises(ValueError, match=r"layers\[1\] 'b' \(Dense 100 -> 100\).*40400 bytes "
                                         r"\(39\.5 KiB\) in float32; with the layers before it "
                                         r"the weights need 80800 bytes.*than the bound, 50000"):
        check_parameter_memory(layers, np.float32, bound=50_000)
    assert check_parameter_memory(layers, "float64") == 2 * 10100 * 8


def test_models_of_ordinary_sizes_still_build():
    model = fm.MLP([784, 256, 10], device="cpu", seed=0)
    assert model.n_parameters == 784 * 256 + 256 + 256 * 10 + 10
