"""The progress bar as a terminal shows it: lines redrawn in place with carriage returns,
each fitting the terminal's width; redrawn in place in Jupyter too; where the output is no
terminal, no redraws (verbose=2 one line per epoch, verbose=1 the header and final bar)."""

import io
import sys
import types
from types import SimpleNamespace

import pytest

import fastmlp
from fastmlp.callbacks import ProgressBar, fit_line, format_logs


@pytest.fixture(autouse=True)
def columns(monkeypatch):
    """An 80-column terminal unless a test says otherwise (shutil.get_terminal_size reads
    COLUMNS first); call it with a width to resize."""
    def resize(width):
        monkeypatch.setenv("COLUMNS", str(width))

    resize(80)
    return resize


class FakeTerminal:
    """A stream that says it is a terminal and keeps the screen: '\\r' moves the cursor to
    the start of the line, later characters overwrite earlier ones, '\\n' ends the line."""

    def __init__(self):
        self.lines, self.line, self.col = [], [], 0

    def isatty(self):
        return True

    def flush(self):
        pass

    def write(self, text):
        for ch in text:
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.lines.append("".join(self.line))
                self.line, self.col = [], 0
            else:
                if self.col < len(self.line):
                    self.line[self.col] = ch
                else:
                    self.line.append(ch)
                self.col += 1

    def screen(self):
        return self.lines + ["".join(self.line)]


def _bar(steps=20, epochs=1):
    term = FakeTerminal()
    bar = ProgressBar(verbose=1, stream=term)
    bar.interval = 0.0  # redraw at every step
    bar.set_model(SimpleNamespace(_fit_params={"epochs": epochs, "steps": steps}))
    bar.on_train_begin()
    return bar, term


def test_a_shorter_line_leaves_no_stale_characters_behind():
    bar, term = _bar()
    bar.on_epoch_begin(0)
    bar.on_batch_end(0, {"loss": 1.234567, "accuracy": 0.974, "some_long_metric_name": 0.5})
    long_line = term.screen()[-1]
    bar.on_batch_end(1, {"loss": 1.2})  # a much shorter line in the same place
    now = term.screen()[-1]
    assert now.rstrip() == now.rstrip().split(" - loss")[0] + " - loss: 1.2000"
    assert "accuracy" not in now and "some_long_metric_name" not in now
    assert len(now) == len(long_line)  # blanked to the old width, not beyond
    bar.on_epoch_end(0, {"loss": 1.0})
    screen = term.screen()
    assert screen[-1] == ""  # the epoch's line is finished with a newline
    final = screen[-2]
    assert final.startswith("20/20 [") and "loss: 1.0000" in final
    assert "accuracy" not in final and "some_long_metric_name" not in final


def test_each_epoch_starts_its_own_line():
    bar, term = _bar(steps=3, epochs=2)
    for epoch in range(2):
        bar.on_epoch_begin(epoch)
        for step in range(3):
            bar.on_batch_end(step, {"loss": 10.0 ** -step})
        bar.on_epoch_end(epoch, {"loss": 0.01})
    screen = [line for line in term.screen() if line]
    assert screen[0] == "Epoch 1/2" and screen[2] == "Epoch 2/2"
    assert screen[1].startswith("3/3 [==============================]") and screen[1].rstrip().endswith("loss: 0.0100")
    assert len(screen) == 4


def test_fit_draws_through_the_same_bar(monkeypatch):
    X, y = fastmlp.datasets.load_digits()
    term = FakeTerminal()
    monkeypatch.setattr("sys.stdout", term)
    fastmlp.MLP([64, 8, 10], loss="cross_entropy", seed=0).fit(X[:200], y[:200], epochs=2,
                                                            batch_size=20, verbose=1)
    screen = [line for line in term.screen() if line]
    assert [line for line in screen if line.startswith("Epoch")] == ["Epoch 1/2", "Epoch 2/2"]
    assert all("10/10 [" in line for line in screen if not line.startswith("Epoch"))


# ---------------------------------------------------------------------------------------
# lines that fit the terminal


class TtyStringIO(io.StringIO):
    """Everything written, from a stream that says it is a terminal."""

    def isatty(self):
        return True


def _pieces(text):
    """What a terminal draws from left to right: `text` split on carriage returns and
    newlines (a piece longer than the terminal would wrap)."""
    return text.replace("\r", "\n").split("\n")


VAL_LOGS = {"loss": 0.123456, "accuracy": 0.9731, "val_loss": 0.25, "val_accuracy": 0.9512,
            "lr": 0.001}


def _run(stream, verbose, epochs=1000, steps=1875, epoch=99, logs=VAL_LOGS):
    """One epoch (number `epoch` + 1 of `epochs`) of `steps` steps, every step drawn."""
    bar = ProgressBar(verbose=verbose, stream=stream)
    bar.interval = 0.0
    bar.set_model(SimpleNamespace(_fit_params={"epochs": epochs, "steps": steps}))
    bar.on_train_begin()
    bar.on_epoch_begin(epoch)
    batch_logs = {k: v for k, v in logs.items() if not k.startswith("val_") and k != "lr"}
    for step in (0, 1, steps // 3, steps - 1):
        bar.on_batch_end(step, batch_logs)
    bar.on_epoch_end(epoch, logs)
    return stream.getvalue() if hasattr(stream, "getvalue") else stream


@pytest.mark.parametrize("width", [80, 40])
@pytest.mark.parametrize("verbose", [1, 2])
def test_no_line_is_wider_than_the_terminal(columns, width, verbose):
    columns(width)
    out = _run(TtyStringIO(), verbose)
    assert max(len(piece) for piece in _pieces(out)) < width  # the last column stays free
    assert "Epoch 100/1000" in out
    final = _pieces(out)[-2]  # the epoch's line, before its newline
    assert "loss: 0.123" in final


def test_the_bar_shrinks_before_the_names_do(columns):
    """Without validation metrics an 80-column line keeps the names and a shorter bar; a
    wide terminal keeps the full bar."""
    logs = {"loss": 0.5, "accuracy": 0.75}
    final = _pieces(_run(TtyStringIO(), 1, logs=logs))[-2]
    assert "accuracy: 0.7500" in final and "[" + "=" * 10 in final
    assert "=" * ProgressBar.width not in final
    columns(200)
    final = _pieces(_run(TtyStringIO(), 1, logs=VAL_LOGS))[-2]
    assert "[" + "=" * ProgressBar.width + "]" in final and "val_accuracy: 0.9512" in final


def test_then_names_and_digits_shorten(columns):
    """val_accuracy is what made the summary wrap: in 80 columns it reads val_acc."""
    final = _pieces(_run(TtyStringIO(), 2))[-2]
    assert "val_acc: 0.951" in final and "val_accuracy" not in final
    assert final.startswith("Epoch 100/1000")


def test_a_resized_terminal_is_followed(columns):
    term = FakeTerminal()
    bar = ProgressBar(verbose=1, stream=term)
    bar.interval = 0.0
    bar.set_model(SimpleNamespace(_fit_params={"epochs": 2, "steps": 10}))
    bar.on_train_begin()
    for epoch, width in enumerate([120, 40]):
        columns(width)
        bar.on_epoch_begin(epoch)
        for step in range(10):
            bar.on_batch_end(step, {"loss": 0.5, "accuracy": 0.75})
        bar.on_epoch_end(epoch, VAL_LOGS)
        assert all(len(line) < width for line in term.screen()[-3:])


def test_fit_line_gives_way_in_order():
    logs = {"loss": 0.123456, "val_accuracy": 0.5}

    def bar(width):
        return "[" + "=" * width + "]"

    full = fit_line(None, "3/3", ["1s 5ms/step", "1s"], logs, bar)
    assert full == "3/3 [" + "=" * 30 + "] - 1s 5ms/step - loss: 0.1235 - val_accuracy: 0.5000"
    widths = range(len(full), 0, -1)
    lines = [fit_line(w, "3/3", ["1s 5ms/step", "1s"], logs, bar) for w in widths]
    assert all(len(line) <= w for line, w in zip(lines, widths))
    assert "3/3 [" + "=" * 10 + "] - 1s 5ms/step - loss: 0.1235 - val_accuracy: 0.5000" in lines
    assert "3/3 [" + "=" * 10 + "] - 1s 5ms/step - loss: 0.1235 - val_acc: 0.5000" in lines
    assert "3/3 - 1s 5ms/step - loss: 0.123 - val_acc: 0.500" in lines
    assert "3/3 1s 5ms/step loss: 0.123 val_acc: 0.500" in lines
    assert "3/3 1s loss: 0.123 val_acc: 0.500" in lines
    assert "3/3 1s loss: 0.123" in lines and "3/3 1s" in lines
    assert lines[-1] == "3"  # cut, as a last resort


def test_values_keep_their_magnitude():
    assert format_logs({"loss": 1.5e-7, "mae": 2.5e12, "r2": 0.0}) == (
        "loss: 1.500e-07 - mae: 2.500e+12 - r2: 0.0000")
    assert format_logs({"loss": float("nan")}) == "loss: nan"


# ---------------------------------------------------------------------------------------
# not a terminal; Jupyter


def test_plain_output_has_one_line_per_epoch_and_no_redraws(columns):
    """A file or a pipe: verbose=2 one line per epoch, verbose=1 the epoch's header and its
    final bar (no line per step), never a carriage return, and nothing shortened: a log
    file does not wrap."""
    columns(40)
    for verbose, lines_per_epoch in ((2, 1), (1, 2)):
        stream = io.StringIO()
        for epoch in range(3):
            _run(stream, verbose, epochs=3, epoch=epoch)
        out = stream.getvalue()
        assert "\r" not in out
        lines = out.splitlines()
        assert len(lines) == 3 * lines_per_epoch
        summaries = lines[lines_per_epoch - 1::lines_per_epoch]
        assert all("val_accuracy: 0.9512" in line for line in summaries)
        if verbose == 1:
            assert lines[0] == "Epoch 1/3" and lines[1].startswith("1875/1875 [" + "=" * 30 + "]")


class KernelStream(io.StringIO):
    """Stands for ipykernel's OutStream: sys.stdout in a notebook, not a terminal."""


KernelStream.__module__ = "ipykernel.iostream"


def test_jupyter_redraws_in_place(monkeypatch, columns):
    """In a notebook (ipykernel imported, its stream not a terminal) the bar is redrawn with
    carriage returns (the notebook's output honours them), still within the width; a file
    written from a notebook gets the plain lines."""
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    out = _run(KernelStream(), 1)
    assert out.count("\r") >= 4
    assert max(len(piece) for piece in _pieces(out)) < 80
    assert "\r" not in _run(io.StringIO(), 1)


def test_fit_with_validation_fits_80_columns(monkeypatch):
    X, y = fastmlp.datasets.load_digits()
    term = FakeTerminal()
    monkeypatch.setattr("sys.stdout", term)
    fastmlp.MLP([64, 8, 10], seed=0).fit(X[:200], y[:200], epochs=2, batch_size=20,
                                        validation_split=0.2, verbose=1)
    screen = [line for line in term.screen() if line]
    assert all(len(line) < 80 for line in screen)
    assert sum("val_acc: " in line for line in screen) == 2
