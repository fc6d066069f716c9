"""Shapes world generation speed: images and scenes per second, side by side with drawing
one image at a time through the same renderer (the naive way), same bytes asserted for
the batched path's determinism.

    python -m pytest benchmarks/bench_world.py --benchmark-only
"""

import numpy as np
import pytest

from kdbench.world import ShapesWorld
from kdbench.world.world import CHUNK

WORLD = ShapesWorld()
N = 2 * CHUNK


def batched():
    ids = np.resize(WORLD.classes("base"), N)
    return WORLD.render(ids, 0, "bench", "base")


def one_at_a_time():
    ids = np.resize(WORLD.classes("base"), N)
    return [WORLD.render(ids[i : i + 1], 0, f"bench{i}", "base") for i in range(N)]


def test_deterministic():
    assert np.array_equal(batched(), batched())


@pytest.mark.benchmark(group="world-images")
def test_bench_batched(benchmark):
    benchmark(batched)
    benchmark.extra_info["images_per_second"] = N / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="world-images")
def test_bench_one_at_a_time(benchmark):
    benchmark.pedantic(one_at_a_time, rounds=2)
    benchmark.extra_info["images_per_second"] = N / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="world-scenes")
def test_bench_scenes(benchmark):
    benchmark.pedantic(lambda: WORLD.scenes(CHUNK, 0, "bench"), rounds=3)
    benchmark.extra_info["scenes_per_second"] = CHUNK / benchmark.stats.stats.mean
