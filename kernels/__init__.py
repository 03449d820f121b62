"""fastmlp's compute kernels, one module per backend, all with the same functions.

``backend(device)`` returns the module for ``"cpu"`` (Numba), ``"cuda"`` (numba-cuda, NVIDIA
GPUs), ``"reference"`` (NumPy, the oracle of the tests) or ``"auto"`` (CUDA when a GPU is
usable, else the CPU; never the slow CUDA simulator). ``"cuda"`` without a usable GPU raises
a RuntimeError that says why (no numba-cuda, no driver, no device).

The contract every backend module fulfils (outputs are written into the arrays passed in;
``act`` is an activation code from :mod:`codes`; ``D`` is what the derivative is taken from:
the activation A = f(Z), or Z itself for the activations in ``codes.NEEDS_PREACTIVATION``):

=====================================================  ========================================
``matmul(A, B, C, trans_a, trans_b)``                  C = op(A) @ op(B)
``linear_forward(A_in, W, b, act, A_out)``             A_out = f(A_in @ W.T + b)
``activate(Z, act, A)``                                A = f(Z)
``activation_backward(A, act, delta)``                 delta *= f'(A), A the D above
``softmax(Z, P)``                                      P = softmax(Z) by rows
``softmax_cross_entropy(Z, T, dZ, w, smoothing)``      T labels (B,) or targets (B, K); -> loss
``softmax_kl_divergence(Z, T, dZ, w)``                 targets (B, K): cross-entropy minus the
                                                       targets' entropy; dZ as cross-entropy's
``sigmoid_binary_cross_entropy(Z, T, dZ, w)``          mean over elements; -> loss
``mse(Z, T, dZ, w)``                                   mean over elements; -> loss
``poisson(Z, T, dZ, w)``                               log link: mean of w (exp(Z) - T Z),
                                                       dZ = w (exp(Z) - T) / Z.size; -> loss
``delta_backward(delta, W, A_prev, act, delta_prev,    delta_prev = f'(A_prev) * (delta @ W
accumulate=False)``                                    [+ delta_prev when accumulate: beta=1])
``weight_grad(delta, A_prev, dW, db,                   dW = delta.T @ A_prev, db = sum(delta)
accumulate=False)``                                    (added to dW, db when accumulate)
``add(X, Y, out)``                                     out = X + Y (Add; summing deltas)
``mlp_forward(A, D, W, b, acts)``                      linear_forward through L Dense layers
                                                       (tuples; D[l+1] gets Z where f' needs it)
``mlp_backward(delta, A, D, W, dW, db, acts)``         weight_grad and delta_backward through
                                                       them, from delta[L-1]
``sparse_linear_forward(data, indices, indptr, W,      A_out = f(X @ W.T + b), X the CSR rows
b, act, A_out)``                                       (data, indices, indptr) (first layer)
``sparse_weight_grad(delta, data, indices, indptr,     dW = delta.T @ X, db = sum(delta), X CSR
dW, db)``
``gather_csr_rows(data, indices, indptr, idx,          rows idx of a CSR matrix as a CSR batch;
out_data, out_indices, out_indptr) -> nnz``            -> its number of entries (CUDA: None,
                                                       no wait; the count is out_indptr[-1])
``csr_to_dense(data, indices, indptr, out)``           out = the CSR rows, dense
``fill_uniform(U, rng)``                               U ~ uniform [0, 1), seeded from rng
``dropout_forward(A_in, U, p, A_out)``                 A_out = A_in * (U >= p) / (1 - p)
``dropout_backward(delta, U, p, D_prev, act_prev,      delta_prev = f'(D_prev) * delta * (U >= p)
delta_prev)``                                          / (1 - p)
``batchnorm_forward(X, gamma, beta, running_mean,      training batch norm, keeps Xhat, inv_std,
running_var, momentum, eps, act, Xhat, inv_std,        updates the running statistics
A_out)``
``batchnorm_inference(X, gamma, beta, running_mean,    batch norm with the running statistics
running_var, eps, act, A_out)``
``batchnorm_backward(delta, Xhat, inv_std, gamma,      dgamma, dbeta and delta_prev
dgamma, dbeta, D_prev, act_prev, delta_prev)``
``sgd_update(p, g, buf, lr, momentum, weight_decay,    torch.optim.SGD, in place
nesterov)``
``adam_update(p, g, m, v, step, lr, beta1, beta2,      torch.optim.Adam / AdamW (AMSGrad with
eps, weight_decay, decoupled, v_max=None)``            v_max), in place
``rmsprop_update(p, g, square_avg, grad_avg, buf,      torch.optim.RMSprop, in place
lr, alpha, eps, weight_decay, momentum, centered)``
``adagrad_update(p, g, state_sum, lr, weight_decay,    torch.optim.Adagrad, in place (lr decayed
eps)``                                                 for the step by the caller)
``lamb_update(p, g, m, v, step, lr, beta1, beta2,      LAMB, one trust ratio per tensor
eps, weight_decay, segments)``                         p[segments[j]:segments[j+1]]; g -> update
``clip_grad_norm(g, max_norm) -> norm``                torch.nn.utils.clip_grad_norm_
``scale(x, c)``                                        x *= c (flat; data-parallel shard weights)
``gather_rows(X, idx, out)``                           out = X[idx] (cast)
``count_correct(Z, y) -> int``                         right classifications in a batch
``count_binary_correct(Z, T) -> int``                  right labels (Z > 0) == T, multi-label
``regression_sums(Z, T, abs_err, sq_err)``             += per-output sums of |Z-T|, (Z-T)^2
``empty / zeros(shape, dtype)``, ``to_device(host)``,  this backend's arrays, copies both ways,
``to_host(arr)``, ``write(dst, host)``,                a barrier; ``asarray`` puts data on the
``asarray(host)``, ``synchronize()``                   backend (no copy on the host backends)
=====================================================  ========================================

``mlp_forward`` / ``mlp_backward`` are the layer loops of a plain stack of Dense layers, one
call each way: the CPU backend runs the loop in compiled code calling BLAS directly
(``blas.py``), the CUDA backend in as few launches as the widths allow; the model calls the
single-layer kernels instead when the stack holds Dropout or BatchNorm layers.

Arrays may be column slices of a wider buffer (rows contiguous): a graph model's
Concatenate lets its producers write straight into its columns and hands column views of
its delta back to them.

CSR arguments: ``indptr`` has B + 1 entries and may start at any offset (a slice of a bigger
matrix's ``indptr``), so a run of rows is passed without a copy; ``indices`` are int32 or
int64; duplicate entries add up, as in SciPy.

Losses: w is None or per-sample weights (B,); the loss is sum_i w_i l_i / B (Keras'
convention) and ``smoothing`` is PyTorch's label smoothing. The optimizer kernels take flat,
contiguous 1-D arrays (a model keeps all its parameters, gradients and optimizer state in
such arrays, so one call updates everything).

The CUDA backend's losses and ``count_correct`` / ``count_binary_correct`` also take
``total=``, a device scalar they add to without reading anything back (see ``cuda/``), so an
epoch reads its loss once; its ``clip_grad_norm`` takes ``norm_out=`` for the same reason.
tests/test_contract.py checks this table against every backend's functions and signatures.
"""

import importlib

from . import compile_notice  # noqa: F401 - the notice while the kernels compile
from .codes import ACTIVATIONS, activation_code  # noqa: F401

DEVICES = ("auto", "cpu", "cuda", "reference")


def backend(device="auto"):
    """The kernel module for `device`: "auto", "cpu", "cuda" or "reference"."""
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string, one of {list(DEVICES)}; got {device!r} "
            f"of type {type(device).__name__}"
        )
    name = device.strip().lower()
    if name not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if name in ("cuda", "auto"):
        cuda = importlib.import_module(f"{__name__}.cuda")
        reason = cuda.why_unavailable()
        if name == "auto":
            return cuda if reason is None and not cuda.SIM else backend("cpu")
        if reason is not None:
            raise RuntimeError(f"device='cuda' is not available: {reason}; use device='cpu'")
        return cuda
    return importlib.import_module(f"{__name__}.{name}")
