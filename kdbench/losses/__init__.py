"""Distillation losses: each a :class:`~kdbench.losses.base.DistillationLoss` declaring what
it reads."""

from kdbench.losses.base import DistillationLoss, LossShapes
from kdbench.losses.classic import CrossEntropy, FitNets, HintonKD, kd_kl

__all__ = ["CrossEntropy", "DistillationLoss", "FitNets", "HintonKD", "LossShapes", "kd_kl"]
