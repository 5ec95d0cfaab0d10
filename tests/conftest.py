import os

import pytest

os.environ.setdefault("BIDS_SYNTH_NO_PROGRESS", "1")
# one thread per test process: the suite runs on 2 workers (pytest -n 2), and oversubscribed
# threads make torch and ITK many times slower
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")


@pytest.fixture
def bids_dir(tmp_path):
    """Two participants (one with two sessions) with T1w, T2w and CT."""
    from helpers import write_bids

    return write_bids(
        tmp_path / "bids",
        {
            "sub-01": ["T1w", "T2w", "CT"],
            "sub-02/ses-a": ["T1w", "T2w"],
            "sub-02/ses-b": ["T1w", "CT"],
        },
    )


@pytest.fixture
def no_shipped_bundles(monkeypatch, tmp_path):
    """Hide the bundles shipped in the package (as on an install without default models)."""
    from bids_synth.models import registry

    monkeypatch.setattr(registry, "SHIPPED", tmp_path / "no-shipped-bundles")
