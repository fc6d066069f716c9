"""Metrics every protocol shares. Each is a plain function over tensors or arrays, tested
against a direct formula."""

from kdbench.metrics.ranking import auroc, binary_macro_f1, fpr_at_tpr
from kdbench.metrics.representation import linear_cka
from kdbench.metrics.segmentation import confusion_matrix, miou
from kdbench.metrics.stats import mean_ci95, proportion_ci95, wilson_interval

__all__ = [
    "auroc",
    "binary_macro_f1",
    "confusion_matrix",
    "fpr_at_tpr",
    "linear_cka",
    "mean_ci95",
    "miou",
    "proportion_ci95",
    "wilson_interval",
]
