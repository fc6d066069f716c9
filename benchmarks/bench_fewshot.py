"""Few-shot NCM scoring: 10,000 5-way episodes (15 queries per class) on cached features.

The batched Gram-matrix path of :func:`kdbench.fewshot.ncm_accuracy` side by side with the
straightforward per-episode loop (:func:`kdbench.fewshot.ncm_accuracy_loop`) on the same
episodes; the per-episode accuracies are asserted identical. Features have the embedded
suite's shape (60 novel classes x 40 images, 64 dimensions: the Shapes student).

    PYTHONPATH=. python -m pytest benchmarks/bench_fewshot.py --benchmark-only

The Gram matrix is built inside every timed call (it is part of the cost of scoring).
"""

from __future__ import annotations

import numpy as np
import pytest

from kdbench.fewshot import ncm_accuracy, ncm_accuracy_loop, sample_episodes

EPISODES = 10_000


@pytest.fixture(scope="module")
def bank():
    g = np.random.default_rng(0)
    labels = np.repeat(np.arange(60), 40)
    centres = g.standard_normal((60, 64)) * 0.5
    features = (centres[labels] + g.standard_normal((len(labels), 64))).astype(np.float32)
    return features, labels, features.mean(0)


@pytest.fixture(scope="module")
def loop_results():
    return {}


@pytest.mark.parametrize("shots", [1, 5])
def test_loop(benchmark, bank, shots, loop_results):
    features, labels, center = bank
    episodes = sample_episodes(labels, 5, shots, 15, EPISODES, seed=0)
    benchmark.group = f"5-way {shots}-shot, {EPISODES} episodes"
    acc = benchmark.pedantic(
        ncm_accuracy_loop, (features, labels, episodes), {"center": center}, rounds=1
    )
    loop_results[shots] = acc


@pytest.mark.parametrize("shots", [1, 5])
def test_batched(benchmark, bank, shots, loop_results):
    features, labels, center = bank
    episodes = sample_episodes(labels, 5, shots, 15, EPISODES, seed=0)
    benchmark.group = f"5-way {shots}-shot, {EPISODES} episodes"
    acc = benchmark.pedantic(
        ncm_accuracy, (features, labels, episodes), {"center": center}, rounds=5, warmup_rounds=1
    )
    reference = loop_results.get(shots)
    if reference is None:  # run alone: compare with the loop anyway
        reference = ncm_accuracy_loop(features, labels, episodes, center=center)
    assert np.array_equal(acc, reference)


@pytest.mark.parametrize("shots", [1, 5])
def test_sampling(benchmark, bank, shots):
    _, labels, _ = bank
    benchmark.group = f"drawing {EPISODES} episodes"
    episodes = benchmark(sample_episodes, labels, 5, shots, 15, EPISODES, 0)
    assert len(episodes) == EPISODES
