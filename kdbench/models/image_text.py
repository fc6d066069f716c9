"""Image–text teachers (CLIP-like): an image tower and a text tower into one joint space.

An :class:`ImageTextModel` gives L2-normalised joint embeddings of images
(``encode_image``) and of texts (``encode_text``), and its ``logit_scale`` (the inverse
temperature it was trained with). It also acts as a teacher backbone for recipes:
``features(images).pooled`` is the joint image embedding (``embed_dim`` wide), so losses
reading ``teacher.pooled`` regress the joint space.

Two are registered as teachers:

``shapes-clip``
    the Shapes world teacher ViT with the image–text head (image projection, text tower)
    that ``kdbench world pretrain`` trains on base-class names;
``open_clip:<architecture>``
    any open_clip model, e.g. ``open_clip:ViT-B-16-quickgelu`` with ``pretrained='openai'``
    (weights from the hub) or ``pretrained=<local checkpoint file>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.cache import cache_key, tensor_digest
from kdbench.models.backbone import Backbone, Features, Preprocess, WeightsError


class ImageTextModel(nn.Module):
    """Base class: subclasses implement ``_image``, ``_text`` and set ``preprocess``."""

    name: str
    preprocess: Preprocess

    def __init__(self, name: str, preprocess: Preprocess) -> None:
        super().__init__()
        self.name = name
        self.preprocess = preprocess
        self.register_buffer("_mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1), False)
        self.register_buffer("_std", torch.tensor(preprocess.std).view(1, 3, 1, 1), False)

    # -- what subclasses provide ---------------------------------------------------------
    def _image(self, normalised: torch.Tensor) -> torch.Tensor:
        """Unnormalised joint embeddings of preprocessed images."""
        raise NotImplementedError

    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised joint embeddings of texts."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> float:
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images -> normalised float at ``input_size``."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        if tuple(images.shape[-2:]) != tuple(self.input_size):
            images = F.interpolate(
                images, size=self.input_size, mode="bicubic", align_corners=False, antialias=True
            ).clamp_(0, 1)
        return (images - self._mean) / self._std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised joint embeddings (B, embed_dim) of uint8 or [0, 1] images."""
        return F.normalize(self._image(self.normalise(images)).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised joint embeddings (N, embed_dim) of ``texts``."""
        chunks = [
            self._text(list(texts[i : i + batch_size])).float()
            for i in range(0, len(texts), batch_size)
        ]
        if not chunks:
            raise ValueError("encode_text got no texts")
        return F.normalize(torch.cat(chunks), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    def features(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        """The joint image embedding as ``pooled``; token maps and layers are not offered
        by every image–text model (see subclasses)."""
        if tokens or layers:
            raise ValueError(
                f"{self.name} gives joint-space embeddings only; a loss that reads "
                "tokens or intermediate layers cannot use it as the teacher"
            )
        return Features(pooled=self.encode_image(images))

    def image_digest(self) -> str:
        """sha256 of everything that determines image embeddings."""
        return cache_key(self.name, self.preprocess.as_dict(), tensor_digest(self))

    def text_digest(self) -> str:
        """sha256 of everything that determines text embeddings."""
        return cache_key(self.name, tensor_digest(self))


# -- the Shapes teacher ---------------------------------------------------------------------


class ShapesImageText(ImageTextModel):
    """The Shapes teacher ViT and its image–text head (``kdbench world pretrain``)."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__("shapes-clip", backbone.preprocess)
        self.backbone = backbone
        self.head = head

    def _image(self, normalised: torch.Tensor) -> torch.Tensor:
        return self.head.image_proj(self.backbone.model(normalised))

    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.head.text.encode(list(texts))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head.image_proj(self.backbone(images)), dim=-1)

    @property
    def logit_scale(self) -> float:
        return float(self.head.logit_scale.detach().exp().clamp(max=100))

    @property
    def embed_dim(self) -> int:
        return int(self.head.image_proj.out_features)

    def features(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        """Joint embedding as ``pooled``; token maps and layers of the teacher ViT."""
        out = self.backbone.features(images, tokens=tokens, layers=layers)
        out.pooled = F.normalize(self.head.image_proj(out.pooled), dim=-1)
        return out

    def text_digest(self) -> str:
        return cache_key(self.name, tensor_digest(self.head.text))


def shapes_clip(
    weights: str | Path | None = None, text_weights: str | Path | None = None
) -> ShapesImageText:
    """The Shapes teacher with its text tower: ``weights`` / ``text_weights`` default to the
    world weights (``kdbench world pretrain``)."""
    from kdbench.world.models import shapes_teacher, shapes_text_head

    backbone = shapes_teacher(weights=weights)
    model = ShapesImageText(backbone, shapes_text_head(text_weights))
    return model.eval()


# -- open_clip ------------------------------------------------------------------------------


class OpenClipImageText(ImageTextModel):
    """An open_clip CLIP model (image and text towers, tokenizer)."""

    def __init__(self, model: nn.Module, tokenizer: Any, name: str, preprocess: Preprocess):
        super().__init__(name, preprocess)
        self.model = model
        self.tokenizer = tokenizer

    def _image(self, normalised: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(normalised)

    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        device = self._mean.device
        return self.model.encode_text(self.tokenizer(list(texts)).to(device))

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().clamp(max=100))

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1])


def open_clip_model(
    model_name: str,
    pretrained: str | Path | bool | None = "openai",
    weights: str | Path | None = None,
    precision: str = "fp32",
    image_size: int | None = None,
) -> OpenClipImageText:
    """``open_clip:<model_name>``, e.g. ``open_clip:ViT-B-16-quickgelu``.

    ``pretrained`` is an open_clip tag (``'openai'``: downloaded from the hub unless cached)
    or a local checkpoint file; ``weights`` is a synonym for a local file. ``pretrained=None``
    or ``False`` gives random weights (tests).
    """
    try:
        import open_clip
    except ImportError as error:
        raise ImportError(
            f"teacher 'open_clip:{model_name}' needs the open_clip package: "
            "pip install 'kdbench[clip]'"
        ) from error

    source: str | None
    if weights is not None:
        source = str(weights)
    elif pretrained in (None, False):
        source = None
    else:
        source = str(pretrained)
    looks_like_file = source is not None and (
        Path(source).suffix in (".pt", ".pth", ".bin", ".safetensors") or "/" in source
    )
    if looks_like_file and not Path(source).is_file():
        raise WeightsError(
            f"open_clip checkpoint {source} does not exist; pass a file saved with "
            f"torch.save(model.state_dict(), path) or safetensors for {model_name}"
        )
    if source is not None and not looks_like_file:
        from kdbench.models.hub import require_open_clip_weights

        require_open_clip_weights(model_name, source)  # offline, not cached: fail now
    try:
        model, _, transform = open_clip.create_model_and_transforms(
            model_name,
            pretrained=source,
            precision=precision,
            force_image_size=image_size,
        )
    except RuntimeError as error:
        text = str(error)
        if "Model config" in text:
            raise ValueError(f"open_clip has no model {model_name!r}: {text}") from None
        raise WeightsError(
            f"could not get open_clip weights {source!r} for {model_name} ({text}). Offline? "
            "Download them once, or pass a local checkpoint: add --teacher "
            f"open_clip:{model_name}:pretrained=PATH to the kdbench run command"
        ) from None
    visual = model.visual
    size = getattr(visual, "image_size", None) or (224, 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    preprocess = Preprocess(
        input_size=(int(size[0]), int(size[1])),
        mean=_stat(visual, transform, "mean"),
        std=_stat(visual, transform, "std"),
    )
    tokenizer = open_clip.get_tokenizer(model_name)
    return OpenClipImageText(model, tokenizer, f"open_clip:{model_name}", preprocess).eval()


def _stat(visual: Any, transform: Any, which: str) -> tuple[float, float, float]:
    """The image mean or std an open_clip model was trained with."""
    value = getattr(visual, f"image_{which}", None)
    if value is None:
        value = next(
            (getattr(t, which) for t in getattr(transform, "transforms", []) if hasattr(t, which)),
            None,
        )
    if value is None:
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        value = OPENAI_DATASET_MEAN if which == "mean" else OPENAI_DATASET_STD
    return tuple(float(v) for v in value)  # type: ignore[return-value]
