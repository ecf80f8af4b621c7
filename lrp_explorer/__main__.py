"""``python -m lrp_explorer``: the same as the ``lrp-explorer`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
