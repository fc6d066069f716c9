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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kdbench.cache import cache_key, load_module_state, save_module_state, tensor_digest
from kdbench.distillation import (
    Classifier,
    RecipeStep,
    build_losses,
    fit_linear_probe,
    init_backbone,
    needs_of,
    teacher_tensors,
)
from kdbench.losses.base import LossShapes
from kdbench.methods import Method
from kdbench.models.backbone import Backbone
from kdbench.protocols.base import UnitContext
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef, DatasetIdentity
from kdbench.train import TrainConfig, fit


def default_base_config(suite: str, smoke: bool) -> dict[str, Any]:
    """The ``base`` section protocols embed in their config (identical defaults share the
    trained student)."""
    if suite == "embedded":
        config: dict[str, Any] = {
            "teacher": {"name": "shapes-teacher", "options": {}},
            "student": {"name": "shapes-student", "options": {}},
            "train_per_class": 100,
            "epochs": 15,
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
class BaseData:
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    identity: DatasetIdentity
    digest: str


def load_base_data(
    base: dict[str, Any], suite: str, registry: Registry, progress: Callable[..., Any] | None = None
) -> BaseData:
    """The labelled base-class images the stage trains on (the same for every seed)."""
    if suite == "embedded":
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        data = world.images("base", base["train_per_class"], 0, "base-stage/train")
        digest = cache_key(tensor_digest({"x": data.images}), tensor_digest({"y": data.labels}))
        return BaseData(
            data.images, data.labels, data.names, world.identity(base=len(data)), digest
        )
    if not base.get("root"):
        raise ValueError(f"set the {base['dataset']} folder, e.g. --set fewshot.base.root=PATH")
    split = registry.get("datasets", base["dataset"]).load()(base["root"], base["split"])
    images, labels = split.load_all(base["image_size"], base["resize"], progress)
    identity = DatasetIdentity(
        name=base["dataset"], manifest_sha256=split.manifest_sha256, sizes={"base": len(labels)}
    )
    return BaseData(images, labels, split.classes, identity, split.manifest_sha256)


@dataclass
class BaseStudent:
    """The backbone a base-class protocol scores, and what to record about it."""

    backbone: Backbone
    components: dict[str, ComponentRef]
    notes: list[str] = field(default_factory=list)
    train_seconds: float | None = None


def base_supports(method: Component) -> str | None:
    """Why ``method`` cannot run the base stage, or None."""
    obj: Method = method.load()
    if obj.recipe is None and not obj.reference:
        return (
            f"method {method.name!r} brings its own fit, which base-class protocols "
            "cannot call; they run recipes"
        )
    return None


def base_student(context: UnitContext, base: dict[str, Any]) -> BaseStudent:
    """The backbone to score for this unit's method: trained (or loaded from the cache)."""
    registry, device = context.registry, context.device
    method: Method = context.method.load()
    teacher_c = registry.get("teachers", base["teacher"]["name"])
    student_c = registry.get("students", base["student"]["name"])
    components = {
        "teacher": ComponentRef(**teacher_c.ref(), options=base["teacher"]["options"]),
        "student": ComponentRef(**student_c.ref(), options=base["student"]["options"]),
    }
    if method.recipe is None:  # reference rows: nothing to train
        role = "teacher" if method.subject == "teacher" else "student"
        kind = "teachers" if role == "teacher" else "students"
        components["subject"] = components[role]
        return BaseStudent(
            init_backbone(registry, kind, base[role]),
            components,
            [f"reference row: the pretrained {role}, not trained here"],
        )
    recipe = method.recipe
    components["subject"] = components["student"]
    teacher = init_backbone(registry, "teachers", base["teacher"])
    data = load_base_data(base, context.suite, registry, context.progress)
    key = cache_key(
        "base-student",
        context.method.name,
        context.method.version,
        recipe.as_dict(),
        context.seed,
        base,
        tensor_digest(teacher),
        data.digest,
    )
    folder = context.cache_dir / "base-students"
    student = init_backbone(registry, "students", base["student"], pretrained=False)
    for term in recipe.losses:
        components[f"loss:{term.loss}"] = ComponentRef(
            **registry.get("losses", term.loss).ref(),
            options={"weight": term.weight, **dict(term.options)},
        )
    cached = load_module_state(student, folder, key)
    if cached is not None:
        return BaseStudent(
            student.eval(),
            components,
            [
                "base-class student reused from the cache (trained by an earlier unit with "
                "the same method, seed and base config); its measured training time is reported"
            ],
            float(cached["train_seconds"]),
        )

    started = time.perf_counter()
    n_classes = len(data.class_names)
    classifier = Classifier(student, n_classes)
    teacher_clf = Classifier(teacher.to(device).eval(), n_classes)
    shapes = LossShapes(
        student_dim=student.embed_dim,
        teacher_dim=teacher.embed_dim,
        num_classes=n_classes,
        student_layers=student.num_layers,
        teacher_layers=teacher.num_layers,
    )
    terms = build_losses(registry, recipe, shapes)
    needs = needs_of(terms)
    tensors: tuple[torch.Tensor, ...] = (data.images, data.labels)
    notes = ["student trained from random weights on the base classes"]
    if needs.uses_teacher:
        if "logits" in needs.teacher:  # the teacher's base-class head: a linear probe
            probe = TrainConfig(
                epochs=base["probe_epochs"], batch_size=256, lr=base["probe_lr"], seed=context.seed
            )
            fit_linear_probe(
                teacher_clf,
                data.images,
                data.labels,
                probe,
                device=device,
                progress=context.progress,
            )
            notes.append("teacher logits from a linear probe on its frozen base-class embeddings")
        tensors += tuple(
            teacher_tensors(
                teacher_clf, data.images, needs, device=device, progress=context.progress
            )
        )
    fit(
        RecipeStep(classifier, terms, needs),
        tensors,
        TrainConfig(
            epochs=base["epochs"], batch_size=base["batch_size"], lr=base["lr"], seed=context.seed
        ),
        device=device,
        checkpoint=context.work_dir / "base-student.pt",
        progress=context.progress,
        desc="base student",
    )
    seconds = time.perf_counter() - started
    save_module_state(
        student, folder, key, {"train_seconds": seconds, "method": context.method.name}
    )
    return BaseStudent(student.eval(), components, notes, seconds)
