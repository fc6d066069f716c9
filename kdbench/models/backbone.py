"""One feature API over timm models: pooled embedding, patch tokens as a 2-D map,
intermediate layers, embedding width, input size and normalisation.

A :class:`Backbone` takes RGB images as floats in [0, 1] at its ``input_size`` and normalises
them itself, so callers never need to know a model's mean and std.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import WeightsError

if TYPE_CHECKING:
    from kdbench.registry import Registry


@dataclass(frozen=True)
class Preprocess:
    """Input size and normalisation a backbone expects."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def as_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std)}


@dataclass
class Features:
    """What a backbone computes for a batch; fields not asked for are ``None``.

    ``tokens`` is (B, D, h, w); each entry of ``layers`` is (B, D_l, h, w).
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    layers: list[torch.Tensor] = field(default_factory=list)
    logits: torch.Tensor | None = None


class Backbone(nn.Module):
    """A timm model (built with ``num_classes=0``) behind the kdbench feature API."""

    def __init__(self, model: nn.Module, name: str, preprocess: Preprocess) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.preprocess = preprocess
        self.register_buffer("_mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1), False)
        self.register_buffer("_std", torch.tensor(preprocess.std).view(1, 3, 1, 1), False)

    # -- description -------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return int(self.model.num_features)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    @property
    def num_layers(self) -> int:
        """How many intermediate outputs ``features(layers=...)`` can index."""
        info = getattr(self.model, "feature_info", None)
        if isinstance(info, list) and info:
            return len(info)
        blocks = getattr(self.model, "blocks", None) or getattr(self.model, "stages", None)
        return len(blocks) if blocks is not None else 1

    @property
    def patch_size(self) -> int | None:
        embed = getattr(self.model, "patch_embed", None)
        size = getattr(embed, "patch_size", None)
        return int(size[0]) if size is not None else None

    @property
    def grid_size(self) -> tuple[int, int]:
        """The token grid (h, w) at ``input_size``."""
        with torch.no_grad():
            probe = torch.zeros(1, 3, *self.input_size, device=self._mean.device)
            tokens = self.features(probe, tokens=True).tokens
        return int(tokens.shape[-2]), int(tokens.shape[-1])

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """The width of every intermediate layer ``features(layers=...)`` can return (all
        ``embed_dim`` for a ViT; growing with depth for a CNN)."""
        modes = {module: module.training for module in self.modules()}
        self.eval()  # a probe in training mode would move BatchNorm statistics
        try:
            with torch.no_grad():
                probe = torch.zeros(1, 3, *self.input_size, device=self._mean.device)
                layers = self.features(probe, layers=range(self.num_layers)).layers
        finally:
            for module, training in modes.items():
                module.training = training
        return tuple(int(layer.shape[1]) for layer in layers)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "num_layers": self.num_layers,
            "patch_size": self.patch_size,
            "grid_size": list(self.grid_size),
            "params": sum(p.numel() for p in self.parameters()),
            **self.preprocess.as_dict(),
        }

    # -- computation -------------------------------------------------------------------
    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images -> normalised float at ``input_size``."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        if tuple(images.shape[-2:]) != tuple(self.input_size):
            images = F.interpolate(
                images, size=self.input_size, mode="bilinear", align_corners=False, antialias=True
            )
        return (images - self._mean) / self._std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings (B, embed_dim)."""
        return self.model(self.normalise(images))

    def features(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        """Pooled embedding, and on request the final token map and intermediate layers
        (indices into the blocks; negative counts from the end)."""
        x = self.normalise(images)
        if not tokens and not layers:
            return Features(pooled=self.model(x))
        indices = sorted({i % self.num_layers for i in layers} | {self.num_layers - 1})
        final, inter = self.model.forward_intermediates(x, indices=indices, output_fmt="NCHW")
        pooled = self.model.forward_head(final, pre_logits=True)
        token_map = _token_map(self.model, final, inter[-1]) if tokens else None
        by_index = dict(zip(indices, inter))
        chosen = [by_index[i % self.num_layers] for i in layers]
        return Features(pooled=pooled, tokens=token_map, layers=chosen)


def _token_map(model: nn.Module, final: torch.Tensor, last_inter: torch.Tensor) -> torch.Tensor:
    """The final (normalised) features as a (B, D, h, w) map."""
    if final.ndim == 4:
        return final
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    h, w = last_inter.shape[-2:]
    patches = final[:, prefix:]
    return patches.transpose(1, 2).reshape(final.shape[0], final.shape[-1], h, w)


def resample_backbone(
    backbone: Backbone, registry: Registry, kind: str, spec: dict[str, Any], size: int
) -> Backbone:
    """``backbone``'s weights in a copy built for ``size`` px inputs (absolute position
    embeddings resampled to the new token grid; CNNs just take the new size). The copy is
    built by the registered ``kind`` component named in ``spec`` (``{"name", "options"}``)."""
    if tuple(backbone.input_size) == (size, size):
        return backbone
    from timm.layers import resample_abs_pos_embed

    options = {**spec.get("options", {}), "img_size": size, "pretrained": False}
    options.pop("weights", None)
    fresh: Backbone = registry.get(kind, spec["name"]).load()(**options)
    state = dict(backbone.state_dict())
    pos = state.get("model.pos_embed")
    target = getattr(fresh.model, "pos_embed", None)
    if pos is not None and target is not None and pos.shape != target.shape:
        prefix = (
            0 if getattr(fresh.model, "no_embed_class", False) else fresh.model.num_prefix_tokens
        )
        grid = list(fresh.model.patch_embed.grid_size)
        state["model.pos_embed"] = resample_abs_pos_embed(pos, grid, num_prefix_tokens=prefix)
    fresh.load_state_dict(state)
    return fresh


# -- weights ------------------------------------------------------------------------------


def _torch_load_problem(error: Exception) -> str:
    """What ``torch.load`` objected to, in one line without its advice to unpickle unsafely."""
    text = str(error).split("WeightsUnpickler error:", 1)[-1]
    text = " ".join(text.split()).split(" Check the documentation of torch.load")[0]
    return f"{type(error).__name__}: {text[:300]}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a ``weights_only`` torch checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; pass a .safetensors file or a torch "
            "checkpoint saved with torch.save(model.state_dict(), path)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:
            raise WeightsError(f"{path} is not a readable safetensors file: {error}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"{path} is not a safetensors file or a weights-only torch checkpoint "
            f"({_torch_load_problem(error)}); pass a .safetensors file or a checkpoint saved "
            "with torch.save(model.state_dict(), path)"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_weights(model: nn.Module, path: str | Path, strict_backbone: bool = True) -> None:
    """Load ``path`` into ``model``; classifier-head keys may be absent or extra."""
    state = read_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    head = ("head.", "fc.", "classifier.", "head_drop")
    missing = [k for k in result.missing_keys if not k.startswith(head)]
    if strict_backbone and missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise WeightsError(
            f"{path} does not fit this model: {len(missing)} parameters are missing ({shown}). "
            "Is it a checkpoint of the same architecture?"
        )


def timm_backbone(
    model_name: str,
    weights: str | Path | None = None,
    pretrained: bool = True,
    img_size: int | None = None,
    **kwargs: Any,
) -> Backbone:
    """``timm:<model_name>``: any timm model, with hub weights or a local ``weights`` file.

    ``pretrained=False`` gives random weights (tests, from-scratch baselines).
    """
    extra = dict(kwargs)
    if img_size is not None:
        extra["img_size"] = img_size
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} does not exist; pass a .safetensors file or a "
                f"weights-only torch checkpoint of timm:{model_name}"
            )
        try:  # the same timm loading path as hub weights, from a local file
            with _missing_keys_reported() as missing:
                model = _create(
                    model_name,
                    pretrained=True,
                    pretrained_cfg_overlay={"file": str(path)},
                    **extra,
                )
        except Exception as error:
            raise WeightsError(
                f"{path} could not be loaded into timm:{model_name}: {error}"
            ) from None
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise WeightsError(
                f"{path} could not be loaded into timm:{model_name}: {len(missing)} parameters "
                f"are missing from it ({shown}); is it a checkpoint of this architecture?"
            )
    elif pretrained:
        from kdbench.models.hub import require_timm_weights

        require_timm_weights(model_name)  # offline without them: fail now, with the command
        try:
            model = _create(model_name, pretrained=True, **extra)
        except Exception as error:  # hub unreachable, gated, or no pretrained tag
            raise WeightsError(
                f"could not get pretrained weights for timm:{model_name} ({error}). "
                f"Offline? Pass a local file: add --teacher timm:{model_name}:weights=PATH (or "
                f"--student timm:{model_name}:weights=PATH) to the kdbench run command (a "
                "safetensors file or a weights-only torch checkpoint), or use the embedded "
                "suite."
            ) from None
    else:
        model = _create(model_name, pretrained=False, **extra)
    cfg = model.pretrained_cfg or {}
    size = cfg.get("input_size", (3, 224, 224))[-2:]
    if img_size is not None:
        size = (img_size, img_size)
    preprocess = Preprocess(
        input_size=(int(size[0]), int(size[1])),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    )
    return Backbone(model, f"timm:{model_name}", preprocess)


@contextlib.contextmanager
def _missing_keys_reported() -> Iterator[list[str]]:
    """Collect the backbone parameters timm reports missing while loading weights (it loads
    non-strictly when the classifier is dropped, and only logs what it could not fill)."""
    missing: list[str] = []
    head = ("head.", "fc.", "classifier.", "head_drop")

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("Missing keys ("):
                keys = text[len("Missing keys (") : text.index(")")].split(", ")
                missing.extend(k for k in keys if not k.startswith(head))

    from kdbench.runtime import verbose

    logger = logging.getLogger("timm.models._builder")
    handler, level, propagate = Catch(logging.INFO), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # the INFO lines raised here for the catch stay out of the log (and of any handler a
    # library such as open_clip put on the root logger) unless kdbench runs with -v
    logger.propagate = propagate and verbose()
    try:
        yield missing
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _create(model_name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` that drops ``img_size`` for architectures without one (CNNs)."""
    import timm

    try:
        return timm.create_model(model_name, num_classes=0, **kwargs)
    except TypeError as error:
        if "img_size" not in kwargs or "img_size" not in str(error):
            raise
        kwargs.pop("img_size")
        return timm.create_model(model_name, num_classes=0, **kwargs)
