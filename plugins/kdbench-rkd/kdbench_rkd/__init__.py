"""Relational knowledge distillation (Park et al., CVPR 2019) as a kdbench plugin.

RKD transfers the *structure* of the teacher's embedding space rather than its values:
the student's pairwise distances (RKD-D) and triplet angles (RKD-A) within a batch are
pushed towards the teacher's. Being relative, it needs no projector between widths.

This module only names things; the loss (torch code) is in :mod:`kdbench_rkd.loss`.
"""

from __future__ import annotations

from kdbench.hookspecs import hookimpl
from kdbench.methods import CE, LossTerm, Method, Recipe

__version__ = "0.1.0"


RKD = Method(
    "rkd",
    "Relational KD: cross-entropy plus matching of pairwise distances and angles (RKD-DA).",
    recipe=Recipe(losses=(CE, LossTerm("rkd")), teacher_mode="lp"),
    url="https://arxiv.org/abs/1904.05068",
)


@hookimpl
def kdbench_register_losses(register):
    # an import path keeps `kdbench ls` and `--help` from importing torch
    register(
        "kdbench_rkd.loss:RKDLoss",
        name="rkd",
        description="RKD: pairwise distances and triplet angles of the embeddings matched.",
        url="https://arxiv.org/abs/1904.05068",
    )


@hookimpl
def kdbench_register_methods(register):
    register(RKD, url=RKD.url)
