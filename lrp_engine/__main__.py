"""``python -m lrp_engine``: the command line (see :mod:`lrp_engine.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
