"""Zero-shot one-class classification with confusers: tasks drawn at exact taxonomy
distances and scored in an image–text embedding space, all tasks at once.

Usable on embeddings from anywhere: with image embeddings of a pool and text embeddings of
its label vocabulary, a user draws tasks and scores them the way the ``oneclass`` protocol
does::

    from kdbench.world.source import shapes_pool
    from kdbench.metrics import mean_ci95
    from kdbench.oneclass import choose_targets, draw_confusers, sample_tasks, score_tasks

    pool = shapes_pool(["novel", "downstream"], per_class=40, domain="base")
    targets = choose_targets(pool, max_targets=None, seed=0)
    confusers = draw_confusers(source, "frozen", pool, targets, k=10, seed=0)
    tasks = sample_tasks(pool, targets, ["root", "tone"], positives=20, per_target=1, seed=0)
    scores = score_tasks(image_embeddings, text_embeddings, pool, targets, confusers, tasks)
    mean, ci95 = mean_ci95(scores.auroc)

A task is one target class and one taxonomy distance ``d``: positives are images of the
target, as many negatives are drawn from the classes whose lowest common ancestor with the
target is *exactly* at rank ``d`` (``uniform``: any other class). An image ``x`` scores
``s(x, target) - mean_k s(x, confuser_k)`` (cosines in the joint space; the "average
negative prototype"); it is called positive iff that margin is above 0. Since the margin is
``x·(t - mean_k c_k)``, each target needs one direction and a task's scores are a gather and
a dot product, so thousands of tasks score as array operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdbench.cache import cache_key, entry_lock, read_entry, tensor_digest, write_entry
from kdbench.confusers import Candidates, MissingTargetError, check_answer
from kdbench.data.pool import Pool
from kdbench.errors import ConfigError
from kdbench.metrics.ranking import auroc_rows, binary_macro_f1_rows, fpr_at_tpr_rows
from kdbench.phases import in_phase
from kdbench.seeding import rng
from kdbench.train import predict

SHAPES_DISTANCES = ("root", "tone", "colour", "shape")
INAT_DISTANCES = ("kingdom", "phylum", "class", "order", "family", "genus")
UNIFORM = "uniform"
ROOT = "root"
DISTANCES = (*SHAPES_DISTANCES, *INAT_DISTANCES, UNIFORM)
"""Every distance a metric is declared for: the rank of the lowest common ancestor of target
and negatives (``root``: none below the root; ``uniform``: any other class)."""
SCORES = ("margin", "target")


# -- embeddings -----------------------------------------------------------------------------


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


def cached_tasks(
    draw: Callable[[], Tasks], key: str, distances: Sequence[str], cache_dir: Path
) -> Tasks:
    """The tasks ``draw()`` gives, drawn once per ``key`` and saved under ``cache_dir`` (index
    tensors, and the skipped and short counts beside them): every method of a seed is
    scored on the same tasks, as with few-shot episodes."""
    folder = cache_dir / "oneclass-tasks"
    with entry_lock(folder, key):
        entry = read_entry(folder, key)
        if entry is None:
            drawn = draw()
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
    """Per task: AUROC, FPR at 95% TPR, macro-F1 of the margin decision."""

    auroc: np.ndarray
    fpr95: np.ndarray
    f1: np.ndarray


@in_phase("evaluation")
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


@torch.no_grad()
@in_phase("evaluation")
def zero_shot_correct(
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
