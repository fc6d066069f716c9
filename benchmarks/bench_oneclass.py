"""oneclass task scoring: all tasks as array operations vs a Python loop over tasks.

Both score the same iNaturalist-sized draw (2,000 targets x 6 distances, 10 + 10 images per
task, 512-d embeddings) with the margin score and compute per-task AUROC, FPR@95%TPR and
macro-F1; the results are asserted equal, so the timings compare the two ways only.

    python -m pytest benchmarks/bench_oneclass.py --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest
import torch

from kdbench.data.pool import Pool
from kdbench.metrics import auroc, binary_macro_f1, fpr_at_tpr
from kdbench.oneclass import Tasks, score_tasks
from kdbench.results import DatasetIdentity

CLASSES, IMAGES_PER_CLASS, DIM, K, N = 2000, 10, 512, 10, 10
DISTANCES = 6


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), IMAGES_PER_CLASS)
    images = torch.randn(len(labels), DIM, generator=g)
    text = torch.randn(CLASSES, DIM, generator=g)
    pool = Pool(
        names=[str(i) for i in range(CLASSES)],
        image_labels=labels,
        levels=None,
        codes=None,
        vocabulary=None,
        text_index=np.arange(CLASSES),
        identity=DatasetIdentity(name="bench", version="1"),
        digest="bench",
    )
    targets = np.arange(CLASSES)
    confusers = rng.integers(0, CLASSES, (CLASSES, K))
    rows = CLASSES * DISTANCES
    target = np.repeat(targets, DISTANCES)
    pos = target[:, None] * IMAGES_PER_CLASS + np.arange(N)
    neg = rng.integers(0, len(labels), (rows, N))
    tasks = Tasks(
        distances=[str(d) for d in range(DISTANCES)],
        target=target,
        distance=np.tile(np.arange(DISTANCES), CLASSES),
        index=np.concatenate([pos, neg], axis=1),
        labels=np.concatenate([np.ones((rows, N)), np.zeros((rows, N))], axis=1).astype(int),
        skipped={},
    )
    return images, text, pool, targets, confusers, tasks


def vectorised(images, text, pool, targets, confusers, tasks):
    scores = score_tasks(images, text, pool, targets, confusers, tasks)
    return np.stack([scores.auroc, scores.fpr95, scores.f1])


def loop_over_tasks(images, text, pool, targets, confusers, tasks):
    x = torch.nn.functional.normalize(images.double(), dim=-1)
    w = torch.nn.functional.normalize(text.double(), dim=-1)
    out = np.zeros((3, tasks.count))
    for row in range(tasks.count):
        t = tasks.target[row]
        idx, lab = tasks.index[row], tasks.labels[row]
        feats = x[idx]
        margin = (feats @ w[t] - (feats @ w[confusers[t]].T).mean(1)).numpy()
        out[:, row] = auroc(margin, lab), fpr_at_tpr(margin, lab), binary_macro_f1(margin > 0, lab)
    return out


def test_same_results(setup):
    small = list(setup)
    tasks = setup[-1]
    keep = slice(0, 600)
    small[-1] = Tasks(
        tasks.distances, tasks.target[keep], tasks.distance[keep], tasks.index[keep],
        tasks.labels[keep], {},
    )  # fmt: skip
    assert np.allclose(vectorised(*small), loop_over_tasks(*small))


@pytest.mark.benchmark(group="oneclass-scoring")
@pytest.mark.parametrize("way", [vectorised, loop_over_tasks], ids=["vectorised", "loop"])
def test_bench_scoring(benchmark, setup, way):
    benchmark.pedantic(lambda: way(*setup), rounds=3, warmup_rounds=1)
