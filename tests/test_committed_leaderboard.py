"""The committed leaderboard: every record in leaderboards/ is valid, ranked, and site/ is
exactly what `kdbench leaderboard build` makes of them."""

from pathlib import Path

import pytest

from kdbench.leaderboard import check_site
from kdbench.record_files import iter_record_files, validate_paths

ROOT = Path(__file__).resolve().parents[1]
RECORDS, SITE = ROOT / "leaderboards", ROOT / "site"

pytestmark = pytest.mark.skipif(
    not RECORDS.is_dir(), reason="no committed leaderboards/ in this checkout"
)


def test_every_committed_record_is_valid():
    count, problems = validate_paths([RECORDS])
    assert count == len(list(iter_record_files([RECORDS]))) > 0
    assert not problems, [str(p) for p in problems]


def test_every_committed_record_is_ranked_and_the_site_is_up_to_date():
    report = check_site(RECORDS, SITE)
    assert not report.intake.unranked, [str(u) for u in report.intake.unranked]
    stale = report.differing + report.missing + report.extra
    fix = "kdbench leaderboard build --records leaderboards/ --out site/"
    assert not stale, f"site/ is stale ({stale[:5]}); run: {fix}"
