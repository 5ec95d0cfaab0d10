"""Nipype workflow factories (``init_<noun>_wf``) of bids-synth."""
