"""The main job's sharing, side by side with the plain way, on the same units.

``kdbench run`` runs its units in one process over one cache, so work that is the same for
several units is done once: the Shapes images a protocol renders are kept in memory between
units; a frozen teacher's logits and pooled embeddings are cached per (weights, images,
numerics); the base-stage students and their features, which the ``fewshot`` and
``segmentation`` units of a method share, are cached per recipe.

* ``shared``: ``kdbench run ARGS`` once, as a user runs it, with an empty cache;
* ``plain``: every unit of the same plan in a process of its own (``--shard I/N``) with an
  empty cache of its own, so nothing is shared.

Both ways must write the same records: every unit's ``metrics`` and ``statistics`` are
asserted equal, timings aside. At the end a table gives each unit's seconds both ways (the
record's ``total_seconds``; the wall times also count each process's start-up) and the
ratios.

``ARGS`` is ``KDBENCH_BENCH_JOB``, default ``-p fewshot -p segmentation -m kd -m
supervised`` (about 7 minutes both ways on a 2-core CPU): the segmentation units reuse the
fewshot units' students, and the kd units the images the first unit rendered. The main job
less its ``device`` units (which share nothing, and must be timed on a quiet machine) is
``KDBENCH_BENCH_JOB="-p distill -p fewshot -p oneclass -p segmentation"``, about 25
minutes both ways. Run it on a quiet machine::

    PYTHONPATH=. python -m pytest benchmarks/bench_main_job.py --benchmark-only \
        -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

JOB = shlex.split(
    os.environ.get("KDBENCH_BENCH_JOB", "-p fewshot -p segmentation -m kd -m supervised")
)
CLI = [sys.executable, "-m", "kdbench"]
TIMINGS: dict[str, dict[str, float]] = {}  # way -> label -> seconds ("wall" for the whole)
RECORDS: dict[str, dict[str, dict]] = {}  # way -> label -> record


def _kdbench(args: list[str], cache: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "KDBENCH_CACHE": str(cache)}
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    return subprocess.run([*CLI, *args], check=True, env=env, **kwargs)


def _plan(tmp: Path) -> list[dict]:
    plan = ["plan", *JOB, "--json", "-o", str(tmp / "plan")]
    out = _kdbench(plan, tmp / "plan-cache", stdout=subprocess.PIPE, text=True).stdout
    units = json.loads(out)["units"]
    for unit in units:  # where each way's record lands, under its own -o
        unit["record"] = str(Path(unit["record"]).relative_to(tmp / "plan"))
    if not units:
        raise pytest.UsageError(f"KDBENCH_BENCH_JOB={shlex.join(JOB)!r} plans no unit")
    return units


def _collect(way: str, out: Path, units: list[dict], wall: float) -> None:
    RECORDS[way], TIMINGS[way] = {}, {"wall": wall}
    for unit in units:
        record = json.loads((out / unit["record"]).read_text())
        if record["status"] != "ok":
            raise AssertionError(f"{unit['label']} ended {record['status']}: {record['error']}")
        RECORDS[way][unit["label"]] = record
        TIMINGS[way][unit["label"]] = record["cost"]["total_seconds"]


def shared(tmp: Path, units: list[dict]) -> None:
    start = time.perf_counter()
    _kdbench(["run", *JOB, "-o", str(tmp / "out"), "--no-progress"], tmp / "cache")
    _collect("shared", tmp / "out", units, time.perf_counter() - start)


def plain(tmp: Path, units: list[dict]) -> None:
    start = time.perf_counter()
    for unit in units:
        shard = ["--shard", f"{unit['index']}/{len(units)}"]
        cache = tmp / f"cache-{unit['index']}"
        _kdbench(["run", *JOB, *shard, "-o", str(tmp / "out"), "--no-progress"], cache)
    _collect("plain", tmp / "out", units, time.perf_counter() - start)


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    return _plan(tmp_path_factory.mktemp("plan"))


@pytest.mark.benchmark(group="main job")
@pytest.mark.parametrize("way", [shared, plain], ids=["shared", "plain"])
def test_main_job(benchmark, tmp_path_factory, units, way):
    benchmark.pedantic(
        lambda: way(tmp_path_factory.mktemp(way.__name__), units), rounds=1, iterations=1
    )
    benchmark.extra_info["units"] = len(units)
    if set(RECORDS) == {"shared", "plain"}:
        for unit in units:
            a, b = (_numbers(RECORDS[w][unit["label"]]) for w in ("shared", "plain"))
            assert a == b, f"{unit['label']}: the two ways' records differ"


def _numbers(record: dict) -> dict:
    """A record's metrics and statistics, less its timings (metrics in seconds, as ``kdbench
    rerun`` sets them aside, and statistics named ``*_seconds``)."""

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if not k.endswith("_seconds")}
        return [untimed(v) for v in value] if isinstance(value, list) else value

    metrics = [
        m for m in record["metrics"] if m["unit"] != "s" and not m["name"].endswith("_seconds")
    ]
    return {"metrics": metrics, "statistics": untimed(record["statistics"])}


@pytest.fixture(scope="module", autouse=True)
def table(request):
    yield
    if set(TIMINGS) != {"shared", "plain"}:
        return
    s, p = TIMINGS["shared"], TIMINGS["plain"]
    rows = [(label, p[label], s[label]) for label in s if label != "wall"]
    rows.append(("all units", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    rows.append(("wall, start-up included", p["wall"], s["wall"]))
    width = max(len(r[0]) for r in rows)
    lines = ["", f"{'unit':<{width}}  {'plain s':>8}  {'shared s':>8}  plain/shared"]
    for label, a, b in rows:
        lines.append(f"{label:<{width}}  {a:8.1f}  {b:8.1f}  {a / b if b else float('inf'):12.2f}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))
