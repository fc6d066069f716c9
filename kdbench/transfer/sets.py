"""The built-in transfer sets: ``task``, ``generic``, ``retrieved`` and ``none``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdbench.cache import tensor_digest
from kdbench.errors import ConfigError
from kdbench.seeding import rng
from kdbench.transfer import TransferImages, TransferRequest
from kdbench.transfer.pool import GenericPool


def composition(
    pool: GenericPool, indices: np.ndarray, task_classes: list[str], domain: str | None
) -> dict[str, float] | None:
    """Fractions of the images at ``indices`` whose class is one of the task's, whose
    domain is the task's, that are both, and that show no labelled object; None for an
    unlabelled pool."""
    info = pool.describe(indices)
    if info is None or not len(indices):
        return None
    in_task = np.isin(info["class"], list(task_classes))
    same_domain = info["domain"] == domain if domain is not None else np.zeros(len(indices), bool)
    return {
        "task_class_fraction": float(in_task.mean()),
        "task_domain_fraction": float(same_domain.mean()),
        "task_class_and_domain_fraction": float((in_task & same_domain).mean()),
        "no_object_fraction": float((info["class"] == "").mean()),
    }


def _pool_set(
    name: str, request: TransferRequest, pool: GenericPool, indices: np.ndarray, **options: Any
) -> TransferImages:
    stats = composition(pool, indices, request.task.class_names, request.section.get("domain"))
    return TransferImages(
        name,
        pool.load(indices),
        pool.image_ids(indices),
        options={
            "pool": pool.name,
            "pool_version": pool.version,
            "pool_size": len(pool),
            **options,
        },
        statistics={"pool_size": len(pool), **(stats or {})},
        pool=pool,
        indices=indices,
    )


class TaskTransfer:
    """The task's own unlabelled images (drawn from the task's classes and domain)."""

    name = "task"

    def build(self, request: TransferRequest) -> TransferImages:
        images = request.task.transfer_images
        digest = request.task.draws.get("transfer") or tensor_digest({"images": images})
        ids = [f"task/{digest}/{i}" for i in range(len(images))]
        return TransferImages(self.name, images, ids)


class NoTransfer:
    """No unlabelled images: label-free losses see the labelled images only."""

    name = "none"

    def build(self, request: TransferRequest) -> TransferImages:
        shape = request.task.train_images.shape[1:]
        return TransferImages(self.name, torch.zeros((0, *shape), dtype=torch.uint8), [])


class GenericTransfer:
    """``size`` images drawn at random (per seed) from the generic pool, not curated for
    the task."""

    name = "generic"

    def build(self, request: TransferRequest) -> TransferImages:
        pool = request.pool()
        size = request.size
        if size > len(pool):
            raise ConfigError(f"transfer set size {size} is larger than the pool ({len(pool)})")
        chosen = rng(request.seed, "transfer", "generic").choice(len(pool), size, replace=False)
        return _pool_set(self.name, request, pool, np.sort(chosen))


class RetrievedTransfer:
    """``size`` images of the generic pool nearest to the task's labelled images by the
    pretrained teacher's embedding (option ``by=student``: the student's), query-balanced."""

    name = "retrieved"

    def build(self, request: TransferRequest) -> TransferImages:
        from kdbench.transfer.retrieval import query_balanced

        by = request.options.get("by", "teacher")
        if by not in request.models:
            raise ConfigError(
                f"retrieved: by={by!r}; retrieval embeds with {' or '.join(request.models)}"
            )
        pool = request.pool()
        model = request.models[by]()
        found = query_balanced(
            request.task.train_images,
            pool,
            model,
            request.size,
            request.device,
            request.progress,
            request.cache_root,
        )
        queries = len(request.task.train_images)
        out = _pool_set(
            self.name,
            request,
            pool,
            found.indices,
            by=by,
            queries=queries,
            search="exact cosine top-k in torch, chunked",
        )
        out.retrieval = found
        out.statistics.update(
            search_seconds=found.search_seconds,
            embed_seconds=found.embed_seconds,
            neighbours_searched=int(found.neighbours.shape[1]),
        )
        out.notes.append(
            f"retrieved transfer set: {len(out)} images of the {len(pool)}-image pool "
            f"{pool.name}, {len(out) // queries}-{-(-len(out) // queries)} per labelled image "
            f"by the pretrained {by}'s embedding; exact torch top-k over cached chunked "
            f"embeddings took {found.search_seconds:.2f}s"
        )
        return out
