"""``python -m ablations ...``: run a schedule ablation (flags in :mod:`ablations.cli`)."""

import sys

from ablations.cli import main

if __name__ == "__main__":
    sys.exit(main())
