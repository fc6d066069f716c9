"""``oneclass`` (version 1): zero-shot one-class classification with confusers.

Only the target's label is known. An image is scored against the target's name and the
names of ``k`` visually confusing classes ("confusers", from a plugin source) in a teacher's
image–text space: ``s(x, c)`` is the cosine between the image embedding and the embedding of
the prompt "a photo of a {c}.". The decision is *positive iff s(x, target) beats the mean
of the confusers' scores* (the "average negative prototype"); ranking metrics use the same
margin ``s(x, target) - mean_k s(x, confuser_k)`` (``score: target`` ranks by
``s(x, target)`` alone).

Tasks: for every target class and taxonomy distance ``d``, positives are images of the
target and as many negatives are drawn from the images of classes whose lowest common
ancestor with the target is *exactly* at rank ``d`` (``uniform``: any other class). A target
with no class at distance ``d`` is skipped and counted. Metrics per task: AUROC, FPR at 95%
TPR, macro-F1 of the decision; mean over tasks ± 95% CI, per distance and overall.

The *student* is scored: its image embedding (aligned to the teacher's joint space by the
method) against the teacher's text embeddings. Recipes train the student (from the pretrained
student, or from random weights for ``student_init="scratch"``) on the base classes with a
text-space head (see :class:`TextSpaceStudent`); reference rows
are the teacher itself and the pretrained student with a closed-form linear map into the
joint space. Embeddings of the evaluation images and label texts are computed once per
model and cached; tasks are index arithmetic over the cached matrices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdbench import subjects
from kdbench.cache import (
    cache_key,
    cached_tensors,
    read_entry,
    tensor_digest,
    write_entry,
)
from kdbench.confusers import Candidates, LabelSet, MissingTargetError, check_answer
from kdbench.distillation import (
    Needs,
    init_backbone,
    teacher_tensors,
)
from kdbench.methods import Method
from kdbench.metrics import mean_ci95, proportion_ci95
from kdbench.metrics.ranking import auroc_rows, binary_macro_f1_rows, fpr_at_tpr_rows
from kdbench.models.backbone import Backbone, Features
from kdbench.models.image_text import ImageTextModel
from kdbench.protocols.base import ConfigError, MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.protocols.base_training import BASE_UNSUPPORTED, frozen_teacher_reason
from kdbench.protocols.configs import oneclass as oneclass_config
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef, DatasetIdentity
from kdbench.seeding import rng
from kdbench.student_stage import CacheSlot, StageData, train_student
from kdbench.train import TrainConfig, predict

SHAPES_DISTANCES = ("root", "tone", "colour", "shape")
INAT_DISTANCES = ("kingdom", "phylum", "class", "order", "family", "genus")
UNIFORM = "uniform"
ROOT = "root"
DISTANCES = (*SHAPES_DISTANCES, *INAT_DISTANCES, UNIFORM)
"""Every distance a metric is declared for: the rank of the lowest common ancestor of target
and negatives (``root``: none below the root; ``uniform``: any other class)."""
SCORES = ("margin", "target")


def _per_distance_specs() -> tuple[MetricSpec, ...]:
    specs = []
    for d in DISTANCES:
        where = "any other class" if d == UNIFORM else f"lowest common ancestor at {d}"
        specs += [
            MetricSpec(f"auroc_{d}", True, None, description=f"Mean AUROC, negatives: {where}."),
            MetricSpec(f"fpr95_{d}", False, None, description=f"Mean FPR at 95% TPR ({where})."),
            MetricSpec(f"f1_{d}", True, None, description=f"Mean macro-F1 ({where})."),
        ]
    return tuple(specs)


# -- data -----------------------------------------------------------------------------------


@dataclass
class Pool:
    """The evaluation images and classes: targets and negatives both come from here."""

    names: list[str]
    """Pool label -> class name."""
    image_labels: np.ndarray
    """Per image, its pool label."""
    levels: tuple[str, ...] | None
    codes: np.ndarray | None
    """(classes, levels) integer id of each class's ancestor at each rank, or None."""
    vocabulary: LabelSet
    """Every label name confusers may come from (all classes of the dataset)."""
    text_index: np.ndarray
    """Pool label -> row of ``vocabulary.names``."""
    identity: DatasetIdentity
    digest: str
    images: torch.Tensor | None = None
    """uint8 images in memory (embedded suite), or None: decoded from ``split`` on demand."""
    split: Any = None
    image_size: int | None = None
    resize: int | None = None

    @property
    def num_images(self) -> int:
        return int(self.image_labels.shape[0])


def _codes(lineages: Sequence[Sequence[str]]) -> np.ndarray:
    """Integer ids per (class, rank) of each class's ancestor (by lineage prefix)."""
    depth = len(lineages[0]) if lineages else 0
    codes = np.zeros((len(lineages), depth), dtype=np.int64)
    for level in range(depth):
        ids: dict[tuple[str, ...], int] = {}
        for c, lineage in enumerate(lineages):
            codes[c, level] = ids.setdefault(tuple(lineage[: level + 1]), len(ids))
    return codes


def _rendered(
    world: Any,
    class_ids: np.ndarray,
    per_class: int,
    stream: str,
    domain: str,
    cache_root: Path | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` Shapes images of every class (labels index ``class_ids``), seed 0,
    rendered once and cached (the world is versioned, so its images are too)."""
    key = cache_key("oneclass-render", world.version, class_ids.tolist(), per_class, stream, domain)

    def render() -> dict[str, torch.Tensor]:
        labels = np.repeat(np.arange(len(class_ids)), per_class)
        labels = labels[rng(0, "oneclass-render", stream).permutation(len(labels))]
        pixels = world.render(class_ids[labels], 0, stream, domain)
        return {"images": torch.from_numpy(pixels), "labels": torch.from_numpy(labels)}

    out, _ = cached_tensors("oneclass-render", key, render, cache_root)
    return out["images"], out["labels"]


def load_pool(
    config: dict[str, Any],
    suite: str,
    registry: Registry,
    progress: Callable[..., Any],
    cache_root: Path | None = None,
) -> Pool:
    """The evaluation pool of ``suite``: Shapes images rendered (and cached) in memory, or a
    dataset split on disk."""
    data = config["data"]
    if suite == "embedded":
        from kdbench.world import ShapesWorld
        from kdbench.world.taxonomy import LEVELS

        world = ShapesWorld()
        taxonomy = world.taxonomy
        class_ids = np.concatenate([world.classes(s) for s in data["splits"]])
        images, labels_t = _rendered(
            world, class_ids, data["per_class"], "oneclass/eval", data["domain"], cache_root
        )
        labels = labels_t.numpy()
        every = [c.name for c in taxonomy.classes]
        vocabulary = LabelSet(
            "shapes",
            tuple(every),
            tuple(c.lineage for c in taxonomy.classes),
            LEVELS,
            world.version,
        )
        lineages = [taxonomy.classes[i].lineage for i in class_ids]
        digest = cache_key(world.version, class_ids.tolist(), data["per_class"], data["domain"])
        return Pool(
            names=[every[i] for i in class_ids],
            image_labels=labels,
            levels=LEVELS,
            codes=_codes(lineages),
            vocabulary=vocabulary,
            text_index=np.asarray(class_ids, dtype=np.int64),
            identity=world.identity(eval=len(labels)),
            digest=digest,
            images=images,
        )
    if not data.get("root"):
        raise ConfigError(
            f"set the {data['dataset']} folder: --set oneclass.data.root=PATH "
            "(layouts: docs/datasets.md)"
        )
    split = registry.get("datasets", data["dataset"]).load()(data["root"], data["split"])
    names = list(split.classes)
    unique = list(dict.fromkeys(names))
    position = {n: i for i, n in enumerate(unique)}
    lineages = split.taxonomy
    levels = tuple(split.taxonomy_levels) if split.taxonomy_levels else None
    vocabulary = LabelSet(
        data["dataset"],
        tuple(unique),
        tuple(tuple(lineages[names.index(n)]) for n in unique) if lineages else None,
        levels,
        None,
    )
    return Pool(
        names=names,
        image_labels=np.asarray(split.labels, dtype=np.int64),
        levels=levels,
        codes=_codes(lineages) if lineages else None,
        vocabulary=vocabulary,
        text_index=np.asarray([position[n] for n in names], dtype=np.int64),
        identity=DatasetIdentity(
            name=data["dataset"],
            manifest_sha256=split.manifest_sha256,
            sizes={data["split"]: len(split)},
        ),
        digest=cache_key(split.manifest_sha256, data["image_size"], data["resize"]),
        split=split,
        image_size=data["image_size"],
        resize=data["resize"],
    )


def embed_pool(
    encode: Callable[[torch.Tensor], torch.Tensor],
    pool: Pool,
    *,
    device: str,
    batch_size: int = 256,
    progress: Callable[..., Any] | None = None,
) -> torch.Tensor:
    """``encode`` applied to every pool image; images on disk are decoded batch by batch,
    so a 100,000-image split never sits in memory."""
    if pool.images is not None:
        return predict(encode, pool.images, batch_size=batch_size, device=device, progress=progress)
    chunks = []
    starts: Any = range(0, pool.num_images, batch_size)
    if progress is not None:
        starts = progress(starts, desc="embed images", total=-(-pool.num_images // batch_size))
    for start in starts:
        stop = min(start + batch_size, pool.num_images)
        batch = np.stack(
            [pool.split.load(i, pool.image_size, pool.resize) for i in range(start, stop)]
        )
        images = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
        chunks.append(predict(encode, images, batch_size=batch_size, device=device))
    return torch.cat(chunks)


# -- tasks ----------------------------------------------------------------------------------


@dataclass
class Tasks:
    """Drawn tasks: per task its target (pool label), distance (index into ``distances``)
    and image indices (positives then negatives, ``-1`` padding)."""

    distances: list[str]
    target: np.ndarray
    distance: np.ndarray
    index: np.ndarray
    labels: np.ndarray
    skipped: dict[str, int]
    short: int = 0

    @property
    def count(self) -> int:
        return int(self.target.shape[0])

    def digest(self) -> str:
        return cache_key(
            self.distances,
            tensor_digest(
                {
                    "target": torch.from_numpy(self.target),
                    "distance": torch.from_numpy(self.distance),
                    "index": torch.from_numpy(self.index),
                }
            ),
        )


def check_distances(distances: Sequence[str], levels: Sequence[str] | None) -> None:
    """Refuse distances the dataset's taxonomy does not have, listing those it has."""
    allowed = [UNIFORM] + ([ROOT, *levels[:-1]] if levels else [])
    bad = [d for d in distances if d not in allowed]
    if bad or not distances:
        raise ConfigError(
            f"oneclass.tasks.distances {list(distances)}: "
            f"{'unknown ' + ', '.join(map(repr, bad)) if bad else 'none given'}; this dataset "
            f"has {', '.join(allowed)} (the rank of the lowest common ancestor of target and "
            "negatives; the class's own rank is not a distance)"
        )


def sample_tasks(
    pool: Pool,
    targets: np.ndarray,
    distances: Sequence[str],
    positives: int | None,
    per_target: int,
    seed: int,
) -> Tasks:
    """Draw ``per_target`` tasks for every target and distance.

    Each task takes ``n = min(positives, images of the target, images at the distance)``
    positives (``positives=None``: every image of the target) and ``n`` negatives, both
    without replacement, negatives uniform over the images of the classes at that distance.
    Every task has its own random stream (``seed``, target name, distance, repeat), so
    adding targets or distances never changes the other tasks.
    """
    levels = pool.levels or ()
    n_classes = len(pool.names)
    order = np.argsort(pool.image_labels, kind="stable")
    counts = np.bincount(pool.image_labels, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    skipped = {d: 0 for d in distances}
    short = 0
    cache: dict[tuple[Any, ...], np.ndarray] = {}
    codes = pool.codes
    for di, distance in enumerate(distances):
        depth = None if distance in (UNIFORM, ROOT) else list(levels).index(distance)
        for t in targets.tolist():
            # classes whose lowest common ancestor with t is exactly at `distance`; the
            # answer depends on t only through two ancestors, so it is shared and cached
            if distance == UNIFORM:
                negative = np.delete(np.arange(n_classes), t)
            elif distance == ROOT:
                key: tuple[Any, ...] = (distance, codes[t, 0])
                if key not in cache:
                    cache[key] = np.flatnonzero(codes[:, 0] != codes[t, 0])
                negative = cache[key]
            else:
                key = (distance, codes[t, depth], codes[t, depth + 1])
                if key not in cache:
                    same = codes[:, depth] == codes[t, depth]
                    cache[key] = np.flatnonzero(same & (codes[:, depth + 1] != codes[t, depth + 1]))
                negative = cache[key]
            negative = negative[counts[negative] > 0]
            if not len(negative) or counts[t] == 0:
                skipped[distance] += 1
                continue
            neg_counts = counts[negative]
            total = int(neg_counts.sum())
            want = counts[t] if positives is None else positives
            n = int(min(want, counts[t], total))
            short += per_target * int(n < want)
            bounds = np.cumsum(neg_counts)
            for repeat in range(per_target):
                g = rng(seed, "oneclass-tasks", pool.names[t], distance, repeat)
                pos = order[starts[t] + g.choice(counts[t], size=n, replace=False)]
                flat = g.choice(total, size=n, replace=False)
                which = np.searchsorted(bounds, flat, side="right")
                offset = flat - (bounds[which] - neg_counts[which])
                neg = order[starts[negative[which]] + offset]
                rows.append((t, di, pos, neg))
    width = 2 * max((len(p) for _, _, p, _ in rows), default=0)
    index = np.full((len(rows), width), -1, dtype=np.int64)
    labels = np.full((len(rows), width), -1, dtype=np.int64)
    for r, (_, _, pos, neg) in enumerate(rows):
        index[r, : len(pos)], labels[r, : len(pos)] = pos, 1
        index[r, len(pos) : 2 * len(pos)], labels[r, len(pos) : 2 * len(pos)] = neg, 0
    return Tasks(
        distances=list(distances),
        target=np.asarray([t for t, _, _, _ in rows], dtype=np.int64),
        distance=np.asarray([d for _, d, _, _ in rows], dtype=np.int64),
        index=index,
        labels=labels,
        skipped=skipped,
        short=int(short),
    )


def choose_targets(pool: Pool, max_targets: int | None, seed: int) -> np.ndarray:
    """Pool labels to use as targets: every class with images, or a uniform random subset."""
    present = np.flatnonzero(np.bincount(pool.image_labels, minlength=len(pool.names)) > 0)
    if max_targets is None or max_targets >= len(present):
        return present
    pick = rng(seed, "oneclass-targets").choice(len(present), size=max_targets, replace=False)
    return present[np.sort(pick)]


# -- confusers ------------------------------------------------------------------------------


def draw_confusers(
    source: Any, source_name: str, pool: Pool, targets: np.ndarray, k: int, seed: int
) -> np.ndarray:
    """(len(targets), k) rows of ``pool.vocabulary`` names: each target's confusers, ``-1``
    padded when a source gives fewer than ``k``. Targets the source has no answer for are
    reported together."""
    names = pool.vocabulary.names
    index = {n: i for i, n in enumerate(names)}
    out = np.full((len(targets), k), -1, dtype=np.int64)
    missing = []
    for row, t in enumerate(targets.tolist()):
        target = names[pool.text_index[t]]
        candidates = Candidates(names, target, index)
        try:
            answer = source.confusers(target, candidates, k, seed)
        except MissingTargetError:
            missing.append(target)
            continue
        chosen = check_answer(source_name, target, answer, candidates, k)
        out[row, : len(chosen)] = [index[n] for n in chosen]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise MissingTargetError(
            f"confuser source {source_name!r} has no confusers for {len(missing)} target(s): "
            f"{shown}{more}"
        )
    return out


# -- scoring --------------------------------------------------------------------------------


@dataclass
class TaskScores:
    auroc: np.ndarray
    fpr95: np.ndarray
    f1: np.ndarray


def score_tasks(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    pool: Pool,
    targets: np.ndarray,
    confusers: np.ndarray,
    tasks: Tasks,
    score: str = "margin",
    chunk: int = 8192,
) -> TaskScores:
    """Per-task AUROC, FPR@95%TPR and macro-F1, for all tasks as array operations.

    The margin ``x·t - mean_k x·c_k`` equals ``x·(t - mean_k c_k)`` for one image ``x``, so
    each target gets one direction ``w`` and a task's scores are a gather and a dot product.
    """
    if score not in SCORES:
        raise ConfigError(f"oneclass.score must be one of {', '.join(SCORES)}, not {score!r}")
    text = F.normalize(text_embeddings.double(), dim=-1)
    images = F.normalize(image_embeddings.double(), dim=-1)
    target_text = text[torch.from_numpy(pool.text_index[targets])]
    valid = torch.from_numpy(confusers >= 0)
    conf = text[torch.from_numpy(confusers.clip(min=0))] * valid.unsqueeze(-1)
    prototype = conf.sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
    margin_w = target_text - prototype
    row_of = {int(t): r for r, t in enumerate(targets.tolist())}
    task_row = torch.as_tensor([row_of[int(t)] for t in tasks.target], dtype=torch.long)
    index = torch.from_numpy(tasks.index)
    margins, ranked = [], []
    for start in range(0, tasks.count, chunk):
        rows = task_row[start : start + chunk]
        x = images[index[start : start + chunk].clamp(min=0)]  # (chunk, width, D)
        margins.append(torch.einsum("twd,td->tw", x, margin_w[rows]))
        if score == "target":
            ranked.append(torch.einsum("twd,td->tw", x, target_text[rows]))
    margin = torch.cat(margins).numpy() if margins else np.zeros(tasks.index.shape)
    ranking = torch.cat(ranked).numpy() if ranked else margin
    labels = tasks.labels
    if not tasks.count:
        empty = np.zeros(0)
        return TaskScores(empty, empty, empty)
    return TaskScores(
        auroc=auroc_rows(ranking, labels),
        fpr95=fpr_at_tpr_rows(ranking, labels, 0.95),
        f1=binary_macro_f1_rows(margin > 0, labels),
    )


# -- students -------------------------------------------------------------------------------


class TextSpaceStudent(nn.Module):
    """A student backbone with a linear projection into the teacher's joint space; its
    logits are scaled cosines to the teacher's (frozen) text embeddings of the base-class
    names, CLIP-style. ``embed`` gives the joint-space embedding the protocol scores."""

    def __init__(
        self, backbone: Backbone, joint_dim: int, class_text: torch.Tensor, scale: float
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.embed_dim, joint_dim)
        self.register_buffer("class_text", F.normalize(class_text.float(), dim=-1), False)
        self.scale = float(scale)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.backbone(images)), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * self.embed(images) @ self.class_text.T

    def features(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        out = self.backbone.features(images, tokens=tokens, layers=layers)
        out.logits = self.scale * F.normalize(self.proj(out.pooled), dim=-1) @ self.class_text.T
        return out


class TextSpaceTeacher:
    """The teacher's outputs for a recipe: ``pooled`` its joint image embedding, ``logits``
    its scaled image–text cosines to the base-class names (what it predicts zero-shot)."""

    def __init__(self, teacher: ImageTextModel, class_text: torch.Tensor) -> None:
        self.teacher = teacher
        self.class_text = F.normalize(class_text.float(), dim=-1)

    def __call__(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        out = self.teacher.features(images, tokens=tokens, layers=layers)
        text = self.class_text.to(out.pooled.device)
        out.logits = self.teacher.logit_scale * F.normalize(out.pooled, dim=-1) @ text.T
        return out


def fit_linear_map(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, ...]:
    """Closed-form ridge regression ``y ≈ x W + b`` (``ridge`` relative to the mean
    eigenvalue of the centred Gram matrix): weight (d, D) and bias (D,)."""
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    lam = ridge * float(torch.trace(gram)) / gram.shape[0]
    weight = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc)
    return weight.float(), (my - mx @ weight).float()


@dataclass
class BaseData:
    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    digest: str
    sizes: dict[str, int] = field(default_factory=dict)


def load_base_data(
    stage: dict[str, Any],
    suite: str,
    registry: Registry,
    progress: Callable[..., Any],
    cache_root: Path | None = None,
) -> BaseData:
    """Labelled base-class images the student stage trains on (the same for every seed)."""
    if suite == "embedded":
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        class_ids = world.classes("base")
        per_class = stage["train_per_class"]
        images, labels = _rendered(world, class_ids, per_class, "oneclass/base", "base", cache_root)
        digest = cache_key(world.version, class_ids.tolist(), per_class, "oneclass/base")
        return BaseData(images, labels, world.names(class_ids), digest, {"base": len(labels)})
    if not stage.get("root"):
        raise ConfigError(
            "the student stage needs labelled base images: --set "
            "oneclass.student_stage.root=PATH (an image folder, root/<split>/<class>/*)"
        )
    split = registry.get("datasets", stage["dataset"]).load()(stage["root"], stage["split"])
    names = list(split.classes)
    if stage.get("names_file"):
        from kdbench.data.layout import read_mapping

        mapping = read_mapping(
            Path(stage["names_file"]),
            ("folder", "names"),
            "a class-name file: '<folder> <name>[, <other names>]' per line",
        )
        names = [mapping.get(n, n).split(",")[0].strip() for n in names]
    keep = _first_per_class(np.asarray(split.labels), stage["max_per_class"])
    indices: Any = keep.tolist()
    if progress is not None:
        indices = progress(indices, desc="decode base images", total=len(keep))
    pixels = np.stack([split.load(i, stage["image_size"], stage["resize"]) for i in indices])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.asarray(split.labels)[keep].astype(np.int64))
    digest = cache_key(split.manifest_sha256, keep.tolist(), stage["image_size"], stage["resize"])
    return BaseData(images, labels, names, digest, {"base": len(keep)})


def _first_per_class(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` images of every class, in the split's order."""
    if limit is None:
        return np.arange(len(labels))
    seen = np.zeros(labels.max() + 1 if len(labels) else 0, dtype=np.int64)
    keep = []
    for i, y in enumerate(labels.tolist()):
        if seen[y] < limit:
            seen[y] += 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


@dataclass
class Subject:
    """What a unit scores: a function from images to joint-space embeddings."""

    encode: Callable[[torch.Tensor], torch.Tensor]
    digest: str
    components: dict[str, ComponentRef]
    notes: list[str] = field(default_factory=list)
    train_seconds: float | None = None
    base_digest: str | None = None


# -- the protocol ---------------------------------------------------------------------------


class OneClass(Protocol):
    name = "oneclass"
    version = 1
    config_models = oneclass_config.MODELS
    description = "Zero-shot one-class classification with confusers, per taxonomy distance."
    unsupported: ClassVar[dict[subjects.Subject, str]] = {
        **BASE_UNSUPPORTED,
        subjects.Subject.SCRATCH: (
            "oneclass runs no from-scratch reference row ({method!r}): its student stage "
            "adapts the pretrained student to the teacher's text space"
        ),
    }
    teacher_space = "joint"
    metrics = (
        MetricSpec(
            "auroc",
            True,
            None,
            headline=True,
            description="Mean AUROC over all tasks (every distance).",
        ),
        MetricSpec("fpr95", False, None, description="Mean FPR at 95% TPR over all tasks."),
        MetricSpec(
            "f1",
            True,
            None,
            description="Mean macro-F1 of 'target beats the mean confuser score'.",
        ),
        MetricSpec(
            "zero_shot_top1",
            True,
            "%",
            description="Zero-shot top-1 over the pool's class names (all pool images).",
        ),
        *_per_distance_specs(),
    )

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        if suite == "embedded":
            config: dict[str, Any] = {
                "teacher": {"name": "shapes-clip", "options": {}},
                "student": {"name": "shapes-student", "options": {}},
                "prompt": "a photo of a {}.",
                "data": {"splits": ["novel", "downstream"], "per_class": 40, "domain": "base"},
                "tasks": {
                    "distances": list(SHAPES_DISTANCES),
                    "positives": 20,
                    "per_target": 1,
                    "max_targets": None,
                },
                "confusers": {"source": "frozen", "k": 10, "options": {}},
                "score": "margin",
                "zero_shot_top1": True,
                "student_stage": {
                    "train_per_class": 100,
                    "epochs": 2,
                    "batch_size": 128,
                    "lr": 1e-3,
                    "ridge": 1e-3,
                },
            }
            if smoke:
                config["data"].update(per_class=4)
                config["tasks"].update(positives=3, max_targets=12)
                config["student_stage"].update(train_per_class=2, epochs=1, batch_size=64)
            return config
        return {
            "teacher": {
                "name": "open_clip:ViT-B-16-quickgelu",
                "options": {"pretrained": "openai"},
            },
            "student": {"name": "timm:vit_small_patch16_224", "options": {"img_size": 224}},
            "prompt": "a photo of a {}.",
            "data": {
                "dataset": "inat2021",
                "root": None,
                "split": "val",
                "image_size": 224,
                "resize": 224,
            },
            "tasks": {
                "distances": None,
                "positives": None,
                "per_target": 1,
                "max_targets": 20 if smoke else None,
            },
            "confusers": {"source": "taxonomy", "k": 10, "options": {}},
            "score": "margin",
            "zero_shot_top1": False,
            "student_stage": {
                "dataset": "imagefolder",
                "root": None,
                "split": "train",
                "names_file": None,
                "max_per_class": 4 if smoke else 50,
                "image_size": 224,
                "resize": 224,
                "epochs": 1 if smoke else 30,
                "batch_size": 128,
                "lr": 5e-4,
                "ridge": 1e-3,
            },
        }

    def supports(self, method: Component, registry: Registry | None = None) -> str | None:
        return super().supports(method, registry) or frozen_teacher_reason(method, registry)

    # -- one unit ------------------------------------------------------------------------
    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device, seed = (
            context.config,
            context.registry,
            context.device,
            context.seed,
        )
        pool = load_pool(config, context.suite, registry, context.progress, context.cache_dir)
        task_config = config["tasks"]
        distances = task_config["distances"]
        if distances is None:  # every rank of the taxonomy above the class, or uniform
            distances = list(pool.levels[:-1]) if pool.levels else [UNIFORM]
        check_distances(distances, pool.levels)
        # targets and their confusers (a bad confuser file fails here, before any model work)
        targets = choose_targets(pool, task_config["max_targets"], seed)
        source_cfg = config["confusers"]
        source_c = registry.get("confusers", source_cfg["source"])
        source = source_c.load()(pool.vocabulary, **source_cfg["options"])
        confusers = draw_confusers(
            source, source_cfg["source"], pool, targets, int(source_cfg["k"]), seed
        )
        confuser_ref = ComponentRef(
            **source_c.ref(),
            options={
                **source_cfg["options"],
                "k": source_cfg["k"],
                "version": str(getattr(source, "version", "")),
            },
        )
        teacher_c = registry.get("teachers", config["teacher"]["name"])
        teacher: ImageTextModel = teacher_c.load()(**config["teacher"]["options"])
        if not isinstance(teacher, ImageTextModel):
            raise ConfigError(
                f"teacher {config['teacher']['name']!r} is not an image–text model; oneclass "
                "needs one with a text tower (e.g. shapes-clip, open_clip:ViT-B-16-quickgelu)"
            )
        teacher = teacher.to(device).eval()
        components = {
            "teacher": ComponentRef(**teacher_c.ref(), options=config["teacher"]["options"]),
            "student": ComponentRef(
                **registry.get("students", config["student"]["name"]).ref(),
                options=config["student"]["options"],
            ),
            "confusers": confuser_ref,
        }

        # label texts, once per teacher text tower, prompt and vocabulary
        prompt = config["prompt"]
        texts = [prompt.format(n) for n in pool.vocabulary.names]
        text_key = cache_key("oneclass-text", teacher.text_digest(), texts)
        text = cached_tensors(
            "oneclass-text",
            text_key,
            lambda: {"text": teacher.encode_text(texts).cpu()},
            context.cache_dir,
        )[0]["text"]

        # the subject's image embeddings of the pool, once per model
        subject = self._subject(context, teacher, text, pool, components)
        components.update(subject.components)
        eval_started = time.perf_counter()
        image_key = cache_key("oneclass-images", subject.digest, pool.digest)
        embeddings = cached_tensors(
            "oneclass-images",
            image_key,
            lambda: {
                "x": embed_pool(
                    subject.encode, pool, device=device, progress=context.progress
                ).cpu()
            },
            context.cache_dir,
        )[0]["x"]

        # tasks
        tasks_key = cache_key(
            "oneclass-tasks",
            self.version,
            seed,
            pool.digest,
            targets.tolist(),
            distances,
            task_config["positives"],
            task_config["per_target"],
        )
        tasks = self._tasks(context, tasks_key, pool, targets, distances, task_config)
        scores = score_tasks(
            embeddings, text, pool, targets, confusers, tasks, score=config["score"]
        )

        metrics, statistics, notes = self._aggregate(scores, tasks)
        notes = subject.notes + notes
        if config["zero_shot_top1"]:
            correct = _zero_shot_correct(embeddings, text, pool)
            acc, ci = proportion_ci95(correct, pool.num_images)
            metrics.append(self.metric("zero_shot_top1")(acc, ci95=ci, n=pool.num_images))
        vocab = pool.vocabulary.names
        if len(targets) <= 2000:  # small enough to keep in the record
            statistics["confusers"] = {
                pool.names[t]: [vocab[c] for c in row if c >= 0]
                for t, row in zip(targets.tolist(), confusers.tolist())
            }
        statistics["targets"] = len(targets)
        statistics["score"] = config["score"]
        draws = {
            "tasks": tasks.digest(),
            "confusers": cache_key(confusers.tolist()),
            "pool": pool.digest,
        }
        if subject.base_digest:
            draws["base"] = subject.base_digest
        return UnitResult(
            metrics=metrics,
            dataset=pool.identity,
            components=components,
            draws=draws,
            statistics=statistics,
            notes=notes,
            train_seconds=subject.train_seconds,
            eval_seconds=time.perf_counter() - eval_started,
        )

    def _tasks(
        self,
        context: UnitContext,
        key: str,
        pool: Pool,
        targets: np.ndarray,
        distances: list[str],
        task_config: dict[str, Any],
    ) -> Tasks:
        """Draw the tasks, or load them from the cache: every method of a seed gets the
        same tasks, saved like few-shot episodes."""
        folder = context.cache_dir / "oneclass-tasks"
        entry = read_entry(folder, key)
        if entry is None:
            drawn = sample_tasks(
                pool,
                targets,
                distances,
                task_config["positives"],
                task_config["per_target"],
                context.seed,
            )
            saved = {
                "target": torch.from_numpy(drawn.target),
                "distance": torch.from_numpy(drawn.distance),
                "index": torch.from_numpy(drawn.index),
                "labels": torch.from_numpy(drawn.labels),
            }
            info = {"skipped": drawn.skipped, "short": drawn.short}
            write_entry(folder, key, saved, info)
        else:
            saved, info = entry
        return Tasks(
            distances=list(distances),
            target=saved["target"].numpy(),
            distance=saved["distance"].numpy(),
            index=saved["index"].numpy(),
            labels=saved["labels"].numpy(),
            skipped={d: int(info["skipped"][d]) for d in distances},
            short=int(info["short"]),
        )

    def _aggregate(
        self, scores: TaskScores, tasks: Tasks
    ) -> tuple[list[Any], dict[str, Any], list[str]]:
        """Metrics overall and per distance, the record's statistics, and notes."""
        metrics: list[Any] = []
        notes: list[str] = []
        per_distance: dict[str, Any] = {}
        names = {"auroc": scores.auroc, "fpr95": scores.fpr95, "f1": scores.f1}
        for name, values in names.items():
            if len(values):
                mean, ci = mean_ci95(values)
                metrics.append(self.metric(name)(mean, ci95=ci, n=len(values)))
            else:
                metrics.append(self.metric(name)(None, reason="no task could be drawn"))
        for di, distance in enumerate(tasks.distances):
            mask = tasks.distance == di
            skipped = tasks.skipped[distance]
            for name, values in names.items():
                spec = self.metric(f"{name}_{distance}")
                chosen = values[mask]
                if len(chosen):
                    mean, ci = mean_ci95(chosen)
                    metrics.append(spec(mean, ci95=ci, n=len(chosen)))
                else:
                    metrics.append(
                        spec(None, reason=f"no target has a class at distance {distance!r}")
                    )
            per_distance[distance] = {
                "tasks": int(mask.sum()),
                "skipped_targets": skipped,
            }
            if skipped:
                notes.append(
                    f"{skipped} target(s) have no class at distance {distance!r} in the pool "
                    "and were skipped there"
                )
        if tasks.short:
            notes.append(
                f"{tasks.short} task(s) have fewer positives than configured (too few images "
                "of the target or at the distance), balanced 1:1 all the same"
            )
        statistics = {
            "distances": per_distance,
            "skipped_targets": {d: tasks.skipped[d] for d in tasks.distances},
            "per_task": {
                "target": tasks.target.tolist(),
                "distance": [tasks.distances[d] for d in tasks.distance.tolist()],
                "positives": (tasks.labels == 1).sum(1).tolist(),
                "auroc": np.round(scores.auroc, 6).tolist(),
                "fpr95": np.round(scores.fpr95, 6).tolist(),
                "f1": np.round(scores.f1, 6).tolist(),
            },
        }
        return metrics, statistics, notes

    # -- subjects ------------------------------------------------------------------------
    def _subject(
        self,
        context: UnitContext,
        teacher: ImageTextModel,
        text: torch.Tensor,
        pool: Pool,
        components: dict[str, ComponentRef],
    ) -> Subject:
        method: Method = context.method.load()
        kind = subjects.subject_of(method)
        if kind == subjects.Subject.TEACHER:
            return Subject(
                encode=teacher.encode_image,
                digest=teacher.image_digest(),
                components={"subject": components["teacher"]},
                notes=["reference row: the teacher's own image–text embeddings"],
            )
        stage = context.config["student_stage"]
        data = load_base_data(
            stage, context.suite, context.registry, context.progress, context.cache_dir
        )
        base_text = teacher.encode_text([context.config["prompt"].format(n) for n in data.names])
        if kind == subjects.Subject.STUDENT:
            return self._reference_student(context, data, base_text, components)
        return self._trained_student(context, method, teacher, data, base_text, components)

    def _reference_student(
        self,
        context: UnitContext,
        data: BaseData,
        base_text: torch.Tensor,
        components: dict[str, ComponentRef],
    ) -> Subject:
        """The pretrained student and a ridge map from its embedding to the text embedding
        of each base image's class name, fitted in closed form on the base images."""
        device = context.device
        student = init_backbone(context.registry, "students", context.config["student"])
        student = student.to(device).eval()
        feats = predict(
            student, data.images, device=device, progress=context.progress, desc="student"
        )
        weight, bias = fit_linear_map(
            feats, base_text.cpu()[data.labels], context.config["student_stage"]["ridge"]
        )
        w, b = weight.to(device), bias.to(device)

        def encode(images: torch.Tensor) -> torch.Tensor:
            return F.normalize(student(images) @ w + b, dim=-1)

        digest = cache_key(tensor_digest(student), tensor_digest({"w": weight, "b": bias}))
        return Subject(
            encode=encode,
            digest=digest,
            components={"subject": components["student"]},
            notes=[
                "reference row: the pretrained student, mapped into the joint space by a "
                "ridge regression onto the text embedding of each base image's class name "
                "(closed form, no teacher)"
            ],
            base_digest=data.digest,
        )

    def _trained_student(
        self,
        context: UnitContext,
        method: Method,
        teacher: ImageTextModel,
        data: BaseData,
        base_text: torch.Tensor,
        components: dict[str, ComponentRef],
    ) -> Subject:
        """Train (or load from the cache) a student on the base classes with the method's
        recipe and a text-space head, from the pretrained student or from random weights as
        the recipe's ``student_init`` says."""
        registry, device, config = context.registry, context.device, context.config
        recipe = method.recipe
        assert recipe is not None
        stage = config["student_stage"]
        pretrained = recipe.student_init == "pretrained"
        backbone = init_backbone(registry, "students", config["student"], pretrained=pretrained)
        student = TextSpaceStudent(
            backbone, teacher.embed_dim, base_text.cpu(), teacher.logit_scale
        )
        subject_components = {"subject": components["student"]}
        key = cache_key(
            "oneclass-student",
            self.version,
            context.method.name,
            context.method.version,
            recipe.as_dict(),
            context.seed,
            stage,
            config["student"],
            config["prompt"],
            teacher.image_digest(),
            teacher.text_digest(),
            tensor_digest(backbone),
            data.digest,
        )
        start = "the pretrained student" if pretrained else "random weights"
        stage = config["student_stage"]
        trained = train_student(
            student,
            recipe,
            StageData(data.images, data.labels, len(data.names)),
            TrainConfig(
                epochs=stage["epochs"],
                batch_size=stage["batch_size"],
                lr=stage["lr"],
                seed=context.seed,
            ),
            teacher=JointSpaceTeacher(teacher, base_text, data.digest, context.cache_dir),
            registry=registry,
            device=device,
            checkpoint=context.work_dir / "student.pt",
            cache=CacheSlot(context.cache_dir / "oneclass-students", key),
            progress=context.progress,
        )
        subject_components.update(trained.components)
        notes = [
            f"student trained from {start} on the base classes with a text-space head: its "
            "logits are scaled cosines to the teacher's text embeddings of the base-class names",
            *trained.notes,
        ]
        student = student.to(device).eval()
        digest = cache_key(tensor_digest(student), "text-space-student")
        return Subject(
            encode=student.embed,
            digest=digest,
            components=subject_components,
            notes=notes,
            train_seconds=trained.seconds,
            base_digest=data.digest,
        )


class JointSpaceTeacher:
    """oneclass's teacher source: the frozen image–text teacher, its logits the scaled
    image–text cosines to the base-class names and its pooled output the joint image
    embedding. Those two are cached (one pass serves every recipe of a config); token maps
    and layers are computed afresh."""

    def __init__(
        self, teacher: ImageTextModel, base_text: torch.Tensor, data_digest: str, cache_root: Path
    ) -> None:
        self.teacher, self.base_text = teacher, base_text
        self.data_digest, self.cache_root = data_digest, cache_root
        self.embed_dim = teacher.embed_dim
        self.num_layers = getattr(getattr(teacher, "backbone", None), "num_layers", 1)

    def outputs(
        self,
        images: torch.Tensor,
        needs: Needs,
        *,
        device: str,
        progress: Callable[..., Any] | None,
    ) -> list[torch.Tensor]:
        keys = needs.teacher_keys()
        source = TextSpaceTeacher(self.teacher, self.base_text)
        if not set(keys) <= {"logits", "pooled"}:
            return teacher_tensors(source, images, needs, device=device, progress=progress)
        key = cache_key(
            "oneclass-teacher-outputs",
            self.teacher.image_digest(),
            tensor_digest({"text": self.base_text.cpu()}),
            self.data_digest,
        )

        def compute() -> dict[str, torch.Tensor]:
            both = Needs(teacher={"logits", "pooled"})
            logits, pooled = teacher_tensors(source, images, both, device=device, progress=progress)
            return {"logits": logits, "pooled": pooled}

        outputs, _ = cached_tensors("oneclass-teacher", key, compute, self.cache_root)
        return [outputs[k] for k in keys]

    def notes(self) -> list[str]:
        return [
            "teacher used as is (frozen image–text model; teacher_mode is not applied): "
            "its logits are its scaled image–text cosines to the base-class names, its "
            "pooled output the joint image embedding; computed once for the training set"
        ]


@torch.no_grad()
def _zero_shot_correct(
    embeddings: torch.Tensor, text: torch.Tensor, pool: Pool, chunk: int = 4096
) -> int:
    """How many pool images are nearest to their own class name among the pool's names."""
    names = torch.from_numpy(np.unique(pool.text_index))
    class_text = F.normalize(text[names].float(), dim=-1)
    truth = torch.from_numpy(pool.text_index[pool.image_labels])
    correct = 0
    for start in range(0, len(embeddings), chunk):
        x = F.normalize(embeddings[start : start + chunk].float(), dim=-1)
        predicted = names[(x @ class_text.T).argmax(-1)]
        correct += int((predicted == truth[start : start + chunk]).sum())
    return correct
