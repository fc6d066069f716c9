"""oneclass's subjects: what maps images into the teacher's joint image–text space for
each kind of method (see :mod:`kdbench.subjects`): the teacher's own image tower, the
pretrained student with a closed-form ridge map, or a student trained through the one
student stage with a text-space head (:class:`~kdbench.models.text_space.TextSpaceStudent`)
against the joint-space teacher (:class:`JointSpaceTeacher`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import subjects
from kdbench.cache import cache_key, numerics, tensor_digest
from kdbench.data.base_classes import BaseData, load_text_stage_data
from kdbench.distillation import Needs, init_backbone
from kdbench.methods import Method
from kdbench.models.image_text import ImageTextModel
from kdbench.models.text_space import TextSpaceStudent, TextSpaceTeacher, fit_linear_map
from kdbench.phases import in_phase
from kdbench.protocols.base import UnitContext
from kdbench.results import ComponentRef
from kdbench.student_stage import CacheSlot, StageData, cached_pooled_outputs, train_student
from kdbench.train import TrainConfig, predict


class Encoding(nn.Module):
    """``inner.<method>`` as a module's ``forward``: what static quantisation exports."""

    def __init__(self, inner: nn.Module, method: str) -> None:
        super().__init__()
        self.inner, self.method = inner, method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return getattr(self.inner, self.method)(images)


class RidgeMapped(nn.Module):
    """A pretrained student and the ridge map that takes its embedding to the joint space."""

    def __init__(self, student: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.student = student
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.student(images) @ self.weight + self.bias, dim=-1)


@dataclass
class Encoder:
    """What a unit scores: a function from images to joint-space embeddings."""

    encode: Callable[[torch.Tensor], torch.Tensor]
    digest: str
    components: dict[str, ComponentRef]
    notes: list[str] = field(default_factory=list)
    train_seconds: float | None = None
    base_digest: str | None = None
    module: nn.Module | None = None
    """``encode`` as a module (images in, embeddings out), for static quantisation."""
    calibration: torch.Tensor | None = None
    """The training images a quantised encoder is calibrated on (a seeded subset)."""


def text_space_encoder(
    context: UnitContext,
    version: int,
    teacher: ImageTextModel,
    components: dict[str, ComponentRef],
) -> Encoder:
    method: Method = context.method.load()
    kind = subjects.subject_of(method)
    if kind == subjects.Subject.TEACHER:
        encoder = Encoder(
            encode=teacher.encode_image,
            digest=teacher.image_digest(),
            components={"subject": components["teacher"]},
            notes=["reference row: the teacher's own image–text embeddings"],
        )
        if context.config.get("precision") and isinstance(teacher, nn.Module):
            stage = context.config["student_stage"]
            data = load_text_stage_data(
                stage, context.registry, context.progress, context.cache_dir
            )
            encoder.module, encoder.calibration = Encoding(teacher, "encode_image"), data.images
        return encoder
    stage = context.config["student_stage"]
    data = load_text_stage_data(stage, context.registry, context.progress, context.cache_dir)
    base_text = teacher.encode_text([context.config["prompt"].format(n) for n in data.class_names])
    if kind == subjects.Subject.STUDENT:
        return _reference_student(context, data, base_text, components)
    return _trained_student(version, context, method, teacher, data, base_text, components)


def _reference_student(
    context: UnitContext,
    data: BaseData,
    base_text: torch.Tensor,
    components: dict[str, ComponentRef],
) -> Encoder:
    """The pretrained student and a ridge map from its embedding to the text embedding
    of each base image's class name, fitted in closed form on the base images."""
    device = context.device
    student = init_backbone(context.registry, "students", context.config["student"])
    student = student.to(device).eval()
    feats = predict(student, data.images, device=device, progress=context.progress, desc="student")
    weight, bias = fit_linear_map(
        feats, base_text.cpu()[data.labels], context.config["student_stage"]["ridge"]
    )
    mapped = RidgeMapped(student, weight.to(device), bias.to(device)).eval()
    digest = cache_key(tensor_digest(student), tensor_digest({"w": weight, "b": bias}))
    return Encoder(
        encode=mapped,
        module=mapped,
        calibration=data.images,
        digest=digest,
        components={"subject": components["student"]},
        notes=[
            "reference row: the pretrained student, mapped into the joint space by a "
            "ridge regression onto the text embedding of each base image's class name "
            "(closed form, no teacher)"
        ],
        base_digest=data.digest,
    )


def _trained_student(
    version: int,
    context: UnitContext,
    method: Method,
    teacher: ImageTextModel,
    data: BaseData,
    base_text: torch.Tensor,
    components: dict[str, ComponentRef],
) -> Encoder:
    """Train (or load from the cache) a student on the base classes with the method's
    recipe and a text-space head, from the pretrained student or from random weights as
    the recipe's ``student_init`` says."""
    registry, device, config = context.registry, context.device, context.config
    recipe = method.recipe
    assert recipe is not None
    stage = config["student_stage"]
    pretrained = recipe.student_init == "pretrained"
    backbone = init_backbone(registry, "students", config["student"], pretrained=pretrained)
    student = TextSpaceStudent(backbone, teacher.embed_dim, base_text.cpu(), teacher.logit_scale)
    subject_components = {"subject": components["student"]}
    key = cache_key(
        "oneclass-student",
        version,
        context.method.name,
        context.method.version,
        recipe.as_dict(),
        context.seed,
        stage,
        config["student"],
        config["prompt"],
        teacher.image_digest(),
        teacher.text_digest(),
        tensor_digest(backbone),
        data.digest,
        numerics(context.device),
    )
    start = "the pretrained student" if pretrained else "random weights"
    stage = config["student_stage"]
    trained = train_student(
        student,
        recipe,
        StageData(data.images, data.labels, len(data.class_names)),
        TrainConfig(
            epochs=stage["epochs"],
            batch_size=stage["batch_size"],
            lr=stage["lr"],
            seed=context.seed,
        ),
        teacher=JointSpaceTeacher(
            teacher, base_text, data.digest, context.cache_dir, device, context.progress
        ),
        registry=registry,
        device=device,
        checkpoint=context.work_dir / "student.pt",
        cache=CacheSlot(context.cache_dir / "oneclass-students", key),
        progress=context.progress,
    )
    subject_components.update(trained.components)
    notes = [
        f"student trained from {start} on the base classes with a text-space head: its "
        "logits are scaled cosines to the teacher's text embeddings of the base-class names",
        *trained.notes,
    ]
    student = student.to(device).eval()
    digest = cache_key(tensor_digest(student), "text-space-student")
    return Encoder(
        encode=student.embed,
        module=Encoding(student, "embed"),
        calibration=data.images,
        digest=digest,
        components=subject_components,
        notes=notes,
        train_seconds=trained.seconds,
        base_digest=data.digest,
    )


class JointSpaceTeacher:
    """oneclass's teacher source: the frozen image–text teacher, its logits the scaled
    image–text cosines to the base-class names and its pooled output the joint image
    embedding. Those two are cached (one pass serves every recipe of a config); token maps
    and layers are computed afresh."""

    def __init__(
        self,
        teacher: ImageTextModel,
        base_text: torch.Tensor,
        data_digest: str,
        cache_root: Path,
        device: str,
        progress: Callable[..., Any] | None = None,
    ) -> None:
        self.device, self.progress = device, progress
        self.teacher, self.base_text = teacher, base_text
        self.data_digest, self.cache_root = data_digest, cache_root
        self.embed_dim = teacher.embed_dim
        self.num_layers = getattr(getattr(teacher, "backbone", None), "num_layers", 1)

    @in_phase("teacher")
    def outputs(self, images: torch.Tensor, needs: Needs) -> list[torch.Tensor]:
        return cached_pooled_outputs(
            TextSpaceTeacher(self.teacher, self.base_text),
            images,
            needs,
            folder="oneclass-teacher",
            key=lambda: cache_key(
                "oneclass-teacher-outputs",
                self.teacher.image_digest(),
                tensor_digest({"text": self.base_text.cpu()}),
                self.data_digest,
                numerics(self.device),
            ),
            cache_root=self.cache_root,
            device=self.device,
            progress=self.progress,
        )

    def notes(self) -> list[str]:
        return [
            "teacher used as is (frozen image–text model; teacher_mode is not applied): "
            "its logits are its scaled image–text cosines to the base-class names, its "
            "pooled output the joint image embedding; computed once for the training set"
        ]
