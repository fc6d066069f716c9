"""Loaders for real datasets in their published on-disk layouts (the standard suite)."""
