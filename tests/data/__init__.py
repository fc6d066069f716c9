"""Tests of the real-dataset loaders, on fixtures in the published layouts."""
