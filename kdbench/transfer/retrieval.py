"""Query-balanced nearest-neighbour retrieval over a generic pool, in bounded memory.

The pool's embeddings are computed one chunk at a time and cached per (model weights
fingerprint, pool version, chunk), so a second unit with the same model reads them back and
a changed model or pool recomputes them. The search is an exact cosine top-k in torch,
chunk by chunk: memory is ``queries x (m + POOL_CHUNK)`` scores whatever the pool's size
(no index library is needed; faiss would only pay off on far larger query sets).

Query-balanced (Vemulapalli et al., 2024): every query contributes the same number of
images (``size // queries``, the first ``size % queries`` queries one more), taken in turns
so that an image near two queries is counted once, for the query that reaches it first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from kdbench.cache import cache_key, cached_tensors, numerics, tensor_digest
from kdbench.train import predict
from kdbench.transfer.pool import POOL_CHUNK, GenericPool


def embed(model: torch.nn.Module, images: torch.Tensor, device: str) -> torch.Tensor:
    """L2-normalised pooled embeddings of ``images`` (float32, on the CPU)."""
    with torch.no_grad():
        out = predict(model.to(device).eval(), images, device=device)
    return F.normalize(out.float(), dim=1)


def pool_embeddings(
    pool: GenericPool,
    model: torch.nn.Module,
    device: str,
    progress: Callable[..., Any] | None = None,
    fingerprint: str | None = None,
    cache_root: Path | None = None,
) -> Iterable[tuple[int, torch.Tensor]]:
    """``(first index, embeddings)`` of every chunk of ``pool`` under ``model``, each
    chunk cached per (weights fingerprint, pool version)."""
    fingerprint = fingerprint or tensor_digest(model)
    chunks: Iterable[int] = range(pool.chunk_count())
    if progress is not None:
        chunks = progress(chunks, desc="pool embeddings", total=pool.chunk_count())
    for c in chunks:
        key = cache_key("transfer-embeddings", fingerprint, pool.version, c, numerics(device))
        tensors, _ = cached_tensors(
            "transfer-embeddings",
            key,
            lambda c=c: {"embeddings": embed(model, pool.chunk(c), device).half()},
            cache_root,
        )
        yield c * POOL_CHUNK, tensors["embeddings"]


def top_k(
    queries: torch.Tensor, chunks: Iterable[tuple[int, torch.Tensor]], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` pool images most similar to each query (cosine; both sides normalised):
    scores and pool indices, each ``queries x k``, best first. A running top-k over the
    chunks, so memory does not grow with the pool."""
    best_scores = queries.new_empty((len(queries), 0))
    best_index = torch.empty((len(queries), 0), dtype=torch.long)
    for start, emb in chunks:
        scores = queries @ emb.float().T
        index = torch.arange(start, start + len(emb)).expand(len(queries), -1)
        scores = torch.cat([best_scores, scores], dim=1)
        index = torch.cat([best_index, index], dim=1)
        keep = min(k, scores.shape[1])
        best_scores, at = scores.topk(keep, dim=1)
        best_index = index.gather(1, at)
    return best_scores, best_index


def balanced_pick(neighbours: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``size`` distinct pool indices taken from each query's ranked ``neighbours`` in
    turns, and the query each was taken for; None when some query runs out of
    neighbours before its share is filled (ask for more)."""
    n = len(neighbours)
    quota = np.full(n, size // n) + (np.arange(n) < size % n)
    ranked = neighbours.numpy()
    taken: set[int] = set()
    picked, owner = [], []
    position = np.zeros(n, dtype=np.int64)
    for _ in range(int(quota.max(initial=0))):
        for q in range(n):
            if quota[q] == 0:
                continue
            while position[q] < ranked.shape[1] and int(ranked[q, position[q]]) in taken:
                position[q] += 1
            if position[q] >= ranked.shape[1]:
                return None
            index = int(ranked[q, position[q]])
            taken.add(index)
            picked.append(index)
            owner.append(q)
            quota[q] -= 1
    return np.asarray(picked, dtype=np.int64), np.asarray(owner, dtype=np.int64)


@dataclass
class Retrieval:
    """What a query-balanced retrieval picked: pool indices, the query each was picked for,
    each query's ranked neighbours, and how long the search took."""

    indices: np.ndarray
    owner: np.ndarray
    neighbours: torch.Tensor
    search_seconds: float
    embed_seconds: float


def query_balanced(
    queries: torch.Tensor,
    pool: GenericPool,
    model: torch.nn.Module,
    size: int,
    device: str,
    progress: Callable[..., Any] | None = None,
    cache_root: Path | None = None,
) -> Retrieval:
    """``size`` distinct images of ``pool`` nearest to ``queries`` (images) by ``model``'s
    embedding, query-balanced. Searches ``4 x share + 8`` neighbours per query and doubles
    that until every query's share can be filled with images no other query took."""
    if size > len(pool):
        raise ValueError(f"cannot retrieve {size} images from a pool of {len(pool)}")
    if not len(queries):
        raise ValueError("retrieval needs at least one query image")
    fingerprint = tensor_digest(model)
    started = time.perf_counter()
    q = embed(model, queries, device)
    for _ in pool_embeddings(pool, model, device, progress, fingerprint, cache_root):
        pass  # compute (or check) every chunk's cached embeddings before timing the search
    embed_seconds = time.perf_counter() - started
    share = -(-size // len(q))
    m = min(len(pool), 4 * share + 8)
    while True:
        t0 = time.perf_counter()
        _, neighbours = top_k(
            q, pool_embeddings(pool, model, device, None, fingerprint, cache_root), m
        )
        search = time.perf_counter() - t0
        picked = balanced_pick(neighbours, size)
        if picked is not None or m >= len(pool):
            break
        m = min(len(pool), 2 * m)
    assert picked is not None
    return Retrieval(picked[0], picked[1], neighbours, search, embed_seconds)
