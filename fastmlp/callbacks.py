"""Callbacks with Keras' hooks, the History that `fit` returns, and the progress bar."""

from __future__ import annotations

import math
import os
import shutil
import string
import sys
import time
from typing import Any, Callable, Literal, Optional, Sequence

from ._typing import Inputs, PathLike
from ._validation import check_float, check_int


class Callback:
    """Base class: override the hooks you need. `self.model` is set before training starts.

    A callback stops training by setting ``self.model.stop_training = True``.
    """

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        pass

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        pass

    def check_fit(self, log_keys: Optional[frozenset[str]]) -> None:
        """Called by fit before its first epoch, with the keys its epoch logs will hold (a
        set: 'loss', the metrics, 'val_' + those with validation data, 'lr'), or None when
        they cannot be known (a callback of your own earlier in the list may add keys).
        Raise here on an argument this fit cannot satisfy, so that the mistake shows before
        the first epoch rather than after it. The default checks nothing."""


#: the history keys GradientMonitor writes: grad_norm/<layer name>
GRAD_NORM = "grad_norm/"


class History(Callback):
    """What `fit` returns: ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``...

    ``history.epoch`` lists the epochs run (0-based) and ``history.params`` the settings of the
    run (epochs, steps, batch size, samples). ``history.diverged`` is None, or (epoch, step)
    where training diverged (fit with on_divergence="warn").
    """

    def __init__(self) -> None:
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}
        self.diverged: Optional[tuple[int, int]] = None

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, path: Optional[PathLike] = None,
             keys: Optional[Sequence[str]] = None) -> Any:
        """Draw the loss and metric curves, training and validation, one panel per quantity.

        keys: the quantities to draw (default: every one in the history except val_* and lr;
        their val_ twins are drawn alongside). "grad_norm" draws GradientMonitor's
        ``grad_norm/<layer>`` curves together, one line per layer, on a log scale (the default
        does when the history has them). Saves a PNG (or any format matplotlib knows from
        the suffix) when `path` is given. Returns the matplotlib Figure. Needs matplotlib
        (``pip install fastmlp[plot]``); pyplot is not used, so no window opens.
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'fastmlp[plot]'") from None
        if not self.history:
            raise ValueError("the history is empty: nothing to plot (train with fit first)")
        grad_keys = [k for k in self.history if k.startswith(GRAD_NORM)]
        if keys is None:
            names = [k for k in self.history if not k.startswith("val_") and k != "lr"
                     and not k.startswith(GRAD_NORM)] + (["grad_norm"] if grad_keys else [])
        else:
            names = list(keys)
        for name in names:
            if name not in self.history and not (name == "grad_norm" and grad_keys):
                raise ValueError(f"keys: {name!r} is not in the history; it has {sorted(self.history)}")
        epochs = [e + 1 for e in self.epoch]
        fig = Figure(figsize=(4.5 * len(names), 3.6), layout="constrained")
        for i, name in enumerate(names):
            ax = fig.add_subplot(1, len(names), i + 1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: 1, 2, 3, not 1.5
            if name == "grad_norm" and name not in self.history:  # GradientMonitor's: one line per layer
                from matplotlib import colormaps

                colors = colormaps["viridis"]
                for j, key in enumerate(grad_keys):  # coloured from the first layer to the last
                    labelled = len(grad_keys) <= 8 or j in (0, len(grad_keys) - 1)
                    ax.plot(epochs, self.history[key], marker="o", markersize=3,
                            color=colors(j / max(len(grad_keys) - 1, 1)),
                            label=key[len(GRAD_NORM):] if labelled else "_nolegend_")
                ax.set_yscale("log")
                ax.set_title("gradient norm per layer")
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3)
                ax.legend(fontsize="small")
                continue
            ax.plot(epochs, self.history[name], marker="o", markersize=3, label="training")
            if "val_" + name in self.history:
                ax.plot(epochs, self.history["val_" + name], marker="o", markersize=3, label="validation")
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def _format_seconds(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


#: the shorter names a progress line takes when the full ones would not fit the terminal
SHORT_NAMES = {"accuracy": "acc", "binary_accuracy": "bin_acc"}


def _short_name(key):
    """``accuracy`` -> ``acc``, ``val_accuracy`` -> ``val_acc``; other keys as they are."""
    prefix = "val_" if key.startswith("val_") else ""
    name = key[len(prefix):]
    return prefix + SHORT_NAMES.get(name, name)


def _format_value(value, digits):
    """`digits` decimals; very small or very large magnitudes in e-notation, so that a
    loss of 1e-7 does not read 0.0000 and one of 1e12 does not take 17 characters."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}f}"
    return f"{value:.{digits - 1}e}"  # nan and inf come out as 'nan', 'inf'


def format_logs(logs, digits=4, short=False, sep=" - "):
    """``loss: 0.1234 - accuracy: 0.9740``; `short` uses SHORT_NAMES."""
    return sep.join(f"{_short_name(key) if short else key}: {_format_value(value, digits)}"
                    for key, value in logs.items())


#: how many characters of bar a progress line keeps before its metrics are shortened
MIN_BAR = 10


def fit_line(width, head, timings, logs, bar=None, max_bar=30):
    """One progress line, ``head [bar] - timing - metrics``, in at most `width` characters.

    timings: the ways to write the timing, longest first (the last may be "": none).
    bar: a function of the bar's width (in characters, inside the brackets) giving the bar
    with its brackets, or None for a line without one; max_bar: its widest. `width` None:
    no limit (the full line).

    The line gives way in this order, each step taken only when the line still does not fit:
    1. the bar shrinks (from max_bar down to MIN_BAR);
    2. metric names shorten (val_accuracy -> val_acc), then values lose a digit;
    3. the bar goes; the " - " separators become blanks; the timing shortens;
    4. metrics are left out from the last one; what is left is cut at `width`.
    """
    def line(bar_text, sep, timing, metrics):
        start = head + (" " + bar_text if bar_text else "")
        return sep.join([start] + [part for part in (timing, metrics) if part])

    if width is None:  # no terminal to fit: the full line
        return line(bar(max_bar) if bar else "", " - ", timings[0], format_logs(logs))
    for short, digits in ((False, 4), (True, 4), (True, 3)):  # steps 1 and 2
        metrics = format_logs(logs, digits, short)
        if bar is None:
            text = line("", " - ", timings[0], metrics)
            if len(text) <= width:
                return text
            continue
        room = width - len(line(bar(0), " - ", timings[0], metrics))
        if room >= MIN_BAR:
            return line(bar(min(room, max_bar)), " - ", timings[0], metrics)
    candidates = [line("", " - ", timings[0], metrics)]  # step 3
    candidates += [line("", " ", timing, format_logs(logs, 3, True, " ")) for timing in timings]
    items = list(logs.items())
    candidates += [line("", " ", timings[-1], format_logs(dict(items[:n]), 3, True, " "))
                   for n in range(len(items) - 1, -1, -1)]  # step 4
    for text in candidates:
        if len(text) <= width:
            return text
    return text[:width]


def _any_reads_gradients(callbacks):
    """Whether one of the callbacks reads the gradient buffers after the steps (a
    GradientMonitor without data), so that fit must write them and not fold plain SGD's
    update into the backward pass."""
    return any(getattr(cb, "reads_gradients", False) for cb in callbacks)


class GradientMonitor(Callback):
    """Records each layer's gradient norm per epoch into the history, under
    ``grad_norm/<layer name>`` (the L2 norm of all its parameters' gradients, e.g. dW and db
    together), so that ``history.plot()`` shows whether gradients vanish or explode.

    data: None (default) takes the gradients of each epoch's last training step (no extra
    work; after clip_norm, where set); a pair (X, y) computes them on that fixed batch at
    the end of each epoch with ``model.compute_gradients`` (comparable from epoch to epoch;
    costs one forward and backward pass of that batch).
    """

    def __init__(self, data: Optional[tuple[Inputs, Any]] = None) -> None:
        if data is not None and (not isinstance(data, (tuple, list)) or len(data) != 2):
            raise TypeError(f"data must be None or a pair (X, y); got {type(data).__name__}")
        self.data = data

    @property
    def reads_gradients(self) -> bool:
        """Reads the last step's gradient buffers (fit then writes them at every step: plain
        SGD's update folded into backward -- fastmlp/_fast_fit.py, a graph Model's steps --
        would leave them unwritten)."""
        return self.data is None

    def norms(self) -> dict[str, float]:
        """{layer name: gradient norm} now (see the class docstring for which gradients)."""
        model = self.model
        if self.data is not None:
            _, grads = model.compute_gradients(*self.data)
            return {name: math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in d.values()))
                    for name, d in grads.items()}
        k, out = model._kernels, {}
        for layer, slot in zip(model.layers, model._slots):
            names = layer.param_shapes()
            if names:
                out[layer.name] = math.sqrt(sum(float((k.to_host(getattr(slot, "d" + n)).astype("float64") ** 2).sum())
                                                for n in names))
        return out

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        history = getattr(self.model, "history", None)
        for name, value in self.norms().items():
            if history is not None:  # into the history, not the logs: the progress bar stays short
                history.history.setdefault(GRAD_NORM + name, []).append(value)


class ProgressBar(Callback):
    """Keras-style progress, drawn to suit where it goes:

    - a terminal: verbose=1 a bar redrawn in place with carriage returns, verbose=2 one line
      per epoch; every line fits the terminal's width, read again for each line (the bar
      shrinks first, then the metric names and digits: see fit_line), so nothing wraps;
    - Jupyter (the stream is ipykernel's, no terminal): the same, redrawn in place (the
      notebook's stream output honours "\r");
    - anything else (a file, a pipe, a CI log): no redraws and no width limit; verbose=1
      writes the epoch's header and its final bar, verbose=2 one line per epoch.
    """

    width = 30  # the bar's width, at most
    interval = 0.1  # seconds between redraws

    def __init__(self, verbose=1, stream=None):
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout

    def _is_tty(self):
        isatty = getattr(self.stream, "isatty", None)
        try:
            return callable(isatty) and bool(isatty())
        except ValueError:  # a closed stream
            return False

    def _mode(self):
        """'terminal', 'notebook' (the stream is a Jupyter kernel's output, which is no
        terminal but honours "\r") or 'plain'."""
        if self._is_tty():
            return "terminal"
        kernel = type(self.stream).__module__.startswith("ipykernel")
        return "notebook" if kernel and "ipykernel" in sys.modules else "plain"

    def _interactive(self):
        """Whether the bar is redrawn in place during the epoch."""
        return self.verbose == 1 and self._mode() != "plain"

    def _columns(self):
        """The characters a line may take: one less than the terminal's width (a line that
        fills the last column makes some terminals wrap), or None: no limit (plain mode).
        Read for each line, so that a resized window is followed."""
        if self._mode() == "plain":
            return None
        return max(shutil.get_terminal_size().columns - 1, 1)

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.epochs = self.model._fit_params["epochs"]
        self.steps = self.model._fit_params["steps"]

    def _redraw(self, text, end=""):
        """Write `text` over the line drawn last (a terminal line redrawn in place), padded
        with blanks to that line's width so that nothing of a longer line stays behind
        (never past the terminal's width: the padding must not wrap either)."""
        columns = self._columns() or len(text)
        pad = max(min(self._drawn, columns) - len(text), 0)
        self.stream.write("\r" + text + " " * pad + end)
        self._drawn = 0 if end else len(text)

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.epoch_start = self.last_draw = time.perf_counter()
        self._drawn = 0  # width of the line drawn in place so far
        if self.verbose == 1:
            header = f"Epoch {epoch + 1}/{self.epochs}"
            self.stream.write(header[: self._columns()] + "\n")
            self.stream.flush()

    def _bar(self, step, width=None):
        """``[=====>....]``, `width` characters inside the brackets (default: self.width)."""
        width = self.width if width is None else width
        done = int(width * step / self.steps)
        arrow = ">" if step < self.steps and done > 0 else ""
        return f"[{'=' * (done - len(arrow))}{arrow}{'.' * (width - done)}]"

    def on_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if not self._interactive():
            return
        now = time.perf_counter()
        step = batch + 1
        if now - self.last_draw < self.interval and step < self.steps:
            return
        self.last_draw = now
        elapsed = now - self.epoch_start
        eta = _format_seconds(elapsed / step * (self.steps - step))
        head = f"{step:>{len(str(self.steps))}}/{self.steps}"
        line = fit_line(self._columns(), head, [f"ETA: {eta}", ""], logs or {},
                        lambda width: self._bar(step, width), self.width)
        self._redraw(line)
        self.stream.flush()

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        elapsed = time.perf_counter() - self.epoch_start
        per_step = elapsed / max(self.steps, 1)
        per = f"{per_step * 1e3:.0f}ms" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us"
        timings = [f"{_format_seconds(elapsed)} {per}/step", _format_seconds(elapsed)]
        metrics = {k: v for k, v in (logs or {}).items() if k != "lr"}
        if self.verbose == 1:
            line = fit_line(self._columns(), f"{self.steps}/{self.steps}", timings, metrics,
                            lambda width: self._bar(self.steps, width), self.width)
        else:
            line = fit_line(self._columns(), f"Epoch {epoch + 1}/{self.epochs}", timings, metrics)
        if self._interactive():
            self._redraw(line, end="\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _check_monitor_mode(monitor, mode):
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be a history key such as 'val_loss'; got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode == "auto":
        mode = "max" if monitor.endswith(("accuracy", "r2")) else "min"
    return mode


def _monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        raise ValueError(
            f"{who}: monitor={monitor!r} is not in the epoch's logs; they hold {sorted(logs or {})} "
            "(val_* keys need validation_data or validation_split)"
        )
    return logs[monitor]


def _check_monitor(who, monitor, log_keys):
    """At fit's start: `monitor` must be a key the epoch logs will hold."""
    if log_keys is None or monitor in log_keys:
        return
    hint = ""
    if monitor.startswith("val_") and not any(key.startswith("val_") for key in log_keys):
        hint = "; val_* keys need validation_data or validation_split"
    raise ValueError(f"{who}: monitor={monitor!r} is not a key this fit logs; expected one of "
                     f"{sorted(log_keys)}{hint}")


def _writes_logs(cb):
    """Whether `cb` may put keys of its own into the epoch's logs: fastmlp's callbacks only
    read them; a callback of yours with an on_epoch_end of its own (or a LambdaCallback
    given one) may write any key, for the callbacks after it to read."""
    if isinstance(cb, LambdaCallback):
        return "on_epoch_end" in vars(cb)
    owner = next(k for k in type(cb).__mro__ if "on_epoch_end" in vars(k))
    return owner.__module__ != __name__


def fit_log_keys(metrics, validation):
    """The keys of the epoch logs a fit will write: 'loss', the metrics its _Metrics
    (fastmlp/_metrics.py) computes, the same with 'val_' when there is validation data,
    and 'lr'. `validation`: whether there is."""
    if metrics.poisson:
        names = []
    elif metrics.classification:
        names = [metrics.key]
    else:
        names = ["mae", "r2"]
    keys = ["loss", *names]
    return keys + (["val_" + key for key in keys] if validation else []) + ["lr"]


def check_callbacks(callbacks, log_keys):
    """Check every callback's arguments against the fit about to run (Callback.check_fit),
    in list order: the keys of a callback's logs are known until a callback of the user's
    that may write keys of its own (see _writes_logs); from there on they are not (None)."""
    keys = None if log_keys is None else frozenset(log_keys)
    for cb in callbacks:
        cb.check_fit(keys)
        if keys is not None and _writes_logs(cb):
            keys = None


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience`
    epochs (Keras' semantics). With restore_best_weights, the weights of the best epoch are
    put back when training ends. ``stopped_epoch``, ``best`` and ``best_epoch`` tell what
    happened."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: Literal["auto", "min", "max"] = "auto",
                 restore_best_weights: bool = False) -> None:

        self.monitor = monitor
        self.mode = _check_monitor_mode(monitor, mode)
        self.min_delta = abs(check_float(min_delta, "min_delta"))
        self.patience = check_int(patience, "patience", minimum=0)
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"restore_best_weights must be True or False; got {restore_best_weights!r}")
        self.restore_best_weights = restore_best_weights

    def check_fit(self, log_keys: Optional[frozenset[str]]) -> None:
        _check_monitor("EarlyStopping", self.monitor, log_keys)

    def _improved(self, current):
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.wait = 0
        self.best = float("inf") if self.mode == "min" else -float("inf")
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after each epoch (``model.save``, atomic). `filepath` may hold
    ``{epoch}`` and log keys, formatted as in Keras: ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``.
    With save_best_only, save only when `monitor` improves."""

    #: the suffixes model.save writes (fastmlp/saving.py)
    SUFFIXES = (".npz",)

    def __init__(self, filepath: PathLike, monitor: str = "val_loss",
                 save_best_only: bool = False,
                 mode: Literal["auto", "min", "max"] = "auto") -> None:
        self.filepath = os.fspath(filepath)
        if not isinstance(self.filepath, str):
            raise TypeError(f"ModelCheckpoint: filepath must be a str or a path; got {filepath!r}")
        if not self.filepath.endswith(self.SUFFIXES):
            raise ValueError(f"ModelCheckpoint: filepath must end in one of {list(self.SUFFIXES)} "
                             f"(the files model.save writes); got {self.filepath!r}")
        self.monitor = monitor
        self.mode = _check_monitor_mode(monitor, mode)
        if not isinstance(save_best_only, bool):
            raise TypeError(f"save_best_only must be True or False; got {save_best_only!r}")
        self.save_best_only = save_best_only
        self.best = float("inf") if self.mode == "min" else -float("inf")

    def check_fit(self, log_keys: Optional[frozenset[str]]) -> None:
        """The monitor (with save_best_only), the fields of `filepath` ({epoch} and log
        keys) and its folder: one that exists and that we may write into."""
        if self.save_best_only:
            _check_monitor("ModelCheckpoint", self.monitor, log_keys)
        fields = {name for _, name, _, _ in string.Formatter().parse(self.filepath) if name}
        path = self.filepath
        if fields and log_keys is not None:
            unknown = sorted(fields - set(log_keys) - {"epoch"})
            if unknown:
                raise ValueError(f"ModelCheckpoint: filepath={self.filepath!r} has the field(s) "
                                 f"{unknown}, which this fit does not log; expected 'epoch' or "
                                 f"one of {sorted(log_keys)}")
            try:  # with stand-in values: a format spec that cannot apply fails here
                path = self.filepath.format(epoch=1, **{key: 0.0 for key in log_keys})
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"ModelCheckpoint: filepath={self.filepath!r} cannot be "
                                 f"formatted with epoch and the logs' values: {exc}") from None
        if fields and log_keys is None and "{" in os.path.dirname(self.filepath):
            return  # the folder depends on keys we cannot know yet
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"ModelCheckpoint: filepath={self.filepath!r} is in the folder "
                             f"{folder!r}, which does not exist; expected an existing folder "
                             "(create it first)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"ModelCheckpoint: filepath={self.filepath!r} is in the folder "
                                  f"{folder!r}, which this process may not write into; "
                                  "expected a writable folder")

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not (current < self.best if self.mode == "min" else current > self.best):
                return
            self.best = current
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"filepath {self.filepath!r} cannot be formatted with epoch and {sorted(logs)}: {exc}") from None
        self.model.save(path)


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.
    Hooks: on_train_begin(logs), on_train_end(logs), on_epoch_begin(epoch, logs),
    on_epoch_end(epoch, logs), on_batch_begin(batch, logs), on_batch_end(batch, logs)."""

    HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
             "on_batch_begin", "on_batch_end")

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        for name, fn in hooks.items():
            if name not in self.HOOKS:
                raise TypeError(f"LambdaCallback has no hook {name!r}; hooks: {list(self.HOOKS)}")
            if not callable(fn):
                raise TypeError(f"{name} must be callable; got {fn!r}")
            setattr(self, name, fn)


# ---------------------------------------------------------------------------------------
# learning-rate schedules: callbacks that set optimizer.lr at the start of each epoch


class LearningRateSchedule(Callback):
    """Base of the epoch-wise schedules: ``lr(epoch)`` from the base rate, the optimizer's lr
    when training first begins. The lr used in each epoch is in ``history.history["lr"]``."""

    base_lr = None

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        if self.base_lr is None:
            self.base_lr = self.model.optimizer.lr

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.model.optimizer.lr = self.lr(epoch)

    def lr(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class StepDecay(LearningRateSchedule):
    """``lr = base_lr * gamma ** (epoch // step_size)`` (torch.optim.lr_scheduler.StepLR)."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:

        self.step_size = check_int(step_size, "step_size")
        self.gamma = check_float(gamma, "gamma", low=0, low_open=True)

    def lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(LearningRateSchedule):
    """``lr = base_lr * gamma ** epoch`` (torch.optim.lr_scheduler.ExponentialLR)."""

    def __init__(self, gamma: float) -> None:

        self.gamma = check_float(gamma, "gamma", low=0, low_open=True)

    def lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineDecay(LearningRateSchedule):
    """Cosine annealing from base_lr to min_lr over `epochs` epochs, after an optional linear
    warm-up: ``lr = base_lr * (epoch + 1) / warmup_epochs`` for the first warmup_epochs,
    then ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2`` with
    t = epoch - warmup_epochs and T = epochs - warmup_epochs (min_lr from epoch `epochs` on)."""

    def __init__(self, epochs: int, min_lr: float = 0.0, warmup_epochs: int = 0) -> None:

        self.epochs = check_int(epochs, "epochs")
        self.min_lr = check_float(min_lr, "min_lr", low=0)
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be < epochs ({self.epochs}); got {self.warmup_epochs}")

    def lr(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.base_lr * (epoch + 1) / self.warmup_epochs
        t = min(epoch - self.warmup_epochs, self.epochs - self.warmup_epochs)
        T = self.epochs - self.warmup_epochs
        lr = self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / T)) / 2
        return max(lr, 1e-300)  # the optimizer needs lr > 0


class ReduceLROnPlateau(Callback):
    """Multiply the lr by `factor` when `monitor` has not improved by more than `min_delta`
    for `patience` epochs, then wait `cooldown` epochs; never below min_lr (Keras' semantics).
    The new lr applies from the next epoch."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: Literal["auto", "min", "max"] = "auto") -> None:

        self.monitor = monitor
        self.mode = _check_monitor_mode(monitor, mode)
        self.factor = check_float(factor, "factor", low=0, high=1, low_open=True, high_open=True)
        self.patience = check_int(patience, "patience", minimum=0)
        self.min_delta = abs(check_float(min_delta, "min_delta"))
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.min_lr = check_float(min_lr, "min_lr", low=0)

    def check_fit(self, log_keys: Optional[frozenset[str]]) -> None:
        _check_monitor("ReduceLROnPlateau", self.monitor, log_keys)

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.wait = 0
        self.cooldown_left = 0
        self.best = float("inf") if self.mode == "min" else -float("inf")

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        improved = (current < self.best - self.min_delta if self.mode == "min"
                    else current > self.best + self.min_delta)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if improved:
            self.best, self.wait = current, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                new_lr = max(opt.lr * self.factor, self.min_lr)
                if new_lr < opt.lr and new_lr > 0:
                    opt.lr = new_lr
                self.cooldown_left = self.cooldown
                self.wait = 0
