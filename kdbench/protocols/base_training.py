"""The base-class distillation stage shared by ``fewshot`` and ``segmentation``.

A method trains a student *from random weights* on the base classes with its recipe (as the
MobileViT few-shot work pre-trains its student by distillation); the protocols then freeze
that student and score it on novel classes or scenes. The teacher's logits come from a
linear probe fitted on its frozen base-class embeddings. The trained student is cached per
(method, method version, seed, stage config, teacher and data), so protocols with the same
``base`` config share it instead of training it twice.

Reference rows need no training: ``teacher`` is the teacher backbone, ``student`` the
pretrained student as shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kdbench.cache import cache_key, cached_tensors, numerics, tensor_digest
from kdbench.data.base_classes import BaseData, load_base_data
from kdbench.distillation import Classifier, HeadStep, Needs, init_backbone, teacher_tensors
from kdbench.methods import Method
from kdbench.models.adapters import teacher_adapter
from kdbench.models.backbone import Backbone
from kdbench.phases import in_phase
from kdbench.protocols.base import UnitContext
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef
from kdbench.student_stage import CacheSlot, StageData, train_student
from kdbench.subjects import Subject, pretrained_role, subject_of
from kdbench.train import TrainConfig, fit, predict


def default_base_config(suite: str, smoke: bool) -> dict[str, Any]:
    """The ``base`` section protocols embed in their config (identical defaults share the
    trained student)."""
    if suite == "embedded":
        config: dict[str, Any] = {
            "teacher": {"name": "shapes-teacher", "options": {}},
            "student": {"name": "shapes-student", "options": {}},
            "train_per_class": 100,
            "epochs": 4,  # ~375 steps; the learning curve in docs/protocols/fewshot.md
            "batch_size": 128,
            "lr": 2e-3,
            "probe_epochs": 30,
            "probe_lr": 5e-3,
        }
        if smoke:
            config.update(train_per_class=2, epochs=1, batch_size=64, probe_epochs=2)
        return config
    return {
        "teacher": {"name": "timm:vit_base_patch14_dinov2.lvd142m", "options": {"img_size": 84}},
        "student": {"name": "timm:mobilevit_xs", "options": {"img_size": 84}},
        "dataset": "miniimagenet",
        "root": None,
        "split": "train",
        "image_size": 84,
        "resize": 92,
        "epochs": 1 if smoke else 100,
        "batch_size": 128,
        "lr": 2e-3,
        "probe_epochs": 2 if smoke else 30,
        "probe_lr": 5e-3,
    }


@dataclass
class BaseStudent:
    """The backbone a base-class protocol scores, and what to record about it."""

    backbone: Backbone
    components: dict[str, ComponentRef]
    notes: list[str] = field(default_factory=list)
    train_seconds: float | None = None


def base_features(
    backbone: Backbone,
    data: BaseData,
    *,
    device: str,
    progress: Callable[..., Any] | None = None,
) -> torch.Tensor:
    """Pooled embeddings of the frozen ``backbone`` on the base images, computed once per
    (weights, preprocessing, data) and cached."""
    key = cache_key(
        "base-features",
        tensor_digest(backbone),
        backbone.preprocess.as_dict(),
        data.digest,
        numerics(device),
    )

    def compute() -> dict[str, torch.Tensor]:
        feats = predict(
            backbone.to(device).eval(),
            data.images,
            device=device,
            progress=progress,
            desc="base features",
        )
        return {"features": feats}

    return cached_tensors("base-features", key, compute)[0]["features"]


BASE_UNSUPPORTED = {
    Subject.FIT: (
        "method {method!r} brings its own fit, which base-class protocols cannot call; they "
        "run recipes"
    ),
    Subject.SCRATCH: (
        "the base stage trains every student from random weights on the base labels, so the "
        "from-scratch reference row {method!r} would repeat the label-only recipe's row "
        "(supervised)"
    ),
}
"""What a protocol built on the base stage cannot score (see ``Protocol.unsupported``)."""


def frozen_teacher_reason(method: Component, registry: Registry | None) -> str | None:
    """Why ``method`` cannot run where the teacher is used frozen (its recipe adapts the
    teacher's backbone), or None."""
    recipe = getattr(method.load(), "recipe", None)
    mode = getattr(recipe, "teacher_mode", None)
    if mode is None or registry is None:
        return None
    adapter = teacher_adapter(registry, mode).load()
    if getattr(adapter, "frozen", False):
        return None
    return (
        f"method {method.name!r} adapts the teacher's backbone (teacher_mode {mode!r}); this "
        "protocol uses the teacher frozen, so only task-specific distillation runs it"
    )


def base_student(context: UnitContext, base: dict[str, Any]) -> BaseStudent:
    """The backbone to score for this unit's method: trained (or loaded from the cache)."""
    registry, device = context.registry, context.device
    method: Method = context.method.load()
    subject = subject_of(method)
    teacher_c = registry.get("teachers", base["teacher"]["name"])
    student_c = registry.get("students", base["student"]["name"])
    components = {
        "teacher": ComponentRef(**teacher_c.ref(), options=base["teacher"]["options"]),
        "student": ComponentRef(**student_c.ref(), options=base["student"]["options"]),
    }
    if subject in (Subject.TEACHER, Subject.STUDENT):  # reference rows: nothing to train
        role = pretrained_role(subject)
        kind = "teachers" if role == "teacher" else "students"
        components["subject"] = components[role]
        return BaseStudent(
            init_backbone(registry, kind, base[role]).eval(),
            components,
            [f"reference row: the pretrained {role}, not trained here"],
        )
    recipe = method.recipe
    assert recipe is not None, "Protocol.supports admits recipes and reference rows only"
    components["subject"] = components["student"]
    teacher = init_backbone(registry, "teachers", base["teacher"])
    data = load_base_data(base, registry, context.progress, key=f"{context.protocol.name}.base")
    key = cache_key(
        "base-student",
        2,  # the cached state is the student with its base-class head
        context.method.name,
        context.method.version,
        recipe.as_dict(),
        context.seed,
        base,
        tensor_digest(teacher),
        data.digest,
        numerics(device),
    )
    student = init_backbone(registry, "students", base["student"], pretrained=False)
    n_classes = len(data.class_names)
    classifier = Classifier(student, n_classes)
    trained = train_student(
        classifier,
        recipe,
        StageData(lambda: data.images, data.labels, n_classes),
        TrainConfig(
            epochs=base["epochs"], batch_size=base["batch_size"], lr=base["lr"], seed=context.seed
        ),
        teacher=ProbedTeacher(teacher, data, base, context.seed, device, context.progress),
        registry=registry,
        device=device,
        checkpoint=context.work_dir / "base-student.pt",
        cache=CacheSlot(context.cache_dir / "base-students", key),
        progress=context.progress,
        desc="base student",
    )
    components.update(trained.components)
    notes = ["student trained from random weights on the base classes", *trained.notes]
    return BaseStudent(student.eval(), components, notes, trained.seconds)


class ProbedTeacher:
    """The base stage's teacher: a frozen backbone whose logits come from a linear probe
    fitted on its base-class embeddings (computed once and cached, like the embeddings the
    pooled-only losses read)."""

    def __init__(
        self,
        backbone: Backbone,
        data: BaseData,
        base: dict[str, Any],
        seed: int,
        device: str,
        progress: Callable[..., Any] | None = None,
    ) -> None:
        self.backbone, self.device, self.progress = backbone, device, progress
        self.classifier = Classifier(backbone, len(data.class_names))
        self.data, self.base, self.seed = data, base, seed
        self.embed_dim, self.num_layers = backbone.embed_dim, backbone.num_layers
        self._notes: list[str] = []

    @in_phase("teacher")
    def outputs(self, images: torch.Tensor, needs: Needs) -> list[torch.Tensor]:
        device, progress = self.device, self.progress
        self.classifier.to(device).eval()
        pooled_only = needs.teacher <= {"logits", "pooled"}
        feats = None
        if "logits" in needs.teacher or pooled_only:  # frozen teacher embeddings, cached
            feats = base_features(self.backbone, self.data, device=device, progress=progress)
        if "logits" in needs.teacher:  # the teacher's base-class head: a linear probe
            probe = TrainConfig(
                epochs=self.base["probe_epochs"],
                batch_size=256,
                lr=self.base["probe_lr"],
                seed=self.seed,
            )
            head = HeadStep(self.classifier.head)
            fit(head, (feats, self.data.labels), probe, device=device, desc="probe")
            self._notes.append(
                "teacher logits from a linear probe on its frozen base-class embeddings"
            )
        if not pooled_only:
            return teacher_tensors(self.classifier, images, needs, device=device, progress=progress)
        # everything the losses read follows from the embeddings
        with torch.no_grad():
            head = self.classifier.head.cpu().eval()
            by_key = {"pooled": feats, "logits": head(feats) if "logits" in needs.teacher else None}
        return [by_key[k] for k in needs.teacher_keys()]

    def notes(self) -> list[str]:
        return self._notes
