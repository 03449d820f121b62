"""``python -m fastmlp`` / ``fastmlp``: the command line (see fastmlp/cli.py).

With no subcommand it runs the demo, training on the bundled 8x8 digits; ``fastmlp train``,
``evaluate``, ``predict`` and ``bench`` do the rest (``fastmlp COMMAND --help``);
``fastmlp --version`` prints the version.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
