"""Long, resumable training of the shipped models (recipes, seed checkpoints, bundle export)."""
