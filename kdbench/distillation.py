"""Training a student from a :class:`~kdbench.methods.Recipe`: the pieces every protocol
that distils shares.

The teacher is frozen while the student trains and there is no augmentation, so its
outputs are computed once for the whole training set and travel with the batches as
tensors; each step then costs one student forward and backward, as in a hand-written loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdbench.losses.base import DistillationLoss, LossShapes
from kdbench.methods import Recipe
from kdbench.models.backbone import Backbone, Features
from kdbench.models.heads import ClassifierHead
from kdbench.phases import in_phase
from kdbench.registry import Registry
from kdbench.train import TrainConfig, fit, predict


class Classifier(nn.Module):
    """A backbone and a linear head: ``forward`` gives logits, ``features`` everything."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClassifierHead(backbone.embed_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def features(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        out = self.backbone.features(images, tokens=tokens, layers=layers)
        out.logits = self.head(out.pooled)
        return out


class HeadStep(nn.Module):
    """Step module: cross-entropy of a head on precomputed features."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.head(features), labels)


def fit_linear_probe(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    device: str,
    progress: Callable[..., Any] | None = None,
) -> None:
    """Train ``classifier.head`` on the frozen backbone's embeddings, computed once."""
    features = predict(
        classifier.backbone.to(device).eval(),
        images,
        device=device,
        progress=progress,
        desc="frozen features",
    )
    fit(HeadStep(classifier.head), (features, labels), config, device=device, desc="probe")


@dataclass
class Needs:
    """Which outputs the losses of a recipe read."""

    student: set[str] = field(default_factory=set)
    teacher: set[str] = field(default_factory=set)
    student_layers: list[int] = field(default_factory=list)
    teacher_layers: list[int] = field(default_factory=list)
    labels: bool = False

    @property
    def uses_teacher(self) -> bool:
        return bool(self.teacher)

    def teacher_keys(self) -> list[str]:
        """Order of the precomputed teacher tensors in a batch."""
        keys = [k for k in ("logits", "pooled", "tokens") if k in self.teacher]
        keys += [f"layer{i}" for i in self.teacher_layers] if "layers" in self.teacher else []
        return keys


def build_losses(
    registry: Registry, recipe: Recipe, shapes: LossShapes
) -> list[tuple[DistillationLoss, float]]:
    """Instantiate every loss term of ``recipe`` from the registry."""
    terms = []
    for term in recipe.losses:
        cls = registry.get("losses", term.loss).load()
        try:
            loss = cls(shapes, **dict(term.options))
        except TypeError as error:
            raise ValueError(
                f"loss {term.loss!r} does not accept options {dict(term.options)}: {error}"
            ) from None
        terms.append((loss, float(term.weight)))
    return terms


def needs_of(terms: Sequence[tuple[DistillationLoss, float]]) -> Needs:
    needs = Needs()
    for loss, _ in terms:
        for item in loss.requires:
            if item == "labels":
                needs.labels = True
                continue
            who, what = item.split(".")
            (needs.student if who == "student" else needs.teacher).add(what)
        needs.student_layers += [
            i for i in loss.student_layer_indices() if i not in needs.student_layers
        ]
        needs.teacher_layers += [
            i for i in loss.teacher_layer_indices() if i not in needs.teacher_layers
        ]
    return needs


@in_phase("teacher")
def teacher_tensors(
    teacher: Classifier | Callable[[torch.Tensor], Features],
    images: torch.Tensor,
    needs: Needs,
    *,
    device: str,
    batch_size: int = 256,
    progress: Callable[..., Any] | None = None,
) -> list[torch.Tensor]:
    """The teacher outputs ``needs`` asks for, for every image, in ``teacher_keys`` order."""
    keys = needs.teacher_keys()
    if not keys:
        return []
    want_tokens = "tokens" in needs.teacher
    layers = needs.teacher_layers if "layers" in needs.teacher else []
    features = teacher.features if isinstance(teacher, Classifier) else teacher

    def outputs(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = features(x, tokens=want_tokens, layers=layers)
        by_key = {"logits": f.logits, "pooled": f.pooled, "tokens": f.tokens}
        by_key.update({f"layer{i}": t for i, t in zip(layers, f.layers)})
        return tuple(by_key[k] for k in keys)

    result = predict(
        outputs,
        images,
        batch_size=batch_size,
        device=device,
        progress=progress,
        desc="teacher outputs",
    )
    return list(result)


def _select(f: Features, mask: torch.Tensor) -> Features:
    return Features(
        pooled=None if f.pooled is None else f.pooled[mask],
        tokens=None if f.tokens is None else f.tokens[mask],
        layers=[t[mask] for t in f.layers],
        logits=None if f.logits is None else f.logits[mask],
    )


class RecipeStep(nn.Module):
    """Step module: ``forward(images, labels, *teacher_tensors) -> weighted loss sum``.

    Labels of -1 mark unlabelled (transfer-set) images: losses that read labels see only
    the labelled part of a batch.
    """

    def __init__(
        self,
        student: Classifier,
        terms: Sequence[tuple[DistillationLoss, float]],
        needs: Needs,
    ) -> None:
        super().__init__()
        self.student = student
        self.losses = nn.ModuleList(loss for loss, _ in terms)
        self.weights = [w for _, w in terms]
        self.needs = needs
        self.teacher_keys = needs.teacher_keys()

    def forward(self, images: torch.Tensor, labels: torch.Tensor, *teacher: torch.Tensor):
        needs = self.needs
        s = self.student.features(
            images,
            tokens="tokens" in needs.student,
            layers=needs.student_layers if "layers" in needs.student else (),
        )
        t = None
        if teacher:
            by_key = dict(zip(self.teacher_keys, teacher))
            t = Features(
                pooled=by_key.get("pooled"),
                tokens=by_key.get("tokens"),
                layers=[by_key[f"layer{i}"] for i in needs.teacher_layers if f"layer{i}" in by_key],
                logits=by_key.get("logits"),
            )
        labelled = labels >= 0
        total = s.pooled.sum() * 0.0
        for loss, weight in zip(self.losses, self.weights):
            if "labels" in loss.requires and not bool(labelled.all()):
                if not bool(labelled.any()):
                    continue
                value = loss(_select(s, labelled), t and _select(t, labelled), labels[labelled])
            else:
                value = loss(s, t, labels)
            total = total + weight * value
        return total


def init_backbone(
    registry: Registry, kind: str, spec: dict[str, Any], pretrained: bool = True
) -> Backbone:
    """A teacher or student from a config entry ``{"name": ..., "options": {...}}``."""
    from kdbench.models.hub import OfflineWeightsError

    component = registry.get(kind, spec["name"])
    options = dict(spec.get("options", {}))
    if not pretrained:
        options["pretrained"] = False
        options.pop("weights", None)
    try:
        return component.load()(**options)
    except OfflineWeightsError as error:  # name the one option that fixes it
        raise error.with_role(kind.removesuffix("s")) from None


@torch.no_grad()
@in_phase("evaluation")
def accuracy_counts(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    device: str,
    batch_size: int = 256,
) -> torch.Tensor:
    """The confusion matrix (true x predicted) of ``model`` on ``images``."""
    logits = predict(model, images, batch_size=batch_size, device=device)
    pred = logits.argmax(-1)
    return torch.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
