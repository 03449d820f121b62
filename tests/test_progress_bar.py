"""The progress bar as a terminal shows it: lines redrawn in place with carriage returns."""

from types import SimpleNamespace

import fastmlp
from fastmlp.callbacks import ProgressBar


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
    fastmlp.MLP([64, 8, 10], seed=0).fit(X[:200], y[:200], epochs=2, batch_size=20, verbose=1)
    screen = [line for line in term.screen() if line]
    assert [line for line in screen if line.startswith("Epoch")] == ["Epoch 1/2", "Epoch 2/2"]
    assert all("10/10 [" in line for line in screen if not line.startswith("Epoch"))
