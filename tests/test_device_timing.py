"""Latency windows, throughput windows and the statistics of latency samples."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from kdbench.device import timing
from kdbench.device.sensors import EnergySensor
from kdbench.device.timing import Tier, latency_stats, time_queries, time_throughput


def test_latency_stats_match_numpy_percentiles():
    samples = np.random.default_rng(0).lognormal(0.0, 0.3, 1000) * 1e6  # ~1 ms in ns
    stats = latency_stats(samples)
    ms = samples / 1e6
    assert stats.n == 1000
    assert stats.p50 == pytest.approx(np.median(ms))
    assert stats.p90 == pytest.approx(np.percentile(ms, 90))
    assert stats.p99 == pytest.approx(np.percentile(ms, 99))
    q25, q75 = np.percentile(ms, [25, 75])
    assert stats.iqr_ratio == pytest.approx((q75 - q25) / np.median(ms))
    lo, hi = stats.p50_ci95
    assert lo < stats.p50 < hi
    # ranks n/2 -+ 1.96 sqrt(n)/2 of the sorted samples: 469 and 531 (0-based 468, 531)
    assert (lo, hi) == (np.sort(ms)[468], np.sort(ms)[531])


def test_p99_needs_662_queries():
    assert latency_stats(np.arange(1, 662) * 1e6).p99 is None
    assert latency_stats(np.arange(1, 663) * 1e6).p99 == pytest.approx(
        np.percentile(np.arange(1, 663), 99)
    )


class Recorder:
    """A fake model and a fake synchronise that log their calls."""

    def __init__(self, seconds=0.0):
        self.log: list[str] = []
        self.seconds = seconds
        self.inputs: list[int] = []

    def sync(self):
        self.log.append("sync")

    def __call__(self, x):
        self.log.append("run")
        self.inputs.append(int(x.flatten()[0]))
        if self.seconds:
            time.sleep(self.seconds)
        return x


def test_every_query_is_synchronised_and_timed_on_its_own():
    fake = Recorder()
    pool = [torch.full((1, 3), float(i)) for i in range(5)]
    window = time_queries(fake, pool, Tier(warmup=10, min_queries=12, min_seconds=0), fake.sync)
    runs = fake.log.count("run")
    assert runs == 10 + 12 and window.calls == 12 and len(window.samples_ns) == 12
    # warm-up and timed queries alike: sync, run, sync
    body = fake.log[: 3 * 10]
    assert body == ["sync", "run", "sync"] * 10
    timed = [e for e in fake.log[30:] if e == "run"]
    assert len(timed) == 12
    for i, entry in enumerate(fake.log[30:]):
        if entry == "run":
            assert fake.log[30 + i - 1] == "sync" and fake.log[30 + i + 1] == "sync"
    assert fake.inputs[10:] == [i % 5 for i in range(12)]  # the pool is cycled
    assert window.images == 12 and window.joules is None


def test_a_window_lasts_both_min_queries_and_min_seconds():
    fake = Recorder(seconds=0.002)
    pool = [torch.zeros(1, 3)]
    window = time_queries(fake, pool, Tier(warmup=10, min_queries=5, min_seconds=0.1))
    assert window.seconds >= 0.1 and window.calls > 5
    quick = time_queries(Recorder(), pool, Tier(warmup=10, min_queries=50, min_seconds=0.0))
    assert quick.calls == 50
    assert all(s >= 2_000_000 for s in window.samples_ns)  # each query slept 2 ms


def test_warm_up_below_ten_is_refused():
    with pytest.raises(ValueError, match="at least 10"):
        Tier(warmup=5)


class Counter(EnergySensor):
    name = "counter"

    def __init__(self):
        super().__init__("cpu")
        self.reads = 0

    def available(self):
        return None

    def read_joules(self):
        self.reads += 1
        return 3.0 * self.reads


def test_energy_is_read_at_the_window_edges():
    sensor = Counter()
    window = time_queries(Recorder(), [torch.zeros(1, 3)], Tier(10, 20, 0.0), sensor=sensor)
    assert sensor.reads == 2 and window.joules == pytest.approx(3.0)
    assert window.joules_per_image == pytest.approx(3.0 / 20)


def test_throughput_synchronises_only_at_the_edges():
    fake = Recorder()
    batch = torch.zeros(8, 3)
    window = time_throughput(
        fake, batch, warmup=3, min_batches=7, min_seconds=0.0, sync=fake.sync, sensor=Counter()
    )
    assert fake.log == ["run"] * 3 + ["sync"] + ["run"] * 7 + ["sync"]
    assert window.calls == 7 and window.images == 56 and window.joules == pytest.approx(3.0)


def test_cuda_windows_call_torch_cuda_synchronize(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(str(device)))
    sync = timing.synchroniser("cuda:1")
    fake = Recorder()
    time_queries(fake, [torch.zeros(1, 3)], Tier(10, 10, 0.0), sync)
    assert len(calls) == 2 * 10 + 1 + 2 * 10  # warm-up pairs, the window edge, query pairs
    assert set(calls) == {"cuda:1"}
    timing.synchroniser("cpu")()  # a no-op that needs no GPU
