"""Few-shot semantic segmentation: support sets of ``k`` images per class drawn from a pool,
a head trained on each, every head scored by one dataset-level confusion matrix.

Usable on any backbone and any scenes (:mod:`kdbench.data.scenes` loads the Shapes world
or a segmentation dataset), the way the ``segmentation`` protocol does::

    from kdbench.world.source import shapes_scenes
    from kdbench.metrics import miou
    from kdbench.models.segmenter import token_features
    from kdbench.segmentation import draw_support, fit_head, head_confusions
    from kdbench.train import TrainConfig

    scenes = shapes_scenes(pool_size=300, eval_size=300, domain="base", max_objects=4)
    draw = draw_support(scenes.presence, k=5, seed=0)
    images, masks = scenes.load_pool(draw.indices)
    tokens = token_features(backbone, images, (), device="cpu", batch_size=64)
    train = TrainConfig(epochs=1, steps=200, batch_size=8, lr=1e-2)
    head = fit_head(tokens, masks, scenes.num_classes, seed=0, train=train)
    eval_tokens = token_features(backbone, scenes.eval_images, (), device="cpu", batch_size=64)
    [cm] = head_confusions([head], eval_tokens, scenes.eval_masks, scenes.num_classes)
    print(miou(cm).mean)

Frozen backbones are the cheap path: token maps are computed once and every head of every
(k, draw) trains on them. A backbone that trains with its head is a
:class:`~kdbench.models.segmenter.Segmenter`, scored by :func:`segmenter_confusions`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors, numerics, tensor_digest
from kdbench.data.scenes import SceneData
from kdbench.metrics.segmentation import IoU, confusions, mean_per_class, miou
from kdbench.models.adapters import Adapter
from kdbench.models.backbone import Backbone
from kdbench.models.heads import SegmentationHead
from kdbench.models.segmenter import Segmenter, TokenHeadStep, new_head, token_features
from kdbench.phases import in_phase
from kdbench.seeding import rng
from kdbench.train import TrainConfig, fit, predict

Key = tuple[int, int]
"""A support set: (k, draw seed)."""
PerShot = dict[int, list[torch.Tensor]]
"""k -> one confusion matrix per support draw."""


@dataclass
class SupportDraw:
    """The pool images of one support set, and the classes it could not give k images."""

    indices: np.ndarray
    short: dict[int, int]
    """class -> images containing it in the set, for classes with fewer than k."""

    @property
    def digest(self) -> str:
        return cache_key([int(i) for i in self.indices])


def draw_support(presence: np.ndarray, k: int, seed: int) -> SupportDraw:
    """``k`` images per class from a pool whose ``presence[i, c]`` says image ``i`` shows
    class ``c``.

    Classes are served rarest first (fewest pool images; ties by index). Each class takes,
    in a random order of the pool drawn from ``rng(seed, "segmentation/support", k)``, the
    first images that show it and are not chosen yet, until the chosen set holds ``k``
    images showing it; images chosen for one class count for every class they show, so
    common classes (the background) are mostly covered by the others' images. A class shown
    by fewer than ``k`` pool images gets all of them and is listed in ``short``.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    n, c = presence.shape
    order = rng(seed, "segmentation/support", k).permutation(n)
    ordered = presence[order]
    chosen = np.zeros(n, dtype=bool)
    have = np.zeros(c, dtype=np.int64)
    short: dict[int, int] = {}
    for cls in np.argsort(presence.sum(0), kind="stable"):
        need = k - int(have[cls])
        if need <= 0:
            continue
        candidates = order[ordered[:, cls] & ~chosen[order]]
        take = candidates[:need]
        chosen[take] = True
        have += presence[take].sum(0)
        if have[cls] < k:
            short[int(cls)] = int(have[cls])
    return SupportDraw(np.flatnonzero(chosen), short)


@dataclass
class SupportSets:
    """Every (k, draw) support set of a pool, with the union of their images loaded once."""

    draws: dict[Key, SupportDraw]
    images: torch.Tensor
    masks: torch.Tensor
    row_of: dict[int, int]
    """pool index -> row of ``images`` and ``masks``."""

    def rows(self, key: Key) -> torch.Tensor:
        """Rows of ``images`` and ``masks`` that make up support set ``key``."""
        return torch.as_tensor([self.row_of[int(i)] for i in self.draws[key].indices])

    def summary(self, classes: Sequence[str]) -> dict[str, Any]:
        """Per k and draw, the chosen pool images and the classes short of k (as stored in a
        record)."""
        out: dict[str, Any] = {}
        for (k, d), s in self.draws.items():
            out.setdefault(f"{k}shot", {})[f"draw{d}"] = {
                "images": [int(i) for i in s.indices],
                "short": {classes[c]: g for c, g in s.short.items()},
            }
        return out


def draw_support_sets(
    presence: np.ndarray,
    load_pool: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]],
    shots: Sequence[int],
    seeds: Sequence[int],
) -> SupportSets:
    """A support set per ``k`` in ``shots`` and draw seed in ``seeds`` (:func:`draw_support`),
    and their images from ``load_pool(pool indices)``, each image loaded once."""
    draws = {(k, int(d)): draw_support(presence, k, int(d)) for k in shots for d in seeds}
    union = np.unique(np.concatenate([s.indices for s in draws.values()]))
    images, masks = load_pool(union)
    return SupportSets(draws, images, masks, {int(i): r for r, i in enumerate(union)})


def stream_seed(seed: int, *stream: object) -> int:
    """A torch seed for the named ``stream`` of ``seed``."""
    return int(rng(seed, *stream).integers(2**31 - 1))


def frozen_tokens(
    backbone: Backbone,
    images: torch.Tensor,
    layers: Sequence[int],
    *,
    device: str,
    batch_size: int,
    cache_dir: Path | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "tokens",
) -> torch.Tensor:
    """:func:`~kdbench.models.segmenter.token_features` of a frozen backbone, cached on disk
    under ``cache_dir`` keyed by the backbone's weights and preprocessing, the layers and the
    images (``cache_dir=None``: computed afresh)."""

    def compute() -> dict[str, torch.Tensor]:
        tokens = token_features(
            backbone,
            images,
            layers,
            device=device,
            batch_size=batch_size,
            progress=progress,
            desc=desc,
        )
        return {"tokens": tokens}

    if cache_dir is None:
        return compute()["tokens"]
    key = cache_key(
        "segmentation-tokens",
        tensor_digest(backbone),
        backbone.preprocess.as_dict(),
        tuple(layers),
        tensor_digest({"images": images}),
        numerics(device),
    )
    return cached_tensors("segmentation-tokens", key, compute, cache_dir)[0]["tokens"]


def fit_head(
    tokens: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    seed: int,
    train: TrainConfig,
    *,
    device: str = "cpu",
) -> SegmentationHead:
    """A head initialised from ``seed`` and trained on token maps (N, D, h, w) against masks
    (N, H, W); returned in eval mode."""
    head = new_head(tokens.shape[1], num_classes, seed)
    fit(TokenHeadStep(head), (tokens, masks), train, device=device)
    return head.eval()


def fit_heads(
    tokens: torch.Tensor,
    masks: torch.Tensor,
    support: Mapping[Key, torch.Tensor],
    num_classes: int,
    seed: int,
    train: TrainConfig,
    *,
    device: str = "cpu",
) -> dict[Key, SegmentationHead]:
    """One head per support set, trained on its rows of ``tokens`` and ``masks``. Each
    (k, draw) has its own initialisation and batch-order seeds, named streams of ``seed``."""
    heads = {}
    for (k, d), rows in support.items():
        order = stream_seed(seed, "segmentation/order", k, d)
        heads[(k, d)] = fit_head(
            tokens[rows],
            masks[rows],
            num_classes,
            stream_seed(seed, "segmentation/head", k, d),
            dataclasses.replace(train, seed=order),
            device=device,
        )
    return heads


def fit_adapted(
    backbone: Backbone,
    adapter: Adapter,
    head: SegmentationHead,
    images: torch.Tensor,
    masks: torch.Tensor,
    train: TrainConfig,
    *,
    device: str = "cpu",
    progress: Callable[..., Any] | None = None,
    desc: str = "adapted",
) -> Segmenter:
    """A copy of ``backbone`` adapted by ``adapter`` and a copy of ``head`` (on the layers the
    adapter reads), trained together on the support images; returned in eval mode."""
    adapted = copy.deepcopy(backbone).cpu()
    adapter.apply(adapted)
    model = Segmenter(adapted, copy.deepcopy(head), adapter.layers)
    model.head.requires_grad_(True)
    fit(model, (images, masks), train, device=device, progress=progress, desc=desc)
    return model.to(device).eval()


def head_confusions(
    heads: Sequence[SegmentationHead],
    tokens: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> torch.Tensor:
    """(heads, C, C) confusion matrices of every head on the same token maps, each batch of
    tokens moved to ``device`` once for all heads."""
    size = tuple(masks.shape[-2:])

    def predict_batch(part: slice) -> list[torch.Tensor]:
        x = tokens[part].to(device).float()
        return [head(x, size=size) for head in heads]

    return confusions(predict_batch, masks, num_classes, len(heads), batch_size)


def segmenter_confusions(
    model: Segmenter,
    images: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> torch.Tensor:
    """(C, C) confusion matrix of a segmenter (backbone and head) on uint8 images."""
    size = tuple(masks.shape[-2:])

    def predict_batch(part: slice) -> list[torch.Tensor]:
        return [model.logits(images[part].to(device), size)]

    return confusions(predict_batch, masks, num_classes, 1, batch_size)[0]


@in_phase("evaluation")
def frozen_confusions(
    backbone: Backbone,
    layers: Sequence[int],
    scenes: SceneData,
    support: SupportSets,
    *,
    seed: int,
    train: TrainConfig,
    batch_size: int,
    device: str = "cpu",
    cache_dir: Path | None = None,
    progress: Callable[..., Any] | None = None,
    label: str = "frozen",
    maps: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[PerShot, dict[Key, SegmentationHead]]:
    """A head per support set on the frozen backbone's token maps of ``layers`` (computed
    once, cached under ``cache_dir``), each scored on the evaluation set: the confusion
    matrices per k (one per draw) and the heads. ``maps`` (images to those token maps, e.g.
    a quantised :class:`~kdbench.models.segmenter.TokenMaps`) replaces the backbone's own,
    uncached."""

    def tokens(images: torch.Tensor, what: str) -> torch.Tensor:
        if maps is not None:
            return predict(
                maps, images, batch_size=batch_size, progress=progress, desc=f"{label} ({what})"
            ).to(torch.float16)
        return frozen_tokens(
            backbone,
            images,
            layers,
            device=device,
            batch_size=batch_size,
            cache_dir=cache_dir,
            progress=progress,
            desc=f"{label} tokens ({what})",
        )

    support_tokens, eval_tokens = (
        tokens(support.images, "support"),
        tokens(scenes.eval_images, "eval"),
    )
    rows = {key: support.rows(key) for key in support.draws}
    heads = fit_heads(
        support_tokens, support.masks, rows, scenes.num_classes, seed, train, device=device
    )
    total = head_confusions(
        list(heads.values()),
        eval_tokens,
        scenes.eval_masks,
        scenes.num_classes,
        batch_size=batch_size,
        device=device,
    )
    out: PerShot = {}
    for (k, _), cm in zip(heads, total):
        out.setdefault(k, []).append(cm)
    return out, heads


@in_phase("evaluation")
def adapted_confusions(
    backbone: Backbone,
    adapter: Adapter,
    heads: Mapping[Key, SegmentationHead],
    scenes: SceneData,
    support: SupportSets,
    *,
    seed: int,
    train: TrainConfig,
    batch_size: int,
    device: str = "cpu",
    progress: Callable[..., Any] | None = None,
    name: str = "adapted",
) -> PerShot:
    """Per support set, the backbone adapted by ``adapter`` and a copy of that set's head in
    ``heads`` (trained on the layers the adapter reads) trained together, then scored on the
    evaluation set: confusion matrices per k (one per draw). The batch order of each set is
    the named stream ``(seed, "segmentation/adapted", name, k, draw)``, ``name`` being the
    adapter's."""
    out: PerShot = {}
    for k, d in support.draws:
        rows = support.rows((k, d))
        model = fit_adapted(
            backbone,
            adapter,
            heads[(k, d)],
            support.images[rows],
            support.masks[rows],
            dataclasses.replace(train, seed=stream_seed(seed, "segmentation/adapted", name, k, d)),
            device=device,
            progress=progress,
            desc=f"{name} {k}-shot draw {d}",
        )
        cm = segmenter_confusions(
            model,
            scenes.eval_images,
            scenes.eval_masks,
            scenes.num_classes,
            batch_size=batch_size,
            device=device,
        )
        out.setdefault(k, []).append(cm)
    return out


@dataclass
class ShotScores:
    """One adapter's confusion matrices and mIoU per k and support draw."""

    shots: list[int]
    confusion: PerShot
    iou: dict[int, list[IoU]]

    @classmethod
    def of(cls, confusion: PerShot, shots: Sequence[int]) -> ShotScores:
        return cls(list(shots), confusion, {k: [miou(cm) for cm in confusion[k]] for k in shots})

    @property
    def percent(self) -> np.ndarray:
        """(k, draws) mIoU in %, NaN where no class has a non-zero union."""
        return np.array([[100 * r.mean for r in self.iou[k]] for k in self.shots])

    @property
    def absent(self) -> int:
        """The most classes with zero union (left out of the mean) in any (k, draw)."""
        return max(r.absent for k in self.shots for r in self.iou[k])

    def per_class(self, k: int) -> np.ndarray:
        """Per-class IoU at ``k``, averaged over the draws (:func:`mean_per_class`)."""
        return mean_per_class(self.iou[k])

    def statistics(self) -> dict[str, Any]:
        """What rescores the scores: per ``"<k>shot"``, each draw's matrix, mIoU in % and
        absent classes."""
        by_k = {f"{k}shot": k for k in self.shots}
        return {
            "confusion": {n: [cm.tolist() for cm in self.confusion[k]] for n, k in by_k.items()},
            "miou_per_draw": {n: [percent(r.mean) for r in self.iou[k]] for n, k in by_k.items()},
            "absent_per_draw": {n: [r.absent for r in self.iou[k]] for n, k in by_k.items()},
        }


def percent(value: float) -> float | None:
    """A fraction as a % rounded to 4 decimals; None for NaN."""
    return None if not np.isfinite(value) else round(100 * float(value), 4)
