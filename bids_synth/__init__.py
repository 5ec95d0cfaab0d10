"""bids-synth: a BIDS App for medical image synthesis."""

import os

__version__ = "0.1.0"

# No network at run time: stop nipype from checking for updates online.
os.environ.setdefault("NIPYPE_NO_ET", "1")
