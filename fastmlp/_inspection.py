"""Looking inside a model (a base of every model, fastmlp._network._Network): where a
step's time goes (profile), the gradients of a batch without an update
(compute_gradients), layers by name and sub-models sharing the weights (get_layer, freeze,
unfreeze), the summary table and the plot."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Optional, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from ._typing import Inputs, PathLike
from .errors import DivergenceError
from .layers import Layer

#: the model's own class in the methods that return the model
_Self = TypeVar("_Self", bound="_Inspection")


class _Inspection:
    """profile, compute_gradients, get_layer, freeze / unfreeze, summary and plot of a
    model (they read what _Network and its subclasses set: layers, _slots, _forward...)."""

    def profile(self, X: Inputs, y: ArrayLike, steps: int = 50, batch_size: int = 32,
                gemm_gflops: Optional[float] = None,
                verbose: int = 1) -> list[dict[str, Any]]:
        """Where one training step's time goes, kernel call by kernel call.

        Runs `steps` training steps on mini-batches of (X, y), each kernel call timed on its
        own (gather, per layer the product and its epilogue, loss, weight and input
        gradients, update), and the step as `fit` runs it. Prints the table (verbose) and
        returns it as a list of dicts: per kernel ``kernel``, ``time_s`` (median),
        ``flop``, ``gflops`` and ``share`` of the kernels' sum (kind "kernel"), then the sum
        (kind "sum") and the fused step (kind "step") with ``fraction_of_limit``: the step's
        FLOP at the machine's GEMM rate in the model's dtype (`gemm_gflops`, measured with
        a NumPy float32 -- float64 for a float64 model -- matmul when None) over its time.
        The weights and optimizer state are put back.
        """
        from .profile import profile_step

        return profile_step(self, X, y, steps, batch_size, gemm_gflops, verbose)

    def compute_gradients(self, X: Inputs, y: ArrayLike, sample_weight: Optional[ArrayLike] = None
                          ) -> tuple[float, dict[str, dict[str, np.ndarray]]]:
        """The loss of the batch (X, y) and every layer's gradients, without an update
        (PyTorch's ``loss.backward()`` without ``optimizer.step()``).

        Returns ``(loss, grads)``: the batch-mean loss (as train_step's) and a dict
        {layer name: {"dW": ..., "db": ...}} (BatchNorm: "dgamma", "dbeta"), host arrays of
        the parameters' shapes, in the order of ``model.layers``. The weights, BatchNorm's
        running statistics, the optimizer state and the random generator (dropout masks) are
        as they were before the call; frozen layers (``trainable=False``) get their
        gradients too."""
        batch = self._check_batch(X, y, sample_weight)
        k = self._kernels
        with self._guard.training("compute_gradients"), self._guard.step_lock:
            v, X0 = self._load_batch(batch)
            rng_state = self._rng.bit_generator.state
            states = [(getattr(slot, name), k.to_host(getattr(slot, name)))
                      for layer, slot in zip(self.layers, self._slots) for name in layer.state_shapes()]
            try:
                self._forward(v, True, X0)
                loss = self._loss_and_grad(v)
                if math.isfinite(loss):
                    self._backward(v, X0)
            finally:  # a forward pass in training mode moves BatchNorm's running statistics
                for arr, host in states:
                    k.write(arr, host)
                self._rng.bit_generator.state = rng_state
            if not math.isfinite(loss):
                raise DivergenceError(f"the loss is {loss} on this batch: no gradients. "
                                      + self._divergence_advice())
            grads = {}
            for layer, slot in zip(self.layers, self._slots):
                names = layer.param_shapes()
                if names:
                    grads[layer.name] = {"d" + name: k.to_host(getattr(slot, "d" + name)) for name in names}
        return float(loss), grads

    # ------------------------------------------------------------------------------------
    # looking inside: layers by name, sub-models that share the weights

    def get_layer(self, name: Optional[str] = None, index: Optional[int] = None) -> Layer:
        """The layer called `name` (or at position `index` of ``model.layers``), as Keras."""
        if (name is None) == (index is None):
            raise TypeError("get_layer takes a name or an index: model.get_layer('hidden2')")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"index must be an int; got {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"index must be in [{-len(self.layers)}, {len(self.layers)}) "
                                 f"(the model has {len(self.layers)} layers); got {index}")
            return self.layers[index]
        if not isinstance(name, str):
            raise TypeError(f"name must be a layer's name (a string); got {name!r}")
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in this model; its layers are "
                         f"{[layer.name for layer in self.layers]}")

    def freeze(self: _Self, *names: str) -> _Self:
        """Set ``trainable = False`` on the named layers (all layers when no name is given);
        ``unfreeze`` undoes it. Returns the model."""
        return self._set_trainable(names, False)

    def unfreeze(self: _Self, *names: str) -> _Self:
        """Set ``trainable = True`` on the named layers (all layers when no name is given)."""
        return self._set_trainable(names, True)

    def _set_trainable(self, names, value):
        layers = [self.get_layer(name) for name in names] if names else self.layers
        for layer in layers:
            layer.trainable = value
        return self

    def _submodel(self, layer):
        """The graph Model from the inputs to `layer`'s output, sharing the weights (made
        once per layer, kept)."""
        sub = self._submodels.get(id(layer))
        if sub is None:
            from .graph import Model

            sub = Model(self.inputs, self._output_node_of(layer), loss="mse", device=self.device,
                        dtype=self.dtype.name)  # on this model's weights
            self._submodels[id(layer)] = sub
        return sub

    def _summary_rows(self):
        """(name, kind, output width, parameters, connected to) per node."""
        raise NotImplementedError

    def summary(self) -> str:
        """A table of the layers: name (type), output width, parameters and, as in Keras,
        what each is connected to."""
        rows = [("Layer (type)", "Output", "Params", "Connected to")]
        for name, kind, width, n, conn in self._summary_rows():
            rows.append((f"{name} ({kind})", str(width), str(n), ", ".join(conn)))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = lambda r: "  ".join(x.ljust(w_) for x, w_ in zip(r, widths)).rstrip()  # noqa: E731
        if self._loss_pending:
            loss = "loss chosen from the targets at the first fit"
        else:
            reason = "" if self.loss_reason in (None, "given") else f" ({self.loss_reason})"
            loss = f"loss={self.loss!r}{reason}"
        out = [f"{type(self).__name__} on {self.device} ({self.dtype.name}), {loss}",
               line(rows[0]), "-" * len(line(rows[0]))]
        out += [line(r) for r in rows[1:]]
        trainable = sum(math.prod(shape) for l, _, shape in self._param_shapes
                        if self.layers[l].trainable)
        out.append(f"total parameters: {self.n_parameters} (trainable: {trainable}, "
                   f"non-trainable: {self.n_parameters - trainable}); "
                   f"optimizer: {self.optimizer!r}")
        return "\n".join(out)

    def plot(self, path: Optional[PathLike] = None, ax: Any = None) -> Any:
        """Draw the model's layers as a graph (matplotlib, the ``plot`` extra); saves to
        `path` when given; returns the figure."""
        from .graph import Model
        from .plot import plot_graph

        return plot_graph(self if isinstance(self, Model) else _ChainView(self), path, ax)


class _ChainView:
    """A Sequential seen as a graph (for plot): input, then one node per layer."""

    def __init__(self, model):
        from .graph import Node

        nodes = [Node(None, (), model.sizes[0], "input")]
        for layer, width in zip(model.layers, model.sizes[1:]):
            nodes.append(Node(layer, (nodes[-1],), width, layer.name))
        self._graph = SimpleNamespace(nodes=nodes, ins=[[]] + [[i] for i in range(len(model.layers))],
                                      out=len(nodes) - 1)
