"""The Shapes foundation models: a teacher ViT, a smaller student ViT of the same family,
and the teacher's text tower (image-text space for zero-shot), all trained by
``kdbench world pretrain`` on the base split.

Weights are looked up in the cache first (``<cache>/world/v<version>/``, where
``kdbench world pretrain`` writes) and then in the copy shipped with the package.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.cache import cache_dir
from kdbench.models.backbone import Backbone, Preprocess, WeightsError
from kdbench.world.taxonomy import COLOURS, PATTERNS, SHAPES
from kdbench.world.world import WORLD_VERSION

IMAGE_SIZE = 32
PATCH_SIZE = 4
ARCHS: dict[str, dict[str, int]] = {
    "teacher": {"embed_dim": 128, "depth": 6, "num_heads": 4},
    "student": {"embed_dim": 64, "depth": 4, "num_heads": 2},
}
TEXT_DIM = 64
JOINT_DIM = 64
PROMPT = "a photo of a {}."
TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}.", "a drawing of a {}.")
PACKAGED = Path(__file__).parent / "weights"


def weights_dir(version: str = WORLD_VERSION) -> Path:
    """Where ``kdbench world pretrain`` writes by default."""
    return cache_dir() / "world" / f"v{version}"


def find_weights(name: str) -> Path:
    """``$KDBENCH_WORLD_WEIGHTS`` if set, else the cached file if one exists, else the
    packaged one; a clear error if none has it."""
    override = os.environ.get("KDBENCH_WORLD_WEIGHTS")
    folders = [Path(override)] if override else [weights_dir(), PACKAGED]
    for folder in folders:
        path = folder / f"{name}.safetensors"
        if path.is_file():
            return path
    raise WeightsError(
        f"no Shapes world weights {name!r} for world version {WORLD_VERSION} in "
        f"{' or '.join(str(f) for f in folders)}; make them with `kdbench world pretrain`"
    )


def vit_backbone(name: str, arch: dict[str, int], img_size: int = IMAGE_SIZE) -> Backbone:
    """A randomly initialised ViT of the Shapes family (patch 4, MLP ratio 4, class token)
    with ``arch``'s ``embed_dim``, ``depth`` and ``num_heads``."""
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=img_size,
        patch_size=PATCH_SIZE,
        num_classes=0,
        mlp_ratio=4.0,
        global_pool="token",
        **arch,
    )
    return Backbone(model, name, Preprocess(input_size=(img_size, img_size)))


def build_vit(role: str, img_size: int = IMAGE_SIZE) -> Backbone:
    """A randomly initialised Shapes ViT (``role`` is 'teacher' or 'student')."""
    if role not in ARCHS:
        raise ValueError(f"role must be one of {sorted(ARCHS)}, not {role!r}")
    return vit_backbone(f"shapes-vit-{role}", ARCHS[role], img_size)


def _fit_pos_embed(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Resample the position embedding when the model runs at another image size."""
    from timm.layers import resample_abs_pos_embed

    pos = state.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        grid = model.patch_embed.grid_size
        state = dict(state)
        state["pos_embed"] = resample_abs_pos_embed(pos, list(grid), num_prefix_tokens=1)
    return state


def split_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v.float() for k, v in state.items() if k.startswith(prefix)}


def _manifest_sha256(path: Path) -> str | None:
    """The sha256 ``kdbench world pretrain`` recorded for ``path`` in the manifest beside it."""
    manifest = path.parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        entry = json.loads(manifest.read_text(encoding="utf-8"))["models"].get(path.stem, {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise WeightsError(
            f"{manifest} cannot be read ({type(error).__name__}: {error}); remake the weights "
            "with `kdbench world pretrain`"
        ) from None
    return entry.get("sha256") if isinstance(entry, dict) else None


def load_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors or a weights-only torch checkpoint). A
    file listed in the ``manifest.json`` beside it must match the sha256 recorded there, so
    damaged weights are an error, never a silently different model."""
    from kdbench.cache import tensor_digest
    from kdbench.models.backbone import read_state_dict

    state = read_state_dict(path)
    expected = _manifest_sha256(path)
    if expected is not None and tensor_digest(state) != expected:
        raise WeightsError(
            f"{path} does not match the sha256 recorded in {path.parent / 'manifest.json'}; "
            "the file is damaged: remake it with `kdbench world pretrain`"
        )
    return state


def world_backbone(
    role: str,
    weights: str | Path | None = None,
    pretrained: bool = True,
    img_size: int = IMAGE_SIZE,
) -> Backbone:
    """A Shapes ViT with its pretrained weights (``pretrained=False``: random init)."""
    backbone = build_vit(role, img_size)
    if not pretrained and weights is None:
        return backbone
    return load_world_weights(backbone, role, weights, f"the Shapes {role} ViT")


def load_world_weights(
    backbone: Backbone, name: str, weights: str | Path | None, what: str
) -> Backbone:
    """Load the ``backbone.*`` tensors of ``weights`` (default: the world weights file
    ``name``, see :func:`find_weights`) into ``backbone``, position embeddings resampled
    to its image size; ``what`` names the model in errors."""
    path = Path(weights) if weights is not None else find_weights(name)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    state = split_state(load_file(path), "backbone.")
    if not state:
        raise WeightsError(f"{path} has no 'backbone.*' tensors; is it a Shapes world file?")
    try:
        backbone.model.load_state_dict(_fit_pos_embed(state, backbone.model))
    except RuntimeError as error:
        raise WeightsError(
            f"{path} does not fit {what}: {' '.join(str(error).split())[:400]}"
        ) from None
    return backbone


def shapes_teacher(**options: Any) -> Backbone:
    """The Shapes teacher: ViT, 6 blocks of width 128, patch 4, 32 px."""
    return world_backbone("teacher", **options)


def shapes_student(**options: Any) -> Backbone:
    """The Shapes student: ViT, 4 blocks of width 64, patch 4, 32 px."""
    return world_backbone("student", **options)


# -- the text tower -----------------------------------------------------------------------

VOCAB = ("<pad>", "<unk>", "a", "photo", "picture", "drawing", "of", ".",
         *COLOURS, *SHAPES, *PATTERNS)  # fmt: skip


def tokenize(texts: list[str], length: int = 8) -> torch.Tensor:
    """Word ids, padded with 0; unknown words map to ``<unk>``."""
    index = {w: i for i, w in enumerate(VOCAB)}
    out = torch.zeros(len(texts), length, dtype=torch.long)
    for row, text in enumerate(texts):
        words = re.findall(r"[a-z]+|\.", text.lower())[:length]
        out[row, : len(words)] = torch.tensor([index.get(w, 1) for w in words] or [1])[:length]
    return out


class TextTower(nn.Module):
    """A two-layer transformer over words, mean-pooled and projected to the joint space."""

    def __init__(self, dim: int = TEXT_DIM, out_dim: int = JOINT_DIM, length: int = 8) -> None:
        super().__init__()
        self.length = length
        self.embed = nn.Embedding(len(VOCAB), dim)
        self.pos = nn.Parameter(torch.zeros(1, length, dim))
        layer = nn.TransformerEncoderLayer(
            dim, nhead=4, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, out_dim)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == 0
        x = self.encoder(
            self.embed(tokens) + self.pos[:, : tokens.shape[1]], src_key_padding_mask=pad
        )
        keep = (~pad).unsqueeze(-1).float()
        pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1)
        return F.normalize(self.proj(pooled), dim=-1)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = self.pos.device
        return self(tokenize(texts, self.length).to(device))


class ImageTextHead(nn.Module):
    """The teacher's image projection into the joint space, the text tower, and the
    learned temperature: what turns the Shapes teacher into an image-text model."""

    def __init__(self, image_dim: int = ARCHS["teacher"]["embed_dim"]) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, JOINT_DIM)
        self.text = TextTower()
        self.logit_scale = nn.Parameter(torch.tensor(2.6593))  # log(1/0.07), as CLIP starts

    def encode_image(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(pooled), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.text.encode(texts)


def shapes_text_head(weights: str | Path | None = None) -> ImageTextHead:
    """The pretrained image-text head of the Shapes teacher."""
    path = Path(weights) if weights is not None else find_weights("text")
    head = ImageTextHead()
    state = split_state(load_file(path), "text_head.")
    if not state:
        raise WeightsError(f"{path} has no 'text_head.*' tensors")
    head.load_state_dict(state)
    return head.eval()
