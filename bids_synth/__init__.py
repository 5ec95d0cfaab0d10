"""bids-synth: a BIDS App for medical image synthesis."""

import atexit
import os
import shutil
import tempfile

__version__ = "0.1.0"

# No network at run time: stop nipype from checking for updates online.
os.environ.setdefault("NIPYPE_NO_ET", "1")


def _private_caches() -> None:
    """Put the caches of matplotlib and of the BIDS validator (deno) into one temporary folder of
    this process and its workers, unless set: never into the home, which is small, shared or
    missing under Apptainer and on clusters, and never into the (read-only) install."""
    wanted = [name for name in ("MPLCONFIGDIR", "DENO_DIR") if name not in os.environ]
    if wanted:
        folder = tempfile.mkdtemp(prefix="bids-synth-caches-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for name in wanted:
            os.environ[name] = os.path.join(folder, name.lower())


_private_caches()
