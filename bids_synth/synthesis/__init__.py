"""Synthesis algorithms and the files they learn, independent of nipype: one module per concern."""
