"""``segmentation`` (version 1): few-shot semantic segmentation, scored by mIoU.

The setting of arXiv 2401.11311 (reference code RedaBensaidDS/Foundation_FewShot): a
backbone gets a small head, BatchNorm + 1x1 conv on its patch tokens with the logits
upsampled bilinearly to the mask, trained with cross-entropy (ignore 255) on ``k`` support
images per class, and is scored by mIoU on a fixed evaluation set.

For one unit (method x seed) the protocol

1. gets the backbone to score: the base-class student the method distils (the stage shared
   with ``fewshot``, :mod:`kdbench.protocols.base_training`), or the teacher / the shipped
   student for the reference rows; it runs it at ``image_size`` (the position embeddings of
   a trained student are resampled to that grid);
2. draws, for every ``k`` in ``shots`` and every seed in ``draws``, a support set of
   ``k`` images per class from the support pool (:func:`draw_support`); the draws depend
   only on the pool, ``k`` and the draw seed, so every method sees the same support sets;
3. for the frozen adapters (``linear``: final tokens, ``multilayer``: the last 4 layers
   concatenated) computes the backbone's token maps once per image (cached on disk per
   backbone digest and image set) and trains one head per (k, draw) on them; for ``lora``,
   ``svf`` and ``finetune`` starts from that linear head and trains the adapted backbone and
   the head together on the support images;
4. scores every head on the evaluation set, accumulating one dataset-level confusion matrix
   per (adapter, k, draw) with :func:`kdbench.metrics.confusion_matrix`; the last training
   step is scored (no selection on the evaluation set).

Metrics: ``miou`` (headline) is the first adapter's mIoU averaged over the configured k,
mean ± 95% CI over the draws; ``miou_<k>shot`` the first adapter's mIoU at each k;
``miou_<adapter>`` each adapter's average over k. Confusion matrices, per-draw values and
support indices are in ``statistics`` so a record can be rescored.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.cache import cache_key, cached_tensors, tensor_digest
from kdbench.data.base import IGNORE_INDEX, SegmentationSplit, check_mask
from kdbench.distillation import init_backbone
from kdbench.methods import Method
from kdbench.metrics.segmentation import confusion_matrix, miou
from kdbench.metrics.stats import mean_ci95
from kdbench.models.adapters import Adapter
from kdbench.models.backbone import Backbone
from kdbench.models.heads import SegmentationHead
from kdbench.protocols.base import ConfigError, MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.protocols.base_training import (
    BASE_UNSUPPORTED,
    base_student,
    default_base_config,
    frozen_teacher_reason,
)
from kdbench.protocols.configs import segmentation as segmentation_config
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef, DatasetIdentity
from kdbench.seeding import rng
from kdbench.train import TrainConfig, fit

SHOTS = (1, 2, 5, 10)
"""The k a record can report (PROTOCOLS.md §4)."""
ADAPTERS = ("linear", "multilayer", "lora", "svf", "finetune")
FROZEN = ("linear", "multilayer")


# -- data ---------------------------------------------------------------------------------


@dataclass
class SceneData:
    """A support pool (images drawn on demand) and a fixed evaluation set, both as uint8
    tensors: images (N, 3, S, S), masks (N, H, W) with ``IGNORE_INDEX`` for unscored pixels."""

    classes: list[str]
    presence: np.ndarray
    """(pool size, classes) bool: which classes each pool image contains."""
    load_pool: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]
    eval_images: torch.Tensor
    eval_masks: torch.Tensor
    identity: DatasetIdentity
    draws: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _digest(*tensors: torch.Tensor) -> str:
    return cache_key(*[tensor_digest({"t": t}) for t in tensors])


def scene_presence(masks: torch.Tensor, num_classes: int) -> np.ndarray:
    """(N, classes) bool: which classes occur (unignored) in each mask."""
    flat = masks.reshape(masks.shape[0], -1).long()
    n = flat.shape[0]
    keep = flat != IGNORE_INDEX
    index = torch.arange(n).unsqueeze(1) * num_classes + flat.clamp(max=num_classes - 1)
    counts = torch.bincount(index[keep], minlength=n * num_classes).reshape(n, num_classes)
    return (counts > 0).numpy()


def load_embedded(config: dict[str, Any]) -> SceneData:
    """Shapes scenes: a support pool and an evaluation set, fixed by the world's seed."""
    from kdbench.world import ShapesWorld
    from kdbench.world.world import SCENE_CLASSES

    data = config["data"]
    world = ShapesWorld()
    pool_images, pool_masks = world.scenes(
        data["pool"], 0, "segmentation/support-pool", data["domain"], data["max_objects"]
    )
    eval_images, eval_masks = world.scenes(
        data["eval"], 0, "segmentation/eval", data["domain"], data["max_objects"]
    )
    classes = list(SCENE_CLASSES)

    def load_pool(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return pool_images[idx], pool_masks[idx]

    return SceneData(
        classes=classes,
        presence=scene_presence(pool_masks, len(classes)),
        load_pool=load_pool,
        eval_images=eval_images,
        eval_masks=eval_masks,
        identity=world.identity(support_pool=len(pool_images), eval=len(eval_images)),
        draws={
            "support_pool": _digest(pool_images, pool_masks),
            "eval": _digest(eval_images, eval_masks),
        },
    )


def _resized(split: SegmentationSplit, index: int, size: int, label_size: int):
    """One image and mask of ``split`` (mask values checked, naming the file) resized to
    squares: bilinear ``size`` for the image, nearest ``label_size`` for the mask."""
    from PIL import Image

    image, mask = split.load(index)
    im = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    lab = Image.fromarray(mask.astype(np.uint8), "L").resize(
        (label_size, label_size), Image.NEAREST
    )
    return np.asarray(im).transpose(2, 0, 1), np.asarray(lab)


def decode(
    split: SegmentationSplit,
    indices: Sequence[int],
    size: int,
    label_size: int,
    progress: Callable[..., Any] | None = None,
    desc: str = "decode",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, size, size) and masks (N, label_size, label_size), uint8."""
    images = np.zeros((len(indices), 3, size, size), dtype=np.uint8)
    masks = np.zeros((len(indices), label_size, label_size), dtype=np.uint8)
    rows: Any = enumerate(indices)
    if progress is not None:
        rows = progress(rows, desc=desc, total=len(indices))
    for row, i in rows:
        images[row], masks[row] = _resized(split, int(i), size, label_size)
    return torch.from_numpy(images), torch.from_numpy(masks)


def split_presence(split: SegmentationSplit, progress: Callable[..., Any] | None = None):
    """(N, classes) bool presence table of a split. COCO lists each image's classes in
    ``meta['image_classes']`` (background counted present in every image); other datasets
    have their masks decoded once (values checked, naming the file)."""
    n, c = len(split), split.num_classes
    presence = np.zeros((n, c), dtype=bool)
    listed = split.meta.get("image_classes")
    if listed is not None:
        for row, labels in enumerate(listed):
            presence[row, list(labels)] = True
        if split.classes and split.classes[0] == "background":
            presence[:, 0] = True
        return presence
    rows: Any = range(n)
    if progress is not None:
        rows = progress(rows, desc=f"classes of {split.name}/{split.split}", total=n)
    for row in rows:
        mask = np.asarray(split.mask_loader(split.masks[row]), dtype=np.int64)
        check_mask(mask, c, where=str(split.masks[row]))
        values = np.unique(mask)
        presence[row, values[values != IGNORE_INDEX]] = True
    return presence


def load_standard(
    config: dict[str, Any], registry: Registry, progress: Callable[..., Any] | None
) -> SceneData:
    """A real dataset: support pool from ``support_split``, evaluation on ``eval_split``."""
    data = config["data"]
    if not data.get("root"):
        raise ConfigError(
            f"set the {data['dataset']} folder: --set segmentation.data.root=PATH "
            "(see docs/datasets.md for the layout)"
        )
    loader = registry.get("datasets", data["dataset"]).load()
    support = loader(data["root"], data["support_split"])
    evaluation = loader(data["root"], data["eval_split"])
    if not isinstance(support, SegmentationSplit):
        raise ConfigError(f"dataset {data['dataset']!r} is not a segmentation dataset")
    if support.classes != evaluation.classes:
        raise ConfigError(
            f"{data['dataset']}: the {data['support_split']} and {data['eval_split']} splits "
            "list different classes"
        )
    if support.num_classes >= IGNORE_INDEX:
        raise ConfigError(f"{data['dataset']} has {support.num_classes} classes; at most 254 fit")
    size, label_size = config["image_size"], data["label_size"]
    key = cache_key("segmentation-presence", support.name, support.manifest_sha256)
    table, _ = cached_tensors(
        "segmentation-presence",
        key,
        lambda: {"presence": torch.from_numpy(split_presence(support, progress).astype(np.uint8))},
    )
    limit = data.get("eval_limit")
    eval_index = list(range(len(evaluation)))[: limit if limit else None]
    eval_images, eval_masks = decode(
        evaluation, eval_index, size, label_size, progress, f"decode {evaluation.name}"
    )
    notes = []
    if limit and limit < len(evaluation):
        notes.append(f"evaluated on the first {limit} of {len(evaluation)} images (eval_limit)")
    return SceneData(
        classes=list(support.classes),
        presence=table["presence"].numpy().astype(bool),
        load_pool=lambda index: decode(support, index, size, label_size),
        eval_images=eval_images,
        eval_masks=eval_masks,
        identity=DatasetIdentity(
            name=data["dataset"],
            manifest_sha256=cache_key(support.manifest_sha256, evaluation.manifest_sha256),
            sizes={"support_pool": len(support), "eval": len(eval_index)},
        ),
        draws={"support_pool": support.manifest_sha256, "eval": evaluation.manifest_sha256},
        notes=notes,
    )


# -- support draws ------------------------------------------------------------------------


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


# -- backbones and features --------------------------------------------------------------


def resample_backbone(
    backbone: Backbone, registry: Registry, kind: str, spec: dict[str, Any], size: int
) -> Backbone:
    """``backbone``'s weights in a copy built for ``size`` px inputs (absolute position
    embeddings resampled to the new token grid; CNNs just take the new size)."""
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


def _token_maps(backbone: Backbone, images: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    f = backbone.features(images, tokens=not layers, layers=layers)
    return f.tokens if not layers else torch.cat(f.layers, dim=1)


@torch.no_grad()
def token_features(
    backbone: Backbone,
    images: torch.Tensor,
    layers: Sequence[int],
    *,
    device: str,
    batch_size: int,
    progress: Callable[..., Any] | None = None,
    desc: str = "tokens",
) -> torch.Tensor:
    """Token maps (N, D, h, w) in float16 (the final tokens, or ``layers`` concatenated)."""
    backbone = backbone.to(device).eval()
    out: torch.Tensor | None = None
    starts: Any = range(0, images.shape[0], batch_size)
    if progress is not None:
        starts = progress(starts, desc=desc, total=-(-images.shape[0] // batch_size))
    for start in starts:
        chunk = _token_maps(backbone, images[start : start + batch_size].to(device), layers)
        if out is None:
            out = torch.empty((images.shape[0], *chunk.shape[1:]), dtype=torch.float16)
        out[start : start + chunk.shape[0]] = chunk.to("cpu", torch.float16)
    if out is None:
        raise ValueError("no images to compute token maps of")
    return out


# -- heads ------------------------------------------------------------------------------


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the scored pixels (0, not NaN, when a batch has none)."""
    target = masks.long()
    total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


class _HeadStep(nn.Module):
    """Step module: a head on cached token maps."""

    def __init__(self, head: SegmentationHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, tokens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(self.head(tokens.float(), size=masks.shape[-2:]), masks)


class Segmenter(nn.Module):
    """A backbone and a segmentation head on its final token map (adapted runs)."""

    def __init__(self, backbone: Backbone, head: SegmentationHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def logits(self, images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.head(_token_maps(self.backbone, images, ()), size=tuple(size))

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(self.logits(images, masks.shape[-2:]), masks)


def _seed(*parts: object) -> int:
    return int(rng(*parts).integers(2**31 - 1))


def new_head(in_dim: int, num_classes: int, seed: int) -> SegmentationHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SegmentationHead(in_dim, num_classes)


@torch.no_grad()
def confusions(
    predict_batch: Callable[[slice], list[torch.Tensor]],
    masks: torch.Tensor,
    num_classes: int,
    outputs: int,
    batch_size: int,
) -> torch.Tensor:
    """(outputs, C, C) confusion matrices, accumulated batch by batch; ``predict_batch``
    gives each output's logits for a slice of the evaluation set."""
    total = torch.zeros((outputs, num_classes, num_classes), dtype=torch.int64)
    for start in range(0, masks.shape[0], batch_size):
        part = slice(start, start + batch_size)
        target = masks[part]
        for i, logits in enumerate(predict_batch(part)):
            pred = logits.argmax(1).cpu()
            total[i] += confusion_matrix(pred, target, num_classes, IGNORE_INDEX)
    return total


# -- the protocol ---------------------------------------------------------------------------


def _metric_specs() -> tuple[MetricSpec, ...]:
    specs = [
        MetricSpec(
            "miou",
            True,
            "%",
            headline=True,
            description="mIoU of the first adapter (linear head), mean over the configured k; "
            "mean ± 95% CI over the support draws.",
        )
    ]
    specs += [
        MetricSpec(
            f"miou_{k}shot", True, "%", description=f"mIoU with {k} support image(s) per class."
        )
        for k in SHOTS
    ]
    specs += [
        MetricSpec(f"miou_{a}", True, "%", description=f"mIoU with the {a} adapter, mean over k.")
        for a in ADAPTERS
    ]
    specs += [
        MetricSpec(
            "absent_classes",
            False,
            None,
            description="Classes with zero union (IoU NaN, left out of the mean): the most in "
            "any (k, draw) of the first adapter.",
        ),
        MetricSpec(
            "train_seconds",
            False,
            "s",
            description="Wall-clock training time of the scored student (base-class stage).",
        ),
    ]
    return tuple(specs)


class Segmentation(Protocol):
    name = "segmentation"
    version = 1
    config_models = segmentation_config.MODELS
    description = "Few-shot semantic segmentation: a head on k images per class, mIoU."
    unsupported = BASE_UNSUPPORTED
    metrics = _metric_specs()

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        common: dict[str, Any] = {
            "base": default_base_config(suite, smoke),
            "shots": [1, 2, 5, 10],
            "draws": [0, 1, 2],
            "adapters": ["linear"],
            "head": {"steps": 200, "batch_size": 8, "lr": 1e-2, "weight_decay": 1e-4},
            "adapted": {
                "steps": 100,
                "batch_size": 8,
                "lr": {"finetune": 1e-4, "lora": 1e-3, "svf": 1e-3},
            },
            "multilayer": {"n": 4},
            "lora": {"r": 16, "alpha": 16, "dropout": 0.1, "targets": ["qkv"]},
            "svf": {"scope": "blocks"},
            "batch_size": 64,
            "cache_features": True,
        }
        if suite == "embedded":
            config = {
                **common,
                "image_size": 64,
                "data": {"pool": 300, "eval": 300, "domain": "base", "max_objects": 4},
            }
            if smoke:
                config["data"].update(pool=24, eval=12)
                config.update(shots=[1, 2], draws=[0, 1], batch_size=16)
                config["head"].update(steps=5)
                config["adapted"].update(steps=2, batch_size=4)
            return config
        config = {
            **common,
            "image_size": 1022,
            "data": {
                "dataset": "cityscapes",
                "root": None,
                "support_split": "train",
                "eval_split": "val",
                "label_size": 1022,
                "eval_limit": None,
            },
            "batch_size": 8,
            "cache_features": False,
        }
        config["head"].update(steps=1000, batch_size=4)
        config["adapted"].update(steps=500, batch_size=4)
        if smoke:
            config.update(shots=[1], draws=[0], image_size=56)
            config["data"].update(label_size=56, eval_limit=4)
            config["head"].update(steps=5)
            config["adapted"].update(steps=2)
        return config

    def supports(self, method: Component, registry: Registry | None = None) -> str | None:
        return super().supports(method, registry) or frozen_teacher_reason(method, registry)

    # -- one unit ------------------------------------------------------------------------
    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device = context.config, context.registry, context.device
        shots = [int(k) for k in config["shots"]]
        adapters = list(config["adapters"])
        self._check(shots, adapters, config)
        method: Method = context.method.load()

        started = time.perf_counter()
        data = (
            load_embedded(config)
            if context.suite == "embedded"
            else load_standard(config, registry, context.progress)
        )
        base_started = time.perf_counter()
        base = base_student(context, config["base"])
        base_elapsed = time.perf_counter() - base_started
        notes = list(base.notes)
        if method.recipe is not None and method.recipe.teacher_mode is None:
            notes.append(
                "this recipe uses no teacher: it is the from-scratch reference (random init, "
                "base-class labels only)"
            )
        role = "teacher" if method.subject == "teacher" else "student"
        kind = f"{role}s"
        spec = config["base"][role]
        size = int(config["image_size"])
        if method.recipe is None:  # as shipped: build at the size directly (timm resamples)
            subject = init_backbone(registry, kind, _with_size(spec, size))
        else:
            subject = resample_backbone(base.backbone, registry, kind, spec, size)
        subject = subject.eval()
        described = subject.to(device).describe()

        notes += data.notes
        draws = dict(data.draws)
        support: dict[tuple[int, int], SupportDraw] = {}
        for k in shots:
            for d in config["draws"]:
                s = draw_support(data.presence, k, int(d))
                support[(k, int(d))] = s
                draws[f"support/{k}shot/draw{d}"] = s.digest
                for cls, got in s.short.items():
                    notes.append(
                        f"{k}-shot draw {d}: class {data.classes[cls]!r} is shown by only "
                        f"{got} support image(s) (the pool has no more)"
                    )
        union = np.unique(np.concatenate([s.indices for s in support.values()]))
        support_images, support_masks = data.load_pool(union)
        row_of = {int(i): r for r, i in enumerate(union)}

        components = dict(base.components)
        results: dict[str, dict[int, list[torch.Tensor]]] = {}
        heads: dict[tuple[int, int], SegmentationHead] = {}
        head_seconds = 0.0
        for name in adapters:
            adapter = self._adapter(registry, name, config)
            components[f"adapter:{name}"] = ComponentRef(
                **registry.get("adapters", name).ref(), options=adapter.options()
            )
            t0 = time.perf_counter()
            if name in FROZEN:
                cms, trained = self._frozen(
                    context, subject, adapter, data, support, support_images, support_masks, row_of
                )
                if name == "linear":
                    heads = trained
            else:
                if not heads:
                    _, heads = self._frozen(
                        context,
                        subject,
                        self._adapter(registry, "linear", config),
                        data,
                        support,
                        support_images,
                        support_masks,
                        row_of,
                    )
                cms = self._adapted(
                    context, subject, adapter, name, data, support, support_images, support_masks,
                    row_of, heads,
                )  # fmt: skip
            head_seconds += time.perf_counter() - t0
            results[name] = cms

        metrics, statistics = self._score(results, shots, config, data)
        statistics.update(
            backbone=described,
            classes=data.classes,
            support={
                f"{k}shot": {
                    f"draw{d}": {
                        "images": [int(i) for i in s.indices],
                        "short": {data.classes[c]: g for c, g in s.short.items()},
                    }
                    for (kk, d), s in support.items()
                    if kk == k
                }
                for k in shots
            },
            head_seconds=round(head_seconds, 3),
        )
        notes.append(
            f"scored at {size} px input, token grid {described['grid_size'][0]}x"
            f"{described['grid_size'][1]}; last training step scored (no selection on the "
            "evaluation set)"
        )
        if base.train_seconds is None:
            metrics.append(
                self.metric("train_seconds")(None, reason="reference row: nothing is trained")
            )
        else:
            metrics.append(self.metric("train_seconds")(base.train_seconds))
        return UnitResult(
            metrics=metrics,
            dataset=data.identity,
            components=components,
            draws=draws,
            statistics=statistics,
            notes=notes,
            train_seconds=base.train_seconds,
            eval_seconds=time.perf_counter() - started - base_elapsed,
        )

    # -- pieces --------------------------------------------------------------------------
    def _check(self, shots: list[int], adapters: list[str], config: dict[str, Any]) -> None:
        where = "protocol 'segmentation'"
        bad = [k for k in shots if k not in SHOTS]
        if bad or not shots or len(set(shots)) != len(shots):
            raise ConfigError(f"{where}: shots {shots} must be distinct values from {list(SHOTS)}")
        unknown = [a for a in adapters if a not in ADAPTERS]
        if unknown or not adapters or len(set(adapters)) != len(adapters):
            raise ConfigError(
                f"{where}: adapters {adapters} must be distinct names from {list(ADAPTERS)}"
            )
        if not config["draws"]:
            raise ConfigError(f"{where}: draws needs at least one seed, e.g. [0, 1, 2]")

    def _adapter(self, registry: Registry, name: str, config: dict[str, Any]) -> Adapter:
        options = dict(config.get(name, {})) if name in ("multilayer", "lora", "svf") else {}
        return registry.get("adapters", name).load()(**options)

    def _frozen(
        self,
        context: UnitContext,
        subject: Backbone,
        adapter: Adapter,
        data: SceneData,
        support: dict[tuple[int, int], SupportDraw],
        support_images: torch.Tensor,
        support_masks: torch.Tensor,
        row_of: dict[int, int],
    ) -> tuple[dict[int, list[torch.Tensor]], dict[tuple[int, int], SegmentationHead]]:
        """Heads on cached token maps; returns confusions per k (one per draw) and heads."""
        config, device = context.config, context.device
        layers = tuple(adapter.layers)
        digest = tensor_digest(subject)

        def features(images: torch.Tensor, what: str) -> torch.Tensor:
            compute = lambda: {  # noqa: E731
                "tokens": token_features(
                    subject,
                    images,
                    layers,
                    device=device,
                    batch_size=config["batch_size"],
                    progress=context.progress,
                    desc=f"{adapter.name} tokens ({what})",
                )
            }
            if not config["cache_features"]:
                return compute()["tokens"]
            key = cache_key(
                "segmentation-tokens", digest, subject.preprocess.as_dict(), layers,
                tensor_digest({"images": images}),
            )  # fmt: skip
            return cached_tensors("segmentation-tokens", key, compute, context.cache_dir)[0][
                "tokens"
            ]

        support_tokens = features(support_images, "support")
        eval_tokens = features(data.eval_images, "eval")
        c = data.num_classes
        heads: dict[tuple[int, int], SegmentationHead] = {}
        for (k, d), s in support.items():
            rows = torch.as_tensor([row_of[int(i)] for i in s.indices])
            head = new_head(
                support_tokens.shape[1], c, _seed(context.seed, "segmentation/head", k, d)
            )
            head_cfg = config["head"]
            fit(
                _HeadStep(head),
                (support_tokens[rows], support_masks[rows]),
                TrainConfig(
                    epochs=1,
                    steps=head_cfg["steps"],
                    batch_size=head_cfg["batch_size"],
                    lr=head_cfg["lr"],
                    weight_decay=head_cfg["weight_decay"],
                    seed=_seed(context.seed, "segmentation/order", k, d),
                ),
                device=device,
            )
            heads[(k, d)] = head.eval()
        order = list(heads)
        size = tuple(data.eval_masks.shape[-2:])

        def predict_batch(part: slice) -> list[torch.Tensor]:
            x = eval_tokens[part].to(device).float()
            return [heads[key](x, size=size) for key in order]

        total = confusions(predict_batch, data.eval_masks, c, len(order), config["batch_size"])
        out: dict[int, list[torch.Tensor]] = {}
        for key, cm in zip(order, total):
            out.setdefault(key[0], []).append(cm)
        return out, heads

    def _adapted(
        self,
        context: UnitContext,
        subject: Backbone,
        adapter: Adapter,
        name: str,
        data: SceneData,
        support: dict[tuple[int, int], SupportDraw],
        support_images: torch.Tensor,
        support_masks: torch.Tensor,
        row_of: dict[int, int],
        heads: dict[tuple[int, int], SegmentationHead],
    ) -> dict[int, list[torch.Tensor]]:
        """Adapted backbone + head, starting from the linear head of the same (k, draw)."""
        config, device = context.config, context.device
        cfg = config["adapted"]
        out: dict[int, list[torch.Tensor]] = {}
        size = tuple(data.eval_masks.shape[-2:])
        for (k, d), s in support.items():
            backbone = copy.deepcopy(subject).cpu()
            adapter.apply(backbone)
            model = Segmenter(backbone, copy.deepcopy(heads[(k, d)]))
            model.head.requires_grad_(True)
            rows = torch.as_tensor([row_of[int(i)] for i in s.indices])
            fit(
                model,
                (support_images[rows], support_masks[rows]),
                TrainConfig(
                    epochs=1,
                    steps=cfg["steps"],
                    batch_size=cfg["batch_size"],
                    lr=cfg["lr"][name],
                    weight_decay=config["head"]["weight_decay"],
                    seed=_seed(context.seed, "segmentation/adapted", name, k, d),
                ),
                device=device,
                progress=context.progress,
                desc=f"{name} {k}-shot draw {d}",
            )
            model = model.to(device).eval()

            def predict_batch(part: slice, model: Segmenter = model) -> list[torch.Tensor]:
                return [model.logits(data.eval_images[part].to(device), size)]

            [cm] = confusions(
                predict_batch, data.eval_masks, data.num_classes, 1, config["batch_size"]
            )
            out.setdefault(k, []).append(cm)
        return out

    def _score(
        self,
        results: dict[str, dict[int, list[torch.Tensor]]],
        shots: list[int],
        config: dict[str, Any],
        data: SceneData,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Metrics from the confusion matrices, and the statistics to rescore them."""
        metrics: list[Any] = []
        statistics: dict[str, Any] = {
            "confusion": {},
            "miou_per_draw": {},
            "absent_per_draw": {},
            "draw_seeds": [int(d) for d in config["draws"]],
        }
        first = next(iter(results))
        for name, per_k in results.items():
            table = {k: [miou(cm) for cm in per_k[k]] for k in shots}
            statistics["confusion"][name] = {
                f"{k}shot": [cm.tolist() for cm in per_k[k]] for k in shots
            }
            statistics["miou_per_draw"][name] = {
                f"{k}shot": [_pct(r.mean) for r in table[k]] for k in shots
            }
            statistics["absent_per_draw"][name] = {
                f"{k}shot": [r.absent for r in table[k]] for k in shots
            }
            values = np.array([[100 * r.mean for r in table[k]] for k in shots])  # (k, draws)
            overall = self._mean_metric(f"miou_{name}", values.mean(0))
            metrics.append(overall)
            if name != first:
                continue
            metrics.append(self._mean_metric("miou", values.mean(0)))
            for row, k in enumerate(shots):
                metrics.append(self._mean_metric(f"miou_{k}shot", values[row]))
            absent = max(r.absent for k in shots for r in table[k])
            metrics.append(self.metric("absent_classes")(absent))
            largest = max(shots)
            per_class = _nanmean_rows(np.stack([r.per_class for r in table[largest]]))
            statistics["per_class_iou"] = {
                "adapter": name,
                "shots": largest,
                "iou": {c: _pct(v) for c, v in zip(data.classes, per_class)},
            }
        return metrics, statistics

    def _mean_metric(self, name: str, values: np.ndarray):
        spec = self.metric(name)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return spec(None, reason="no class has a non-zero union in any draw")
        mean, ci = mean_ci95(finite)
        return spec(mean, ci95=ci, n=int(finite.size))


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Column means over the finite entries; NaN where a column has none."""
    finite = np.isfinite(values)
    total = np.where(finite, values, 0).sum(0)
    count = finite.sum(0)
    out = np.full(values.shape[1], np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _pct(value: float) -> float | None:
    return None if not np.isfinite(value) else round(100 * float(value), 4)


def _with_size(spec: dict[str, Any], size: int) -> dict[str, Any]:
    return {**spec, "options": {**spec.get("options", {}), "img_size": size}}
