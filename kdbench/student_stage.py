"""The one student-training stage: train a student with a method's recipe, or load it from
the cache.

Every protocol that trains a student (``distill`` on a downstream task, the base-class stage
of ``fewshot`` and ``segmentation``, the text-space stage of ``oneclass``) calls
:func:`train_student`. What differs between them is pluggable, not copied:

- the **model** is the student with its head (a :class:`~kdbench.distillation.Classifier`,
  a text-space head, ...): anything with a ``backbone`` and a ``features()`` method;
- the **teacher source** (:class:`TeacherSource`) says how wide the teacher is and gives
  the teacher outputs the recipe's losses read, for every training image, once: an adapted
  classifier, a probed frozen backbone, an image–text model's joint space, ...;
- the **data**, the **budget** (:class:`~kdbench.train.TrainConfig`) and the **cache slot**
  (folder and key; ``None`` trains every time).

The teacher is frozen while the student trains and there is no augmentation, so its outputs
are computed once and travel with the batches as tensors (see :mod:`kdbench.distillation`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from kdbench.cache import (
    cache_key,
    cached_tensors,
    entry_lock,
    load_module_state,
    numerics,
    save_module_state,
    tensor_digest,
)
from kdbench.distillation import Needs, RecipeStep, build_losses, needs_of, teacher_tensors
from kdbench.errors import ConfigError
from kdbench.losses.base import LossShapes
from kdbench.methods import Recipe
from kdbench.models.backbone import Backbone
from kdbench.phases import in_phase
from kdbench.registry import Registry
from kdbench.results import ComponentRef
from kdbench.train import TrainConfig, fit, planned_steps
from kdbench.transfer import transfer_name


class TeacherSource(Protocol):
    """Where a stage's teacher outputs come from."""

    embed_dim: int
    """Width of the teacher's pooled output, as the losses see it."""
    num_layers: int
    """Blocks the teacher's ``layers`` outputs index (1 when it has none)."""

    def outputs(self, images: torch.Tensor, needs: Needs) -> list[torch.Tensor]:
        """The outputs ``needs`` asks for, for every image, in ``needs.teacher_keys()`` order
        (on the device and with the progress display the source was built with)."""

    def notes(self) -> list[str]:
        """What the record should say about how the teacher outputs were made."""


POOLED_OUTPUTS = frozenset({"logits", "pooled"})
"""The teacher outputs small enough to cache: one vector per image."""


def cached_pooled_outputs(
    source: Any,
    images: torch.Tensor,
    needs: Needs,
    *,
    folder: str,
    key: Callable[[], str],
    cache_root: Path | None,
    device: str,
    progress: Callable[..., Any] | None = None,
) -> list[torch.Tensor]:
    """The teacher outputs ``needs`` asks for, when they are logits and pooled embeddings
    only: both are computed in one pass the first time and cached under ``key()`` (which
    must name the teacher, the images and the :func:`~kdbench.cache.numerics`; called only
    then, since hashing the images costs), so every recipe of a seed that reads them shares
    one pass. Token maps and layers, and anything without a ``cache_root``, are computed
    afresh."""
    keys = needs.teacher_keys()
    if cache_root is None or not set(keys) <= POOLED_OUTPUTS:
        return teacher_tensors(source, images, needs, device=device, progress=progress)

    def compute() -> dict[str, torch.Tensor]:
        both = Needs(teacher=set(POOLED_OUTPUTS))
        logits, pooled = teacher_tensors(source, images, both, device=device, progress=progress)
        return {"logits": logits, "pooled": pooled}

    outputs, _ = cached_tensors(folder, key(), compute, cache_root)
    return [outputs[k] for k in keys]


@dataclass
class FrozenTeacher:
    """A teacher model used as it is (``features(images, tokens, layers)`` with logits): its
    outputs are computed in one pass over the training images. With ``cache_root``, its
    logits and pooled embeddings are cached per (weights, images, numerics), so the methods
    of a seed that read only those share one pass."""

    model: Any
    embed_dim: int
    num_layers: int
    device: str
    progress: Callable[..., Any] | None = None
    cache_root: Path | None = None

    def outputs(self, images: torch.Tensor, needs: Needs) -> list[torch.Tensor]:
        model = self.model.to(self.device).eval()
        return cached_pooled_outputs(
            model,
            images,
            needs,
            folder="teacher-outputs",
            key=lambda: cache_key(
                "teacher-outputs",
                tensor_digest(model),
                tensor_digest({"images": images}),
                numerics(self.device),
            ),
            cache_root=self.cache_root,
            device=self.device,
            progress=self.progress,
        )

    def notes(self) -> list[str]:
        return [
            "teacher outputs computed once for the whole training set and reused every epoch "
            "(frozen teacher, no augmentation)"
        ]


@dataclass
class StageData:
    """What the stage trains on: labelled images, and unlabelled transfer images that
    label-free losses also see when the recipe names a transfer set (``recipe.transfer_set``
    other than ``none``); the protocol builds the images of the set it names."""

    images: Callable[[], torch.Tensor] | torch.Tensor
    labels: torch.Tensor
    num_classes: int
    transfer: torch.Tensor | None = None

    def labelled(self) -> torch.Tensor:
        return self.images() if callable(self.images) else self.images


@dataclass
class CacheSlot:
    """Where a trained student is kept: ``folder/key.safetensors`` with its metadata."""

    folder: Path
    key: str


@dataclass
class TrainedStudent:
    """What the stage returns: the trained model (in eval mode) and what to record."""

    model: nn.Module
    components: dict[str, ComponentRef]
    seconds: float
    cached: bool
    notes: list[str] = field(default_factory=list)


def loss_components(registry: Registry, recipe: Recipe) -> dict[str, ComponentRef]:
    """``loss:<name>`` component references of a recipe's losses, with weight and options."""
    return {
        f"loss:{term.loss}": ComponentRef(
            **registry.get("losses", term.loss).ref(),
            options={"weight": term.weight, **dict(term.options)},
        )
        for term in recipe.losses
    }


def loss_shapes(backbone: Backbone, teacher: TeacherSource | None, num_classes: int) -> LossShapes:
    """The sizes a recipe's losses build their projectors from, for ``backbone`` as the
    student and ``teacher`` (``None``: no teacher)."""
    return LossShapes(
        student_dim=backbone.embed_dim,
        teacher_dim=teacher.embed_dim if teacher is not None else None,
        num_classes=num_classes,
        student_layers=backbone.num_layers,
        teacher_layers=teacher.num_layers if teacher is not None else 1,
        student_layer_dims=backbone.layer_dims,
    )


@in_phase("student")
def train_student(
    model: nn.Module,
    recipe: Recipe,
    data: StageData,
    budget: TrainConfig,
    *,
    teacher: TeacherSource | None,
    registry: Registry,
    device: str,
    checkpoint: Path,
    cache: CacheSlot | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "student",
) -> TrainedStudent:
    """Train ``model`` with ``recipe`` on ``data`` for ``budget``, or load it from ``cache``.

    ``model`` must be built (its random initialisation drawn) before the call; the losses
    are built after it, in that order, so a given seed gives the same student everywhere.
    ``checkpoint`` is the unit's resumable training state.
    """
    components = loss_components(registry, recipe)
    slot = entry_lock(cache.folder, cache.key) if cache is not None else nullcontext()
    with slot:  # concurrent jobs never train the same cached stage twice
        if cache is not None:
            meta = load_module_state(model, cache.folder, cache.key)
            if meta is not None:
                threads = meta.get("torch_threads")  # absent from entries before it was kept
                on = f", on {int(threads)} torch thread(s)" if threads else ""
                return TrainedStudent(
                    model.eval(),
                    components,
                    float(meta["train_seconds"]),
                    cached=True,
                    notes=[
                        "student reused from the cache (trained by an earlier unit with the same "
                        f"method, seed and stage config{on}); its measured training time is "
                        "reported"
                    ],
                )

        started = time.perf_counter()
        shapes = loss_shapes(model.backbone, teacher, data.num_classes)
        terms = build_losses(registry, recipe, shapes)
        needs = needs_of(terms)
        notes: list[str] = []
        images, labels = data.labelled(), data.labels
        if needs.uses_teacher:
            if teacher is None or recipe.teacher_mode is None:
                raise ConfigError(
                    "the recipe's losses read the teacher but its teacher_mode is None: set a "
                    "teacher_mode or drop the losses that read the teacher"
                )
            transfer = data.transfer
            wanted = transfer_name(recipe.transfer_set) != "none"
            if wanted and transfer is not None and len(transfer):
                images = torch.cat([images, transfer])
                labels = torch.cat([labels, torch.full((len(transfer),), -1)])
        tensors: tuple[torch.Tensor, ...] = (images, labels)
        if needs.uses_teacher:
            assert teacher is not None
            tensors += tuple(teacher.outputs(images, needs))
            notes += teacher.notes()
        attached = None
        if recipe.quantise is not None:  # quantisation-aware: wrappers on for training only
            attached = recipe.quantise.attach(model.backbone, planned_steps(len(images), budget))
            notes.append(
                f"quantisation-aware training ({recipe.quantise.as_dict()}): "
                f"{len(attached.layers)} conv/linear layers fake-quantised while training"
            )
        try:
            result = fit(
                RecipeStep(model, terms, needs),  # type: ignore[arg-type]
                tensors,
                budget,
                device=device,
                checkpoint=checkpoint,
                progress=progress,
                desc=desc,
            )
        finally:
            if attached is not None:
                attached.remove()
        if result.resumed_from_step:
            notes.append(
                f"{desc} training was interrupted and resumed from its checkpoint at step "
                f"{result.resumed_from_step} (the same result as an uninterrupted run)"
            )
        seconds = time.perf_counter() - started
        if cache is not None:
            meta = {"train_seconds": seconds, "torch_threads": torch.get_num_threads()}
            save_module_state(model, cache.folder, cache.key, meta)
        return TrainedStudent(model.eval(), components, seconds, cached=False, notes=notes)
