"""The CUDA backend: numba-cuda kernels on NVIDIA GPUs, same contract as ``cpu.py``.

A package, one module per concern: ``device`` (availability, sizes, launching, shared
device functions), ``gemm``, ``fused`` (the Dense-stack loops), ``losses`` (and metrics),
``graph`` (add and the multi-label count), ``layers`` (activations, RNG, dropout, batch norm,
gathering rows), ``optim`` (optimizers, clipping), ``sparse`` (the first layer on CSR rows),
``memory``. This module re-exports the contract.

Every function of the contract (see ``kernels/__init__.py``) takes the same arguments as in
``cpu.py`` and ``reference.py``, but its arrays are numba *device* arrays (``empty``,
``zeros`` and ``to_device`` make them; ``to_host`` copies one back), float32 or float64.
Outputs are written into the arrays passed in; the kernels are launched on the default
stream and return without waiting for the GPU, except where a value must come back to the
host (documented per function: the losses and ``count_correct`` without ``total=``, and
``clip_grad_norm`` without ``norm_out=``).

Launch strategy (one launch per contract call unless said otherwise)
--------------------------------------------------------------------
- ``matmul``, ``linear_forward``, ``delta_backward``, ``weight_grad``: one register-blocked,
  shared-memory tiled GEMM (block tile BM x BN, k-step BK, each thread a TM x TN
  micro-tile: ``GEMM_LARGE`` = 64 x 64 x 16 with 4 x 4 per thread, or ``GEMM_SMALL`` =
  32 x 32 x 16 with 2 x 2 when the large tiles would not give every multiprocessor a
  block, as for most layers of a small network), specialised at compile time per dtype,
  tile configuration, transpose flags, epilogue and activation. The epilogue is fused: ``f(acc + b)`` for the forward pass,
  ``acc * f'(D_prev)`` for the delta, and for ``weight_grad`` the blocks of the first column
  block also sum the delta tiles they already hold in shared memory into ``db`` (a
  deterministic reduction over the batch, no atomics), so a layer's backward pass is two
  launches.
- The losses, ``softmax`` and ``count_correct``: one thread per row (classes are few), the
  per-row losses reduced in shared memory per block, each block writing its partial sum,
  then one small pass adding the partials in block order into a float64 device scalar:
  the same sum, bit for bit, on every run (no atomics anywhere).
- Batch norm and ``regression_sums``: a block owns a group of columns and reduces over the
  batch with a shared-memory tree (two-pass mean/variance, as the CPU backend).
- Elementwise kernels and the optimizers: 1-D grid-stride loops, one launch over the whole
  (flat) array.
- ``fill_uniform``: a stateless counter-based generator on the device (splitmix64 of
  (seed, element index)); one 64-bit seed is drawn from the host ``rng``.
- ``mlp_forward`` / ``mlp_backward`` (a stack of Dense layers): for a narrow network (every
  width <= ``FUSED_MAX_WIDTH`` = 256, the input <= ``FUSED_MAX_INPUT`` = 256) fully fused:
  the whole forward pass in ONE launch (a block takes R rows through every layer, each
  layer's output kept in shared memory for the next and written out for the backward pass),
  the whole delta chain in ONE launch likewise, then one ``weight_grad`` GEMM per layer; so
  L + 2 launches for the two passes of L >= 2 layers instead of 3L - 1 (e.g. 64-128-64-10:
  5 instead of 8). Each thread computes a tile of 4 rows x 2 units (one weight load feeds 4
  multiply-adds), with 32-bit unsigned indices (no negative-index fix-ups) and an odd row
  pitch in shared memory; R is 16 rows per block (8 in float64 at width 256), fewer for
  small batches so that every multiprocessor gets a block (batch 128 on an H100: 128 blocks
  of one row). Wider networks, MNIST's 784-input one included, loop over the per-layer
  kernels. Which path is faster for a given network is the GPU's to say: the limits are
  settings (``kernels.cuda.fused.FUSED_MAX_WIDTH`` / ``FUSED_MAX_INPUT``), and
  ``python bench/gpu.py`` times both paths on the first GPU it runs on, to settle them.

Host time per step
------------------
A small network's step is a dozen launches of microseconds each, so the host's time per
launch is what the step costs. What a launch needs is worked out once and kept: the GEMM's
kernel, grid and block per output shape, the fused path's decision and launch per set of
buffers (remembered by the arrays' identities, with weak references), the configured
``kernel[grid, block]`` objects, the dummy and scratch arrays per thread. Nothing is
allocated per step. ``bench/cuda_host.py`` measures fastmlp's host time per step with the
launcher mocked (no GPU); ``bench/gpu.py`` measures it, numba-cuda's launch path included,
on a GPU. A step reads nothing back and works in buffers fixed per batch size, so it can be
captured into a CUDA graph (numba-cuda >= 0.29 launches into a ``cuda.core`` graph builder;
``device._run`` is the one place launches happen): what a capture still needs is listed in
``bench/gpu.py``'s docstring.

Device accumulation without readback
------------------------------------
The losses and ``count_correct`` take an optional trailing ``total=None``: a float64
device array of shape (1,) (``count_correct`` also accepts int64). When it is given the
kernel ADDS to ``total[0]`` and the function returns None without synchronising:

- losses: ``total[0] += B * loss``, ``loss`` being exactly what the call would have
  returned (the batch mean ``sum_i w_i l_i / B``). For softmax cross-entropy that is
  ``sum_i w_i l_i``; for BCE and MSE (means over all B*K elements) it is
  ``sum_ij w_i l_ij / K``. Summed over an epoch and divided by the number of samples this
  is the sample-weighted mean of the batch losses (Keras' epoch loss).
- ``count_correct``: ``total[0] += number of right rows``.

Without ``total`` they return a Python float / int as the CPU backend does (and wait for
the GPU to do so).

Every kernel computes in the dtype of its data: kernels are made per dtype, their constants
and the activations they call (kernels/scalar.py, compiled by ``device.activations(dt)``)
typed accordingly, so a float32 model runs no float64 instruction (a test reads the PTX).

Launches are configured once per (kernel, grid, block) and kept; numba-cuda's
low-occupancy warning is not raised for them (small grids are deliberate here), while the
user's own launches still warn. Scratch arrays are private to a thread and CUDA context.

Tile and block sizes are module constants read when a kernel is first compiled. Under the
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, one Python thread per CUDA thread) they are
chosen small automatically; ``FASTMLP_CUDA_SMALL=1`` forces the small sizes on a real GPU
too (for testing the edge paths there).

Arguments must be device arrays (numba would otherwise copy a host array to the device
and back on every call). Kernels compile on first use, once per dtype and specialisation
(about a second each on a GPU); nothing is cached on disk.

This module imports without numba-cuda, a driver or a GPU; ``is_available()`` and
``why_unavailable()`` tell whether it can run here.
"""

from . import device, fused, gemm, graph, layers, losses, memory, optim, sparse  # noqa: F401
from .device import SIM, cuda, is_available, why_unavailable  # noqa: F401
from .fused import FUSED_MAX_INPUT, FUSED_MAX_WIDTH  # noqa: F401
from .fused import mlp_backward, mlp_forward  # noqa: F401
from .gemm import delta_backward, linear_forward, matmul, weight_grad  # noqa: F401
from .graph import add, count_binary_correct  # noqa: F401
from .layers import (activate, activation_backward, batchnorm_backward,  # noqa: F401
                     batchnorm_forward, batchnorm_inference, dropout_backward,
                     dropout_forward, fill_uniform, gather_rows)
from .losses import softmax_kl_divergence  # noqa: F401
from .losses import (count_correct, mse, poisson, regression_sums,  # noqa: F401
                     sigmoid_binary_cross_entropy, softmax, softmax_cross_entropy)
from .memory import asarray, empty, synchronize, to_device, to_host, write, zeros  # noqa: F401
from .optim import (adagrad_update, adam_update, clip_grad_norm, lamb_update,  # noqa: F401
                    rmsprop_update, scale, sgd_update)
from .sparse import (csr_to_dense, gather_csr_rows, sparse_linear_forward,  # noqa: F401
                     sparse_weight_grad)

name = "cuda"
