"""Benchmark: build the leaderboard site from 1,000, 10,000 (and, on request, 100,000)
synthetic records, in one process and with run pages rendered by worker processes.

Run with ``python -m pytest benchmarks/bench_leaderboard.py --benchmark-only``. The records
cover every protocol in both suites: methods and 2 reference rows x 5 seeds x 5 protocols x
2 suites (18, 198 or 1,998 methods). Two record sizes:

* ``small``: the records as the leaderboard tests write them (about 2 kB);
* ``realistic``: the same with per-episode statistics added to reach about 80 kB, the size
  of a committed ``fewshot`` record.

Each round builds into an empty folder (the full cost: about two files per record), once
with ``KDBENCH_SITE_WORKERS=0`` (every page in this process) and once with the default
workers, side by side. At the end a table gives seconds per build and microseconds per
record, so a size against the next shows whether the build is linear. ``KDBENCH_BENCH_100K=1``
adds 100,000 small records (about 0.2 GB of records and 0.7 GB of site); run it with
``--basetemp`` on a memory file system, e.g. ``--basetemp=/dev/shm/kdbench-bench``, so that
file creation on a disk does not dominate.

``test_parse`` times the build's first step alone, reading and validating the realistic
records, with the standard library's JSON parser and with orjson, side by side.
"""

from __future__ import annotations

import os
import shutil

import pytest

from kdbench.leaderboard.build import build_site
from tests.leaderboard.records import leaderboard_records, write_records

SIZES = {1_000: 18, 10_000: 198}
if os.environ.get("KDBENCH_BENCH_100K"):
    SIZES[100_000] = 1_998
PADDING = {"small": 0, "realistic": 4_000}
"""Per-episode entries added to each of two statistics lists (about 80 kB in all)."""
CASES = [(n, kind) for n in SIZES for kind in PADDING if not (n == 100_000 and kind != "small")]
RESULTS: dict[tuple[int, str, str], float] = {}


@pytest.fixture(scope="module")
def records_dirs(tmp_path_factory):
    made: dict[tuple[int, str], object] = {}

    def get(n: int, kind: str):
        if (n, kind) not in made:
            records = leaderboard_records(
                methods=SIZES[n], seeds=5, suites=("embedded", "standard")
            )
            assert len(records) == n
            if PADDING[kind]:
                per_episode = [i % 76 for i in range(PADDING[kind])]
                for record in records:
                    record["statistics"] = {
                        "correct_1shot": per_episode,
                        "correct_5shot": per_episode,
                    }
            folder = tmp_path_factory.mktemp(f"records-{n}-{kind}")
            write_records(folder, records)
            made[(n, kind)] = folder
        return made[(n, kind)]

    return get


@pytest.mark.parametrize("workers", ["0", "default"])
@pytest.mark.parametrize(("n", "kind"), CASES, ids=[f"{n}-{kind}" for n, kind in CASES])
def test_build(benchmark, records_dirs, tmp_path, monkeypatch, n, kind, workers):
    records = records_dirs(n, kind)
    if workers == "0":
        monkeypatch.setenv("KDBENCH_SITE_WORKERS", "0")
    else:
        monkeypatch.delenv("KDBENCH_SITE_WORKERS", raising=False)
    outs: list[object] = []

    def fresh_folder():  # an empty folder per round; the last round's site is removed first
        for old in outs:
            shutil.rmtree(old, ignore_errors=True)
        outs.append(tmp_path / f"site{len(outs)}")
        return (records, outs[-1]), {"protocol_versions": {}}

    benchmark.group = f"{n:,} {kind} records"
    rounds = 1 if n >= 100_000 else 2
    report = benchmark.pedantic(build_site, setup=fresh_folder, rounds=rounds, iterations=1)
    assert len(report.intake.ranked) == n
    assert report.files > 2 * n
    RESULTS[(n, kind, workers)] = benchmark.stats.stats.min


PARSE_CASES = [(n, "realistic") for n in SIZES if n < 100_000]


@pytest.mark.parametrize("parser", ["stdlib", "orjson"])
@pytest.mark.parametrize(("n", "kind"), PARSE_CASES, ids=[f"{n}-{k}" for n, k in PARSE_CASES])
def test_parse(benchmark, records_dirs, monkeypatch, n, kind, parser):
    """Reading and validating every record (the build's intake), with the standard
    library's JSON parser (the way before) and with orjson, side by side."""
    from kdbench import record_json
    from kdbench.leaderboard.intake import read_and_screen

    records = records_dirs(n, kind)
    if parser == "stdlib":
        monkeypatch.setattr(record_json, "_orjson", None)
    elif record_json._orjson is None:
        pytest.skip("orjson is not installed")
    benchmark.group = f"parse {n:,} {kind} records"
    intake = benchmark.pedantic(read_and_screen, args=(records, {}), rounds=2, iterations=1)
    assert len(intake.ranked) == n
    RESULTS[(n, kind, f"parse-{parser}")] = benchmark.stats.stats.min


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not RESULTS:
        return
    lines = [f"{'records':>8} {'size':<10} {'1 process':>10} {'workers':>10} {'us/record':>10}"]
    for n, kind in CASES:
        serial, forked = RESULTS.get((n, kind, "0")), RESULTS.get((n, kind, "default"))
        if serial is None or forked is None:
            continue
        lines.append(
            f"{n:>8,} {kind:<10} {serial:>9.2f}s {forked:>9.2f}s {1e6 * forked / n:>10.0f}"
        )
    for n, kind in PARSE_CASES:
        slow, fast = RESULTS.get((n, kind, "parse-stdlib")), RESULTS.get((n, kind, "parse-orjson"))
        if slow is not None and fast is not None:
            lines.append(
                f"reading {n:,} {kind} records: {slow:.2f}s with the standard library, "
                f"{fast:.2f}s with orjson ({slow / fast:.2f}x)"
            )
    print("\n" + "\n".join(lines))
