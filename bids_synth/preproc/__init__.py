"""Preprocessing algorithms on ANTs images (pure functions; the nipype interfaces call them)."""
