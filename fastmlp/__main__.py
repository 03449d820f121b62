"""``python -m fastmlp`` / ``fastmlp``: the demo, training on the bundled 8x8 digits."""

import argparse
import sys
import time

import numpy as np


def _parser():
    p = argparse.ArgumentParser(
        prog="fastmlp",
        description="Train an MLP on the bundled 8x8 handwritten digits (1797 samples) and "
                    "print its test accuracy.",
    )
    p.add_argument("--epochs", type=int, default=40, help="passes over the training set (default 40)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--hidden", default="128,64", help="hidden layer sizes, comma separated (default 128,64)")
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--device", default="auto", help="auto, cpu or reference (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="0, 1 (bar) or 2 (a line per epoch)")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    import fastmlp

    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
        X, y = fastmlp.datasets.load_digits()
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(X))
        n_test = len(X) // 5
        test, train = order[:n_test], order[n_test:]
        model = fastmlp.MLP([X.shape[1], *hidden, 10], activation=args.activation,
                            optimizer=fastmlp.SGD(lr=args.lr, momentum=0.9),
                            device=args.device, seed=args.seed)
        print(f"fastmlp {fastmlp.__version__}: {model.sizes} on {model.device}, "
              f"{len(train)} training and {len(test)} test digits (8x8, bundled)")
        start = time.perf_counter()
        model.fit(X[train], y[train], epochs=args.epochs, batch_size=args.batch_size,
                  validation_split=0.1, verbose=args.verbose)
        seconds = time.perf_counter() - start
        result = model.evaluate(X[test], y[test])
    except (ValueError, TypeError, RuntimeError) as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2
    print(f"trained in {seconds:.1f} s; test accuracy {result['accuracy'] * 100:.2f} % "
          f"(loss {result['loss']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
