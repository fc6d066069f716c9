"""Distillation losses from the literature as a kdbench plugin, with one method each.

Losses (any recipe can use them by name): ``dkd`` decoupled KD, ``nd`` feature
norm-and-direction (KD++), ``cka`` 1 - linear CKA, ``affinity`` TinyCLIP-style affinity
mimicking, ``skill`` SKILL-style layer-group distillation. Methods: one per loss, the
loss next to cross-entropy with the teacher linear-probed (``nd`` also keeps Hinton KD, as
KD++ always does).

This module only names things (losses are registered by import path), so loading the
plugin imports no torch code.
"""

from __future__ import annotations

from kdbench.hookspecs import hookimpl
from kdbench.methods import CE, LossTerm, Method, Recipe

__version__ = "0.1.0"


LOSSES = (
    (
        "dkd",
        "kdbench_losses.dkd:DKDLoss",
        "DKD: T²·(α·TCKD + β·NCKD), KD split into target and non-target parts.",
        "https://arxiv.org/abs/2203.08679",
    ),
    (
        "nd",
        "kdbench_losses.nd:NDLoss",
        "ND (KD++): student embedding towards the teacher's class-mean direction and norm.",
        "https://arxiv.org/abs/2305.17007",
    ),
    (
        "cka",
        "kdbench_losses.cka:CKALoss",
        "1 - linear CKA between student and teacher features of a batch.",
        "https://arxiv.org/abs/2401.11824",
    ),
    (
        "affinity",
        "kdbench_losses.affinity:AffinityLoss",
        "TinyCLIP-style affinity mimicking (image-image): KL of softmax affinity rows.",
        "https://arxiv.org/abs/2309.12314",
    ),
    (
        "skill",
        "kdbench_losses.skill:SKILLLoss",
        "SKILL: teacher layers grouped by CKA clustering, one target per group distilled.",
        "https://arxiv.org/abs/2402.16830",
    ),
)


def _layers_at_embedding_width(protocol) -> str | None:
    """SKILL projects the teacher's layers at its embedding width, which only holds where
    the teacher's pooled output is its own embedding (not a narrower image-text space)."""
    if getattr(protocol, "teacher_space", "backbone") != "backbone":
        return (
            "skill projects the teacher's layers at its embedding width, but here the "
            "teacher's embedding is a joint image-text space narrower than its layers"
        )
    return None


METHODS = (
    Method(
        "dkd",
        "Decoupled KD: cross-entropy plus DKD (α=1, β=8, T=4).",
        recipe=Recipe(losses=(CE, LossTerm("dkd", 1.0, {"alpha": 1.0, "beta": 8.0}))),
        url="https://arxiv.org/abs/2203.08679",
    ),
    Method(
        "nd",
        "KD++: cross-entropy, Hinton KD (T=4) and the ND norm-and-direction loss.",
        recipe=Recipe(losses=(CE, LossTerm("kd", 1.0, {"temperature": 4.0}), LossTerm("nd", 1.0))),
        url="https://arxiv.org/abs/2305.17007",
    ),
    Method(
        "cka",
        "CKA feature distillation: cross-entropy plus 1 - linear CKA of the embeddings.",
        recipe=Recipe(losses=(CE, LossTerm("cka", 1.0, {"on": "pooled"}))),
        url="https://arxiv.org/abs/2401.11824",
    ),
    Method(
        "affinity",
        "TinyCLIP-style affinity mimicking: cross-entropy plus image-image affinity KL.",
        recipe=Recipe(losses=(CE, LossTerm("affinity", 1.0, {"temperature": 0.1}))),
        url="https://arxiv.org/abs/2309.12314",
    ),
    Method(
        "skill",
        "SKILL-style layer groups: cross-entropy plus distillation of clustered teacher layers.",
        recipe=Recipe(losses=(CE, LossTerm("skill", 1.0, {"target": "mean"}))),
        supports=_layers_at_embedding_width,
        url="https://arxiv.org/abs/2402.16830",
    ),
)


@hookimpl
def kdbench_register_losses(register):
    for name, target, description, url in LOSSES:
        register(target, name=name, description=description, url=url)


@hookimpl
def kdbench_register_methods(register):
    for method in METHODS:
        register(method, name=method.name, description=method.description, url=method.url)
