"""Metrics every protocol shares. Each is a plain function over tensors or arrays, tested
against a direct formula."""

from kdbench.metrics.stats import mean_ci95

__all__ = ["mean_ci95"]
