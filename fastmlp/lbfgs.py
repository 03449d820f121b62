"""Full-batch L-BFGS on fastmlp's kernels: ``fastmlp.fit_lbfgs(model, X, y, ...)``.

The objective is the model's loss over the whole data set (its mean; its sum with
``reduction="sum"``) plus an optional L2 term on the weights (not the biases)::

    J(theta) = scale * sum_i w_i l_i / n  +  l2 / 2 * sum_l ||W_l||^2     (the mean)

over the trainable layers' parameters: a layer with ``trainable=False`` keeps its own.

Its value and gradient come from the model's own kernels -- forward, fused loss, backward --
run over the data in chunks of ``chunk_size`` rows into buffers allocated once, so memory
does not grow with the data (sparse X stays sparse). SciPy's L-BFGS-B
(``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``) takes the steps. SciPy is needed
only here (``pip install 'fastmlp[sklearn]'`` brings it).

The model must be a stack of Dense layers: Dropout and BatchNorm make the objective depend
on the chunk and on chance, which a line search cannot work with.

Over MPI (``distributed="mpi"``, every process passing the same data): each process
computes the loss and gradient of its consecutive part of the rows, one Reduce sums them on
rank 0, and rank 0 alone runs SciPy's L-BFGS-B, sending each point to evaluate to the
others (one Bcast) and, at the end, the result; so the iterates never depend on every
process's SciPy agreeing to the last bit. Every process ends with rank 0's weights and
result; a divergence raises the same DivergenceError everywhere.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace
from typing import Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from ._typing import Inputs
from ._validation import check_float, check_int
from .distributed import MPI
from .errors import DivergenceError
from .model import Sequential
from .sparse import csr_run, issparse

__all__ = ["fit_lbfgs"]


class _Objective:
    """J(theta) and dJ/dtheta of a model on (X, T, w), chunk by chunk."""

    def __init__(self, model, X, T, w, l2, scale, chunk_size, dist=None):
        self.model, self.X, self.T, self.w = model, X, T, w
        self.l2, self.scale = l2, scale
        self.n = X.shape[0]
        self.chunk = min(chunk_size, self.n)
        self.dist = dist
        if dist is not None:  # agree on the setup; rank 0's weights; this process's rows
            dist.begin(model, self.n, self.chunk, T, X, w)
        self.lo, self.hi = (0, self.n) if dist is None else dist.rows(self.n)
        self.sparse = issparse(X)
        self.buffers = model._buffers_for(self.chunk, T, w is not None, self.sparse)
        k = model._kernels
        # where the weights (not the biases) sit in theta: the L2 term's mask
        mask, offset = np.zeros(model.n_parameters, bool), 0
        for layer in model.layers:
            for name, shape in layer.param_shapes().items():
                size = math.prod(shape)
                mask[offset : offset + size] = name == "W"
                offset += size
        self.mask = mask
        # the frozen layers' parameters (trainable=False): their gradient is 0, so the
        # iterates never move them
        runs = model._trainable_runs()
        self.frozen = None
        if runs is not None:
            self.frozen = np.ones(model.n_parameters, bool)
            for lo, hi in runs:
                self.frozen[lo:hi] = False
        # each chunk's loss is its mean (weighted by its share of the rows) or its sum
        self.summed = model.reduction == "sum"
        self.data_loss = math.nan  # the last evaluation's scale * mean loss (no L2 term)
        self.n_calls = 0
        self.k = k

    def set_theta(self, theta):
        self.k.write(self.model._theta, theta.astype(self.model.dtype))

    def _part(self, theta):
        """The loss and its gradient at theta over this process's rows: the chunks' means
        weighted by their share of all n rows (on one process: the mean over all rows), or
        the chunks' sums added up (reduction="sum")."""
        model, k, n = self.model, self.k, self.n
        self.set_theta(theta)
        loss = 0.0
        grad = np.zeros(theta.shape[0])
        for start in range(self.lo, self.hi, self.chunk):
            stop = min(start + self.chunk, self.hi)
            v = self.buffers.views(stop - start)
            X0 = csr_run(k, self.X, start, stop) if self.sparse else None
            if X0 is None:
                k.write(v.A[0], self.X[start:stop])
            k.write(v.T, self.T[start:stop])
            if self.w is not None:
                k.write(v.w, self.w[start:stop])
            model._forward(v, True, X0)
            part = model._loss_and_grad(v)  # the chunk's mean loss, delta of the outputs
            model._backward(v, X0)
            share = 1.0 if self.summed else (stop - start) / n
            loss += part * share
            grad += k.to_host(model._grad) * share
        return loss, grad

    def __call__(self, theta):
        self.n_calls += 1
        if self.dist is not None:  # rank 0: the others evaluate their rows at theta too
            self.dist.main_value(("eval", theta))
        loss, grad = self._part(theta)
        if self.dist is not None:
            total = self.dist.reduce_to_main(np.concatenate([[loss], grad]))
            loss, grad = float(total[0]), total[1:]
        self.data_loss = self.scale * loss
        grad *= self.scale
        value = self.data_loss
        if self.l2:
            W = theta[self.mask]
            value += 0.5 * self.l2 * float(W @ W)
            grad[self.mask] += self.l2 * W
        if self.frozen is not None:
            grad[self.frozen] = 0.0
        if not math.isfinite(value) or not np.isfinite(grad).all():
            what = (f"the loss became {value}" if not math.isfinite(value) else
                    f"the gradient became non-finite (the loss was {value:.6g}: a "
                    f"{self.model.dtype.name} overflow)")
            raise DivergenceError(
                f"L-BFGS diverged: {what} at function evaluation {self.n_calls}; the weights "
                "are back to where the last finite evaluation left them. Scale the inputs "
                "(e.g. standardize them) or add an L2 penalty (l2=...)."
            )
        return value, grad

    def serve(self):
        """Ranks > 0: evaluate rank 0's points until it sends the result (returned) or a
        divergence (raised here too, with rank 0's last finite point)."""
        while True:
            what, *payload = self.dist.main_value(None)
            if what == "eval":
                with self.model._guard.step_lock:
                    loss, grad = self._part(payload[0])
                self.dist.reduce_to_main(np.concatenate([[loss], grad]))
                continue
            with self.model._guard.step_lock:
                self.set_theta(payload[-1])
            if what == "error":
                self.dist.diverged = True
                raise DivergenceError(payload[0])
            return payload[0], payload[1]


def _result_to_send(result):
    """The fields of SciPy's OptimizeResult that the callers read (no inverse Hessian)."""
    from scipy.optimize import OptimizeResult

    return OptimizeResult({key: result[key] for key in
                           ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success",
                            "message") if key in result})


def _minimize(model, X, T, w, *, l2=0.0, scale=1.0, max_iter=200, max_fun=15000, tol=1e-4,
              chunk_size=4096, verbose=False, dist=None):
    """Run L-BFGS-B on already checked data; returns (scipy's OptimizeResult, a list of
    (objective, its data term without the L2 term) after each iteration). `dist`: a
    fastmlp.distributed.DataParallel, this process's part of an MPI job (see the module)."""
    try:
        from scipy.optimize import minimize
    except ImportError as exc:  # pragma: no cover - scipy is installed with scikit-learn
        raise ImportError("L-BFGS needs SciPy: pip install scipy (or 'fastmlp[sklearn]')") from exc
    if not model._dense_only:
        raise ValueError("L-BFGS needs a model of Dense layers only (Dropout and BatchNorm make "
                         "the loss depend on the chunk and on chance, and its chunked passes "
                         "run Dense layers alone: give an activation to the Dense layer instead "
                         "of an Activation layer); got "
                         f"{[type(layer).__name__ for layer in model.layers]}")
    # one trainer per model (the objective works in the model's buffers); other models
    # train meanwhile
    with model._guard.training("fit_lbfgs"):
        objective = _Objective(model, X, T, w, l2, scale, chunk_size, dist)
        if dist is not None and dist.r != 0:
            return objective.serve()
        theta0 = model._kernels.to_host(model._theta).astype(np.float64)
        curve = []
        last = {"theta": theta0, "value": None}

        def fun(theta):  # each evaluation moves the weights: one whole "step" for readers
            try:
                with model._guard.step_lock:
                    value, grad = objective(theta)
            except DivergenceError:
                with model._guard.step_lock:
                    objective.set_theta(last["theta"])
                raise
            last["theta"], last["value"] = theta.copy(), value
            return value, grad

        def callback(intermediate_result):
            # (objective, its data term) at the iterate, which the line search evaluated last
            curve.append((float(intermediate_result.fun), objective.data_loss))
            if verbose:
                print("Iteration %d, loss = %.8f" % (len(curve), curve[-1][0]))

        with warnings.catch_warnings():
            # SciPy warns about its own deprecations of options we do not pass
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                result = minimize(fun, theta0, method="L-BFGS-B", jac=True, callback=callback,
                                  options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol})
            except DivergenceError as exc:
                if dist is not None:  # the others raise it too, at the same point
                    dist.diverged = True
                    dist.main_value(("error", str(exc), last["theta"]))
                raise
            if objective.frozen is not None:  # exactly as they were
                result.x[objective.frozen] = theta0[objective.frozen]
            with model._guard.step_lock:
                objective.set_theta(result.x)
        if dist is not None:
            result = _result_to_send(result)
            dist.main_value(("done", result, curve, result.x))
        return result, curve


def fit_lbfgs(model: Sequential, X: Inputs, y: ArrayLike, *, max_iter: int = 200,
              max_fun: int = 15000, tol: float = 1e-4, l2: float = 0.0,
              sample_weight: Optional[ArrayLike] = None, chunk_size: int = 4096,
              verbose: bool = False,
              distributed: Union[str, MPI, None] = None) -> SimpleNamespace:
    """Train `model` (a stack of Dense layers) on all of (X, y) with L-BFGS; returns a result.

    Minimises the model's loss over the data set -- its mean (weighted by `sample_weight`
    as in ``fit``: sum_i w_i l_i / n), or its sum for a model with ``reduction="sum"`` --
    plus ``l2 / 2 * sum ||W||^2`` over the weight matrices of the trainable layers (a layer
    with ``trainable=False`` keeps its parameters), with
    SciPy's L-BFGS-B: at most `max_iter` iterations and `max_fun` evaluations of the loss;
    it stops when every component of the projected gradient is <= `tol`. The loss and its
    gradient are computed by the model's kernels over `chunk_size` rows at a time. X may be
    dense or a SciPy sparse matrix/array.

    Returns a namespace: ``loss`` (the objective at the end), ``n_iter``, ``n_fun``
    (evaluations), ``converged`` (SciPy's status 0), ``message``, ``loss_curve`` (the
    objective after each iteration). A non-finite loss raises fastmlp.DivergenceError (a
    ValueError and a FloatingPointError) with the weights left at the last finite point.
    The optimizer state of ``model.optimizer`` is not touched.

    distributed="mpi" (or fastmlp.distributed.MPI(...)): one process of ``mpiexec -n P``;
    every process passes the same (X, y), computes the loss and gradient of its part of
    the rows, and ends with the same weights and result (see the module).
    """
    from .graph import Model
    from .model import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(
            "fit_lbfgs: model must be a fastmlp Sequential stack of Dense layers (such as "
            f"fastmlp.MLP([...]) without residual=True); got {type(model).__name__}"
            + (" (a graph Model: L-BFGS's chunked passes run Sequential stacks)"
               if isinstance(model, Model) else ""))
    max_iter = check_int(max_iter, "max_iter")
    max_fun = check_int(max_fun, "max_fun")
    tol = check_float(tol, "tol", low=0)
    l2 = check_float(l2, "l2", low=0)
    chunk_size = check_int(chunk_size, "chunk_size")
    Xs, T, labels = model._check_fit_data(X, y)
    if len(Xs) != 1:
        raise ValueError("fit_lbfgs trains single-input models; this model has several inputs")
    X = Xs[0]
    w = model._sample_weights(sample_weight, None, labels, X.shape[0])
    if distributed is None:
        result, curve = _minimize(model, X, T, w, l2=l2, max_iter=max_iter, max_fun=max_fun,
                                  tol=tol, chunk_size=chunk_size, verbose=bool(verbose))
    else:
        from .distributed import connect

        run = connect(distributed)
        with run.abort_on_failure():
            result, curve = _minimize(model, X, T, w, l2=l2, max_iter=max_iter, max_fun=max_fun,
                                      tol=tol, chunk_size=chunk_size,
                                      verbose=bool(verbose) and run.r == 0, dist=run)
    return SimpleNamespace(loss=float(result.fun), n_iter=int(result.nit), n_fun=int(result.nfev),
                           converged=result.status == 0, message=str(result.message),
                           loss_curve=[total for total, _ in curve])
