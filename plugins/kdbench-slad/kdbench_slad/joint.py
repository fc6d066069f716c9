"""SLAD's ``fit`` for the distill protocol: teacher and student trained together, with LoRA
on both and part of the adapters shared (see :mod:`kdbench_slad.sharing`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.distillation import Classifier
from kdbench.losses import kd_kl
from kdbench.protocols.distill import DistillContext, DistillResult
from kdbench.results import ComponentRef
from kdbench_slad.sharing import detach_student, share_lora


class JointStep(nn.Module):
    """``CE(student) + CE(teacher) + T²·KL(teacher_T ‖ student_T)`` on one batch, through both
    models. Labels of -1 (transfer-set images) count only in the KL term. The teacher's
    logits are detached inside the KL term, as in KD: the teacher learns from its labels,
    the student from its labels and the teacher (and both move the shared adapters)."""

    def __init__(
        self,
        teacher: Classifier,
        student: Classifier,
        temperature: float = 4.0,
        detach_teacher: bool = True,
    ) -> None:
        super().__init__()
        self.teacher, self.student = teacher, student
        self.temperature, self.detach_teacher = temperature, detach_teacher

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t_logits, s_logits = self.teacher(images), self.student(images)
        target = t_logits.detach() if self.detach_teacher else t_logits
        loss = kd_kl(s_logits, target, self.temperature)
        labelled = labels >= 0
        if bool(labelled.any()):
            y = labels[labelled]
            loss = loss + F.cross_entropy(s_logits[labelled], y)
            loss = loss + F.cross_entropy(t_logits[labelled], y)
        return loss


def fit(
    ctx: DistillContext,
    mapping: str = "even",
    temperature: float = 4.0,
    r: int | None = None,
    alpha: float | None = None,
    dropout: float | None = None,
    transfer_set: bool = False,
    detach_teacher: bool = True,
) -> DistillResult:
    """Train teacher and student jointly for the protocol's step budget; each step puts one
    batch through both models and updates both. LoRA options default to the protocol's
    ``lora`` config (r=16, alpha=16, dropout 0.1 on ``qkv``) and the learning rate to its
    ``lr.lora``."""
    if temperature <= 0:
        raise ValueError(f"slad: temperature must be positive, got {temperature}")
    lora = dict(ctx.config["lora"])
    lora.update(
        {k: v for k, v in (("r", r), ("alpha", alpha), ("dropout", dropout)) if v is not None}
    )
    adapter = ctx.registry.get("adapters", "lora")
    adapter.load()(**lora).apply(ctx.teacher)
    ctx.student.requires_grad_(False)  # the student trains only through the shared adapters
    pairs = share_lora(ctx.teacher, ctx.student, mapping, lora["targets"], lora["dropout"])
    n = ctx.data.num_classes
    teacher, student = Classifier(ctx.teacher, n), Classifier(ctx.student, n)

    images, labels = ctx.data.train_images, ctx.data.train_labels
    use_transfer = transfer_set and len(ctx.data.transfer_images) > 0
    if use_transfer:
        images = torch.cat([images, ctx.data.transfer_images])
        labels = torch.cat([labels, torch.full((len(ctx.data.transfer_images),), -1)])
    step = JointStep(teacher, student, temperature, detach_teacher)
    result = ctx.train(step, (images, labels), lr=ctx.config["lr"]["lora"], name="slad")
    detach_student(ctx.student)

    from kdbench_slad import __version__

    teacher_params = sum(p.numel() for p in teacher.parameters() if p.requires_grad)
    options = {
        "mapping": mapping,
        "pairs": [[s, t] for s, t in pairs],
        "temperature": temperature,
        "transfer_set": use_transfer,
        "detach_teacher": detach_teacher,
        "steps": result.steps,
        "lr": ctx.config["lr"]["lora"],
    }
    return DistillResult(
        teacher=teacher,
        student=student,
        notes=[
            f"teacher and student trained jointly for {result.steps} steps of "
            f"{ctx.batch_size} images, each step updating both (teacher LoRA on "
            f"{', '.join(lora['targets'])}, student adapters shared through the {mapping!r} "
            f"mapping {[t for _, t in pairs]}); train time is that whole joint stage",
            f"{teacher_params} trained teacher parameters (LoRA + head); the student trains "
            "its head and the shared slices of the teacher's adapters",
        ],
        components={
            "teacher_adapter": ComponentRef(**adapter.ref(), options=lora),
            "student_adapter": ComponentRef(
                name="slad-shared-lora",
                distribution="kdbench-slad",
                version=__version__,
                description="LoRA slices shared with the teacher (A: first in_s columns; "
                "B: first out_s/3 rows of each of q, k, v)",
                options=options,
            ),
        },
    )
