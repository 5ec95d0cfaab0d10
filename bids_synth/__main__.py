"""``python -m bids_synth``."""

import sys

from bids_synth.cli import main

if __name__ == "__main__":
    sys.exit(main())
