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

import numpy as np
import torch

from kdbench.cache import (
    cache_key,
    cached_tensors,
    load_module_state,
    save_module_state,
    tensor_digest,
)
from kdbench.distillation import (
    Classifier,
    HeadStep,
    RecipeStep,
    build_losses,
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
from kdbench.train import TrainConfig, fit, predict


def default_base_config(suite: str, smoke: bool) -> dict[str, Any]:
    """The ``base`` section protocols embed in their config (identical defaults share the
    trained student)."""
    if suite == "embedded":
        config: dict[str, Any] = {
            "teacher": {"name": "shapes-teacher", "options": {}},
            "student": {"name": "shapes-student", "options": {}},
            "train_per_class": 100,
            "epochs": 2,  # ~190 steps: a few minutes per method on a laptop CPU
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


def world_images(
    split: str, per_class: int, seed: int, stream: str, domain: str = "base"
) -> tuple[Any, str]:
    """``ShapesWorld().images(...)``, rendered once and then read from the cache (rendering
    is the slow part of the embedded suite's data); returns the images and their digest."""
    from kdbench.world import WORLD_VERSION, LabelledImages, ShapesWorld

    world = ShapesWorld()
    key = cache_key("world-images", WORLD_VERSION, split, per_class, seed, stream, domain)

    def render() -> dict[str, torch.Tensor]:
        data = world.images(split, per_class, seed, stream, domain)
        return {"images": data.images, "labels": data.labels}

    tensors, _ = cached_tensors("world-images", key, render)
    class_ids = world.classes(split)
    data = LabelledImages(tensors["images"], tensors["labels"], class_ids, world.names(class_ids))
    return data, key


class BaseData:
    """The labelled base-class images; ``images`` are decoded on first use only (a cached
    student or cached features never need them)."""

    def __init__(
        self,
        load_images: Callable[[], torch.Tensor],
        labels: torch.Tensor,
        class_names: list[str],
        identity: DatasetIdentity,
        digest: str,
    ) -> None:
        self._load_images = load_images
        self._images: torch.Tensor | None = None
        self.labels = labels
        self.class_names = class_names
        self.identity = identity
        self.digest = digest
        """Identifies the images as decoded (files, labels, size): part of cache keys."""

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = self._load_images()
        return self._images


def load_base_data(
    base: dict[str, Any], suite: str, registry: Registry, progress: Callable[..., Any] | None = None
) -> BaseData:
    """The labelled base-class images the stage trains on (the same for every seed)."""
    if suite == "embedded":
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        data, digest = world_images("base", base["train_per_class"], 0, "base-stage/train")
        return BaseData(
            lambda: data.images, data.labels, data.names, world.identity(base=len(data)), digest
        )
    if not base.get("root"):
        raise ValueError(f"set the {base['dataset']} folder, e.g. --set fewshot.base.root=PATH")
    split = registry.get("datasets", base["dataset"]).load()(base["root"], base["split"])
    size, resize = base["image_size"], base["resize"]
    identity = DatasetIdentity(
        name=base["dataset"], manifest_sha256=split.manifest_sha256, sizes={"base": len(split)}
    )
    return BaseData(
        lambda: split.load_all(size, resize, progress)[0],
        torch.from_numpy(np.asarray(split.labels, dtype=np.int64)),
        split.classes,
        identity,
        cache_key(split.manifest_sha256, size, resize),
    )


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
        "base-features", tensor_digest(backbone), backbone.preprocess.as_dict(), data.digest
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
            init_backbone(registry, kind, base[role]).eval(),
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
        pooled_only = needs.teacher <= {"logits", "pooled"}
        feats = None
        if "logits" in needs.teacher or pooled_only:  # frozen teacher embeddings, cached
            feats = base_features(teacher, data, device=device, progress=context.progress)
        if "logits" in needs.teacher:  # the teacher's base-class head: a linear probe
            probe = TrainConfig(
                epochs=base["probe_epochs"], batch_size=256, lr=base["probe_lr"], seed=context.seed
            )
            fit(
                HeadStep(teacher_clf.head), (feats, data.labels), probe, device=device, desc="probe"
            )
            notes.append("teacher logits from a linear probe on its frozen base-class embeddings")
        if pooled_only:  # everything the losses read follows from the embeddings
            with torch.no_grad():
                head = teacher_clf.head.cpu().eval()
                by_key = {
                    "pooled": feats,
                    "logits": head(feats) if "logits" in needs.teacher else None,
                }
            tensors += tuple(by_key[k] for k in needs.teacher_keys())
        else:
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
