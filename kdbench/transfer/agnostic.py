"""Task-agnostic distillation, the baseline of Vemulapalli et al. (2024): the student first
matches the *pretrained* teacher's embedding on a generic transfer set (no task, no labels),
then is fine-tuned on the task's labels alone.

The ``distill`` protocol calls :func:`fit` for the built-in method ``agnostic``. Both stages
go through the one student stage (:func:`kdbench.student_stage.train_student`) and share the
protocol's step budget: half for feature matching, half for fine-tuning. The transfer set is
``generic`` unless the run names another (``--set distill.transfer=NAME``).
"""

from __future__ import annotations

from typing import Any

import torch

from kdbench.distillation import Classifier
from kdbench.errors import ConfigError
from kdbench.methods import CE, LossTerm, Recipe
from kdbench.student_stage import FrozenTeacher, StageData, loss_components, train_student
from kdbench.train import TrainConfig

MATCH = Recipe(losses=(LossTerm("fitnets", 1.0, {"on": "pooled"}),), teacher_mode="lp")
"""Stage 1: regress the pretrained teacher's pooled embedding through a projector."""
TUNE = Recipe(losses=(CE,), teacher_mode=None, transfer_set=False)
"""Stage 2: cross-entropy on the labelled images."""


def fit(ctx: Any) -> Any:
    """Feature matching on the transfer set, then fine-tuning; returns a ``DistillResult``
    without a teacher (the teacher is never adapted to the task)."""
    from kdbench.protocols.distill import DistillResult

    transfer = ctx.transfer("generic")
    if not len(transfer):
        raise ConfigError(
            "agnostic matches the teacher's features on a transfer set; this one is empty "
            f"({transfer.name}): use generic, retrieved or task"
        )
    n = ctx.data.num_classes
    student = Classifier(ctx.student, n)
    teacher = FrozenTeacher(
        Classifier(ctx.teacher, n),
        ctx.teacher.embed_dim,
        ctx.teacher.num_layers,
        ctx.device,
        ctx.progress,
    )
    first = ctx.steps // 2
    budget = {"epochs": 1, "batch_size": ctx.batch_size, "lr": ctx.config["lr"]["student"]}
    unlabelled = torch.full((len(transfer),), -1, dtype=torch.long)
    train_student(
        student,
        MATCH,
        StageData(transfer.images, unlabelled, n),
        TrainConfig(steps=first, seed=ctx.seed, **budget),
        teacher=teacher,
        registry=ctx.registry,
        device=ctx.device,
        checkpoint=ctx.work_dir / "feature-matching.pt",
        progress=ctx.progress,
        desc="feature matching",
    )
    trained = train_student(
        student,
        TUNE,
        StageData(ctx.data.train_images, ctx.data.train_labels, n),
        TrainConfig(steps=ctx.steps - first, seed=ctx.seed, **budget),
        teacher=None,
        registry=ctx.registry,
        device=ctx.device,
        checkpoint=ctx.work_dir / "fine-tuning.pt",
        progress=ctx.progress,
        desc="fine-tuning",
    )
    components = {
        **{f"stage1:{k}": v for k, v in loss_components(ctx.registry, MATCH).items()},
        **{f"stage2:{k}": v for k, v in loss_components(ctx.registry, TUNE).items()},
    }
    notes = [
        f"task-agnostic: {first} steps matching the pretrained teacher's pooled embedding on "
        f"the {transfer.name} transfer set ({len(transfer)} images, no labels), then "
        f"{ctx.steps - first} steps of cross-entropy on the labelled images; the teacher is "
        "not adapted to the task"
    ]
    return DistillResult(teacher=None, student=trained.model, notes=notes, components=components)
