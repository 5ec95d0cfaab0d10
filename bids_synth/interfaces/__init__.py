"""Nipype interfaces of bids-synth: thin wrappers over antspyx and the neural engine.

Heavy libraries (antspyx, torch) are imported inside ``_run_interface`` so that building a
workflow stays fast and light.
"""
