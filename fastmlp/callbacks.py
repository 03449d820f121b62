"""Callbacks with Keras' hooks, the History that `fit` returns, and the progress bar."""

import sys
import time


class Callback:
    """Base class: override the hooks you need. `self.model` is set before training starts.

    A callback stops training by setting ``self.model.stop_training = True``.
    """

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """What `fit` returns: ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``...

    ``history.epoch`` lists the epochs run (0-based) and ``history.params`` the settings of the
    run (epochs, steps, batch size, samples).
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.params = {}

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _format_seconds(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def format_logs(logs):
    return " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())


class ProgressBar(Callback):
    """Keras-style progress: verbose=1 a bar redrawn in place (one line per epoch when the
    output is not a terminal), verbose=2 one line per epoch.
    """

    width = 30
    interval = 0.1  # seconds between redraws

    def __init__(self, verbose=1, stream=None):
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout

    def _interactive(self):
        isatty = getattr(self.stream, "isatty", None)
        return self.verbose == 1 and callable(isatty) and isatty()

    def on_train_begin(self, logs=None):
        self.epochs = self.model._fit_params["epochs"]
        self.steps = self.model._fit_params["steps"]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.last_draw = time.perf_counter()
        if self.verbose == 1:
            self.stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            self.stream.flush()

    def _bar(self, step):
        done = int(self.width * step / self.steps)
        arrow = ">" if step < self.steps else ""
        return f"[{'=' * max(done - len(arrow), 0)}{arrow}{'.' * (self.width - done)}]"

    def on_batch_end(self, batch, logs=None):
        if not self._interactive():
            return
        now = time.perf_counter()
        step = batch + 1
        if now - self.last_draw < self.interval and step < self.steps:
            return
        self.last_draw = now
        elapsed = now - self.epoch_start
        eta = elapsed / step * (self.steps - step)
        line = f"\r{step:>{len(str(self.steps))}}/{self.steps} {self._bar(step)} - ETA: {_format_seconds(eta)}"
        if logs:
            line += " - " + format_logs(logs)
        self.stream.write(line)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.epoch_start
        per_step = elapsed / max(self.steps, 1)
        per = f"{per_step * 1e3:.0f}ms" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us"
        timing = f"{_format_seconds(elapsed)} {per}/step"
        metrics = format_logs({k: v for k, v in (logs or {}).items() if k != "lr"})
        if self.verbose == 1:
            prefix = "\r" if self._interactive() else ""
            line = f"{prefix}{self.steps}/{self.steps} {self._bar(self.steps)} - {timing} - {metrics}"
        else:
            line = f"Epoch {epoch + 1}/{self.epochs} - {timing} - {metrics}"
        self.stream.write(line + "\n")
        self.stream.flush()
