"""Model bundles: a folder with ``bundle.json``, ``model.safetensors`` and ``MODEL_CARD.md``.

This package imports no torch at module level: listing and verifying bundles reads JSON and hashes
files only; :meth:`Bundle.load_network` imports torch when a network is really needed.
"""

from bids_synth.models.bundle import Bundle, save_bundle
from bids_synth.models.registry import find_bundle, install_bundle, list_bundles, search_paths

__all__ = ["Bundle", "find_bundle", "install_bundle", "list_bundles", "save_bundle", "search_paths"]
