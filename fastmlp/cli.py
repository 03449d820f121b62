"""The ``fastmlp`` command line (also ``python -m fastmlp``).

::

    fastmlp --version                 print 'fastmlp VERSION'
    fastmlp [--epochs N ...]          the demo: train on the bundled 8x8 digits
    fastmlp demo [--epochs N ...]     the same, spelled out
    fastmlp train --data PATH [--format idx|cifar10|csv|npz] [--classes K] [--hidden 256,128]
                  [--activation relu] [--epochs 10] [--batch-size 128] [--optimizer sgd|adam]
                  [--lr 0.1] [--device auto] [--save model.npz] [--plot curves.png] ...
    fastmlp evaluate MODEL --data PATH [--format ...] [--split auto|train|test]
    fastmlp predict MODEL --data PATH [--format ...] [--out preds.csv] [--proba]
    fastmlp bench [--samples 10000] [--batch-size 128] [--hidden 256,128] [--profile [--steps 50]]
    fastmlp export MODEL --to MODEL.onnx [--dtype float32|float64]

Data (``--data``; ``--format`` is guessed from the path when left out):

- ``idx``: MNIST / Fashion-MNIST. A folder holding ``train-images-idx3-ubyte`` and
  ``train-labels-idx1-ubyte`` (and, for a test set, ``t10k-images-idx3-ubyte`` /
  ``t10k-labels-idx1-ubyte``), each raw or ``.gz``; or one images file, whose labels file
  is found beside it (``images`` -> ``labels``, ``idx3`` -> ``idx1`` in its name).
- ``cifar10``: the folder of CIFAR-10's binary batches (``data_batch_1.bin`` ..
  ``data_batch_5.bin``, ``test_batch.bin``) or the ``cifar-10-binary.tar.gz`` archive.
- ``csv``: numbers, one sample a line, labels in ``--label-column`` (default the last); a
  header line is detected. ``predict`` accepts a file without the label column.
- ``npz``: arrays ``X``/``y`` (or ``x``/``y``), or ``x_train``/``y_train`` with
  ``x_test``/``y_test``.

The demo first readies its kernels on a throwaway twin of its model (one line: "compiled
the kernels in 12.3 s (once: ...)" on a cold cache, "kernels loaded from the cache in 0.3 s"
on a warm one), then times the training alone.

``train`` trains on the training part and, where the data has a test part (IDX folders
with t10k files, CIFAR-10, .npz with x_test), reports the test accuracy at the end.
``evaluate`` and ``predict`` use the test part when there is one (``--split`` to choose).

Bad arguments and unreadable files print one line, ``fastmlp: error: ...``, on stderr and
exit with status 2; a training run that diverges, or a command that runs out of memory (the
line says what it was doing), exits with status 1.

``train`` sizes the output layer from ``--classes K`` (labels 0..K-1), or else from the
largest label + 1, which may be at most twice the number of distinct labels: a stray label
is refused, naming the file and the line or sample, instead of sizing an absurd layer.

Where the code lives: ``_cli_args.py`` (the parsers and argument types), ``_cli_commands.py``
(reading the data, one function per command); this module runs them (``main``).
"""

import sys

from ._cli_args import _PARSERS, COMMANDS, FORMATS, UsageError, _demo_parser  # noqa: F401
from ._cli_commands import _COMMANDS


def _one_line(exc):
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    return " ".join(text.split())


def main(argv=None):
    """Run the command line with `argv` (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PARSERS:
        command, parser = argv[0], _PARSERS[argv[0]]()
        argv = argv[1:]
    else:
        command, parser = "demo", _demo_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[command](args)
    except FloatingPointError as exc:
        print(f"fastmlp: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        print(f"fastmlp: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # the one line says what ran out, never a traceback
        doing = getattr(args, "doing", None) or f"running {command}"
        detail = f" ({_one_line(exc)})" if str(exc) else ""
        print(f"fastmlp: error: out of memory while {doing}{detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
