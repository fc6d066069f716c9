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
    log(
        f"rendering {config.train_per_class} train + {config.val_per_class} val images per "
        f"base class ({len(world.classes('base'))} classes)"
    )
    train = world.images("base", config.train_per_class, config.seed, "pretrain/train")
    val = world.images("base", config.val_per_class, config.seed, "pretrain/val")
    n_classes = train.num_classes
    manifest: dict[str, Any] = {
        "world_version": WORLD_VERSION,
        "config": asdict(config),
        "models": {},
    }

    for role, epochs, lr in (
        ("teacher", config.teacher_epochs, config.teacher_lr),
        ("student", config.student_epochs, config.student_lr),
    ):
        step = Classify(build_vit(role), n_classes)
        result = fit(
            step,
            (train.images, train.labels),
            TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=lr, seed=config.seed),
            device=device,
            checkpoint=out / f".{role}-checkpoint.pt",
            progress=progress,
            desc=f"pretrain {role}",
        )
        (out / f".{role}-checkpoint.pt").unlink(missing_ok=True)
        logits = predict(step.logits, val.images, device=device)
        acc = accuracy(logits, val.labels)
        log(f"{role}: base-split val accuracy {acc:.2f}% ({result.seconds:.0f} s)")
        state = {f"backbone.{k}": v for k, v in step.backbone.model.state_dict().items()}
        state.update({f"base_head.{k}": v for k, v in step.head.state_dict().items()})
        digest = _save(out / f"{role}.safetensors", state)
        manifest["models"][role] = {
            "base_val_top1": round(acc, 2),
            "train_seconds": round(result.seconds, 1),
            "params": sum(p.numel() for p in step.backbone.parameters()),
            "sha256": digest,
        }
        if role == "teacher":
            teacher = step.backbone.to(device)

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
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
