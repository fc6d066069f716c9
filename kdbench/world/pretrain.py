"""``kdbench world pretrain``: train the Shapes foundation models on the base split.

1. the teacher ViT, supervised on the base classes;
2. the student ViT, the same way (it is the "pretrained small model" the protocols start
   from, as ViT-S is next to ViT-B in DINOv2);
3. the teacher's image-text head: a text tower and an image projection trained
   contrastively against the frozen teacher on base-class names (locked-image tuning), so
   the teacher can score class names it never saw.

Each stage reports held-out accuracy; everything lands in one folder with a manifest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.atomic import atomic_save, atomic_write_text
from kdbench.cache import tensor_digest
from kdbench.errors import ConfigError
from kdbench.seeding import seed_everything
from kdbench.train import TrainConfig, fit, predict
from kdbench.world.models import (
    PROMPT,
    TEMPLATES,
    ImageTextHead,
    build_vit,
    tokenize,
    weights_dir,
)
from kdbench.world.world import WORLD_VERSION, ShapesWorld


@dataclass
class PretrainConfig:
    """Sizes and budgets; ``smoke()`` shrinks them to seconds for tests.

    The teacher gets more capacity and more training than the student, as the larger model
    of a foundation-model family does.
    """

    train_per_class: int = 1000
    val_per_class: int = 20
    teacher_epochs: int = 3
    student_epochs: int = 2
    text_epochs: int = 30
    batch_size: int = 128
    teacher_lr: float = 1e-3
    student_lr: float = 2e-3
    text_lr: float = 2e-3
    seed: int = 0

    @classmethod
    def smoke(cls) -> PretrainConfig:
        return cls(
            train_per_class=4,
            val_per_class=2,
            teacher_epochs=1,
            student_epochs=1,
            text_epochs=2,
            batch_size=64,
        )


class Classify(nn.Module):
    """Step module: cross-entropy of a linear head on a backbone's pooled embedding."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dim, num_classes)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(images), labels)


class LockedImageTextTuning(nn.Module):
    """Step module: contrastive loss between frozen image features and the names of all
    base classes, with a random prompt template per step."""

    def __init__(self, head: ImageTextHead, class_names: list[str]) -> None:
        super().__init__()
        self.head = head
        tokens = torch.stack([tokenize([t.format(n) for n in class_names]) for t in TEMPLATES])
        self.register_buffer("tokens", tokens, persistent=False)  # (templates, classes, L)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        template = int(torch.randint(len(TEMPLATES), (1,)))
        text = self.head.text(self.tokens[template])
        image = self.head.encode_image(features)
        logits = self.head.logit_scale.exp().clamp(max=100) * image @ text.T
        return F.cross_entropy(logits, labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean() * 100)


@torch.no_grad()
def zero_shot_accuracy(
    head: ImageTextHead, features: torch.Tensor, labels: torch.Tensor, names: list[str]
) -> float:
    """Top-1 of matching images to ``names`` (with the evaluation prompt)."""
    text = head.encode_text([PROMPT.format(n) for n in names])
    return accuracy(head.encode_image(features) @ text.T, labels)


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    from safetensors.torch import save_file

    half = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in tensors.items()}
    atomic_save(path, lambda tmp: save_file(half, tmp, metadata={"world_version": WORLD_VERSION}))
    return tensor_digest(half)


def _pretrain_classifier(
    backbone: nn.Module,
    name: str,
    data: tuple[Any, Any],
    epochs: int,
    lr: float,
    config: PretrainConfig,
    out: Path,
    device: str,
    progress: Callable[..., Any] | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Train ``backbone`` with a linear head on the base classes, write
    ``<name>.safetensors`` to ``out``; returns its manifest entry."""
    train, val = data
    step = Classify(backbone, train.num_classes)
    checkpoint = out / f".{name}-checkpoint.pt"
    result = fit(
        step,
        (train.images, train.labels),
        TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=lr, seed=config.seed),
        device=device,
        checkpoint=checkpoint,
        progress=progress,
        desc=f"pretrain {name}",
    )
    checkpoint.unlink(missing_ok=True)
    acc = accuracy(predict(step.logits, val.images, device=device), val.labels)
    log(f"{name}: base-split val accuracy {acc:.2f}% ({result.seconds:.0f} s)")
    state = {f"backbone.{k}": v for k, v in step.backbone.model.state_dict().items()}
    state.update({f"base_head.{k}": v for k, v in step.head.state_dict().items()})
    return {
        "base_val_top1": round(acc, 2),
        "train_seconds": round(result.seconds, 1),
        "params": sum(p.numel() for p in step.backbone.parameters()),
        "sha256": _save(out / f"{name}.safetensors", state),
    }


def _render_base(config: PretrainConfig, log: Callable[[str], None]) -> tuple[Any, Any]:
    world = ShapesWorld()
    log(
        f"rendering {config.train_per_class} train + {config.val_per_class} val images per "
        f"base class ({len(world.classes('base'))} classes)"
    )
    train = world.images("base", config.train_per_class, config.seed, "pretrain/train")
    val = world.images("base", config.val_per_class, config.seed, "pretrain/val")
    return train, val


WORLD_ROLES = {"shapes-teacher": "teacher", "shapes-student": "student"}
"""Registered names whose weights :func:`pretrain` makes (as ``<role>.safetensors``)."""


def pretrain_students(
    names: list[str],
    registry: Any,
    out: Path | None = None,
    config: PretrainConfig | None = None,
    device: str = "cpu",
    progress: Callable[..., Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pretrain registered students from random weights on the base split, the way the
    Shapes student is (its epochs and learning rate), as ``<name>.safetensors`` beside the
    world's other weights; their entries are added to the ``manifest.json`` there (the
    other entries are kept). Returns the manifest."""
    config = config or PretrainConfig()
    out = Path(out) if out is not None else weights_dir()
    for name in names:
        if name in WORLD_ROLES:
            raise ConfigError(
                f"{name} is one of the world's own models: `kdbench world pretrain` without "
                "--student trains it"
            )
        registry.get("students", name)  # unknown names fail before any work
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    manifest = _read_manifest(out) or {"world_version": WORLD_VERSION, "models": {}}
    seed_everything(config.seed)
    data = _render_base(config, log)
    for name in names:
        seed_everything(config.seed)
        backbone = registry.get("students", name).load()(pretrained=False)
        entry = _pretrain_classifier(
            backbone,
            name,
            data,
            config.student_epochs,
            config.student_lr,
            config,
            out,
            device,
            progress,
            log,
        )
        entry["config"] = asdict(config)
        manifest["models"][name] = entry
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def pretrain(
    out: Path | None = None,
    config: PretrainConfig | None = None,
    device: str = "cpu",
    progress: Callable[..., Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the three models, write them and ``manifest.json`` to ``out``; returns the
    manifest (accuracies, seconds, digests)."""
    config = config or PretrainConfig()
    out = Path(out) if out is not None else weights_dir()
    seed_everything(config.seed)
    world = ShapesWorld()
    started = time.perf_counter()
    train, val = _render_base(config, log)
    manifest: dict[str, Any] = {
        "world_version": WORLD_VERSION,
        "config": asdict(config),
        "models": {},
    }

    for role, epochs, lr in (
        ("teacher", config.teacher_epochs, config.teacher_lr),
        ("student", config.student_epochs, config.student_lr),
    ):
        backbone = build_vit(role)
        manifest["models"][role] = _pretrain_classifier(
            backbone, role, (train, val), epochs, lr, config, out, device, progress, log
        )
        if role == "teacher":
            teacher = backbone.to(device)

    head = ImageTextHead()
    feats = predict(
        teacher, train.images, device=device, progress=progress, desc="teacher features"
    )
    val_feats = predict(teacher, val.images, device=device)
    step = LockedImageTextTuning(head, train.names)
    result = fit(
        step,
        (feats, train.labels),
        TrainConfig(epochs=config.text_epochs, batch_size=256, lr=config.text_lr, seed=config.seed),
        device=device,
        progress=progress,
        desc="pretrain text tower",
    )
    head = head.cpu().eval()
    scores = {"base_val_top1": zero_shot_accuracy(head, val_feats, val.labels, val.names)}
    for split in ("novel", "downstream"):
        held = world.images(split, config.val_per_class, config.seed, "pretrain/zero-shot")
        hf = predict(teacher, held.images, device=device)
        scores[f"{split}_zero_shot_top1"] = zero_shot_accuracy(head, hf, held.labels, held.names)
        scores[f"{split}_chance"] = 100.0 / held.num_classes
    log("text tower: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    digest = _save(
        out / "text.safetensors", {f"text_head.{k}": v for k, v in head.state_dict().items()}
    )
    manifest["models"]["text"] = {
        **{k: round(v, 2) for k, v in scores.items()},
        "train_seconds": round(result.seconds, 1),
        "sha256": digest,
    }
    manifest["seconds"] = round(time.perf_counter() - started, 1)
    manifest["models"].update(
        {k: v for k, v in _read_manifest(out).get("models", {}).items() if k not in WORLD_FILES}
    )  # students pretrained here with --student keep their entries
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


WORLD_FILES = ("teacher", "student", "text")


def _read_manifest(out: Path) -> dict[str, Any]:
    """The ``manifest.json`` in ``out`` (empty if there is none); a clear error if it cannot
    be used there (unreadable, or another world version's)."""
    path = out / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest.get("models"), dict):
            raise ValueError("no 'models' object")
    except (ValueError, AttributeError) as error:
        raise ConfigError(f"{path} is not a weights manifest ({error}); remove it") from None
    if manifest.get("world_version") != WORLD_VERSION:
        raise ConfigError(
            f"{path} holds weights of world version {manifest.get('world_version')}, not "
            f"{WORLD_VERSION}; write to another folder (--out)"
        )
    return manifest
