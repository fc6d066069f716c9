"""Benchmark: build the leaderboard site from 10,000 synthetic records.

Run with ``python -m pytest benchmarks/bench_leaderboard.py --benchmark-only``. The records
cover every protocol in both suites: 198 methods and 2 reference rows x 5 seeds x 5 protocols
x 2 suites. Each round builds into an empty folder (the full cost: about 20,000 files).
"""

from __future__ import annotations

import itertools
import shutil

import pytest

from kdbench.leaderboard.build import build_site
from tests.leaderboard.records import leaderboard_records, write_records

RECORDS = 10_000


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    records = leaderboard_records(methods=198, seeds=5, suites=("embedded", "standard"))
    assert len(records) == RECORDS
    folder = tmp_path_factory.mktemp("records")
    write_records(folder, records)
    return folder


def test_build_10000_records(benchmark, records_dir, tmp_path):
    counter = itertools.count()

    def fresh_folder():
        out = tmp_path / f"site{next(counter)}"
        shutil.rmtree(out, ignore_errors=True)
        return (records_dir, out), {"protocol_versions": {}}

    report = benchmark.pedantic(build_site, setup=fresh_folder, rounds=3, iterations=1)
    assert len(report.intake.ranked) == RECORDS
    assert len(report.tables) == 10
    assert report.files > 2 * RECORDS
