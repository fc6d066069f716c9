"""The few-shot code as it was before the float32 scorer: the float64 batched NCM scorer
(Gram and gather paths), its feature preparation, and Floyd's draw with pairwise
comparisons. Kept word for word as references that today's code must match bit for bit
(tests) and is timed against (``benchmarks/bench_fewshot.py``)."""

from __future__ import annotations

import numpy as np
import torch

from kdbench.fewshot import Episodes, _as_labels, _check_episodes


def floyd_subsets_by_comparison(g: np.random.Generator, sizes: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct positions in ``[0, sizes[r])`` per row ``r``, uniformly chosen and in
    random order (Floyd's algorithm, vectorised over rows, then a shuffle)."""
    rows = len(sizes)
    chosen = np.empty((rows, k), dtype=np.int64)
    for i in range(k):
        top = sizes - k + i  # each row's next candidate, never chosen before
        pick = g.integers(0, top + 1)
        taken = (chosen[:, :i] == pick[:, None]).any(axis=1)
        chosen[:, i] = np.where(taken, top, pick)
    order = g.random((rows, k)).argsort(axis=1)
    return np.take_along_axis(chosen, order, axis=1)


def prepare_features_float64(features, center=None) -> torch.Tensor:
    """Features as float64, centred on ``center`` and L2-normalised row by row."""
    f = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    bad = ~torch.isfinite(f).all(dim=1)
    if bool(bad.any()):
        raise ValueError("features contain NaN or infinite values")
    f = f.detach().cpu().to(torch.float64)
    if center is not None:
        c = torch.as_tensor(
            center.detach().cpu().numpy() if isinstance(center, torch.Tensor) else center,
            dtype=torch.float64,
        ).reshape(-1)
        f = f - c
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _count_correct(score: torch.Tensor, w: int, q: int) -> torch.Tensor:
    truth = torch.arange(w).repeat_interleave(q)
    return (score.argmin(-1) == truth).sum(-1)


def _ncm_correct_gram(f: torch.Tensor, episodes: Episodes, chunk_bytes: int) -> np.ndarray:
    n = f.shape[0]
    w, s, q = episodes.ways, episodes.shots, episodes.queries
    flat = (f @ f.T).reshape(-1)  # G = F Fᵀ, once
    per_episode = (w * q * w * s + w * s * s) * 16  # gathered values and their indices
    step = max(1, chunk_bytes // per_episode)
    index = torch.int32 if n * n < 2**31 else torch.int64  # int32 arithmetic is far faster
    out = np.empty(len(episodes), dtype=np.int64)
    for start in range(0, len(episodes), step):
        sup = torch.from_numpy(episodes.support[start : start + step]).to(index)  # (b, W, S)
        qry = torch.from_numpy(episodes.query[start : start + step]).to(index)  # (b, W, Q)
        b = sup.shape[0]
        pairs = (qry.reshape(b, w * q, 1) * n + sup.reshape(b, 1, w * s)).reshape(-1)
        dots = flat.index_select(0, pairs).reshape(b, w * q, w, s).sum(-1)  # S·(q·mean)
        blocks = (sup.reshape(b, w, s, 1) * n + sup.reshape(b, w, 1, s)).reshape(-1)
        norms = flat.index_select(0, blocks).reshape(b, w, s * s).sum(-1)  # S²·||mean||²
        # ||q − m||² = ||q||² − 2 q·m + ||m||²; ||q||² is the same for every way
        score = norms[:, None, :] / (s * s) - 2 * dots / s
        out[start : start + b] = _count_correct(score, w, q).numpy()
    return out


def _ncm_correct_gather(f: torch.Tensor, episodes: Episodes, chunk_bytes: int) -> np.ndarray:
    w, s, q = episodes.ways, episodes.shots, episodes.queries
    d = f.shape[1]
    step = max(1, chunk_bytes // (w * (s + q) * d * 8 * 2))
    out = np.empty(len(episodes), dtype=np.int64)
    for start in range(0, len(episodes), step):
        sup = torch.from_numpy(episodes.support[start : start + step])
        qry = torch.from_numpy(episodes.query[start : start + step])
        b = sup.shape[0]
        means = f.index_select(0, sup.reshape(-1)).reshape(b, w, s, d).mean(2)  # (b, W, D)
        fq = f.index_select(0, qry.reshape(-1)).reshape(b, w * q, d)
        score = (means * means).sum(-1)[:, None, :] - 2 * torch.bmm(fq, means.transpose(1, 2))
        out[start : start + b] = _count_correct(score, w, q).numpy()
    return out


def batched_float64_ncm_accuracy(
    features,
    labels,
    episodes: Episodes,
    *,
    center=None,
    max_gram_bytes: int = 2 * 1024**3,
    chunk_bytes: int = 64 * 1024**2,
) -> np.ndarray:
    """Per-episode NCM accuracy, all in float64: from the Gram matrix when it fits in
    ``max_gram_bytes``, else from each chunk's gathered episode features."""
    labels = _as_labels(labels)
    f = prepare_features_float64(features, center)
    _check_episodes(labels, f.shape[0], episodes)
    n = f.shape[0]
    if n * n * 8 <= max_gram_bytes:
        correct = _ncm_correct_gram(f, episodes, chunk_bytes)
    else:
        correct = _ncm_correct_gather(f, episodes, chunk_bytes)
    return correct / (episodes.ways * episodes.queries)
