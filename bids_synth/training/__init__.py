"""Training: ``bids-synth train`` runs (:mod:`.spec`, :mod:`.sources`, :mod:`.run`) and the long,
resumable training of the shipped models (:mod:`.recipes`: recipes, seed checkpoints, bundle export).
"""
