"""A built leaderboard shared by the leaderboard tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.leaderboard.build import BuildReport, build_site
from tests.leaderboard.records import (
    CPU,
    GPU,
    leaderboard_records,
    make_record,
    write_records,
    zoo_records,
)

#: An HTML/JS payload used as a method name, description and metric reason.
PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def sample_records() -> list[dict]:
    """A small leaderboard plus one record for each reason a record is not ranked."""
    records = leaderboard_records(
        methods=5, seeds=3, suites=("embedded", "standard"), fingerprints=(CPU, GPU)
    )
    records += [
        make_record(method=PAYLOAD, description=PAYLOAD, url="https://example.org/p?a=1&b=2"),
        make_record(method="method-000", smoke=True, seed=7),
        make_record(
            method="old-method",
            protocol="distill",
            version=1,
            suite="embedded",
            run_id="superseded-run",
        ),
        make_record(method="method-001", protocol="segmentation", status="failed", seed=9),
        {**make_record(method="no-fp", protocol="device"), "device_fingerprint": None},
    ]
    # distill@2 is current: the distill@1 "old-method" record above is superseded
    for i, record in enumerate(records):
        if record["protocol"]["name"] == "distill" and record["method"]["name"] != "old-method":
            records[i] = {**record, "protocol": {**record["protocol"], "version": 2}}
    return records


def write_sample(folder: Path) -> Path:
    write_records(folder, sample_records())
    bad = folder / "embedded" / "fewshot" / "broken.json"
    bad.write_text('{"schema_version": 1, "run_id": "x"}', encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    return write_sample(tmp_path_factory.mktemp("records"))


@pytest.fixture(scope="session")
def built(sample_dir, tmp_path_factory) -> BuildReport:
    out = tmp_path_factory.mktemp("built") / "site"
    return build_site(sample_dir, out, protocol_versions={})


def zoo_sample() -> list[dict]:
    """Three methods x three students x three seeds, and one row with too few seeds."""
    records = zoo_records()
    records.append(make_record(method="dkd", subject="shapes-vit-small", seed=0))
    return records


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("zoo-records")
    write_records(folder, zoo_sample())
    return folder


@pytest.fixture(scope="session")
def zoo_built(zoo_dir, tmp_path_factory) -> BuildReport:
    """A site whose fewshot table has (method, student) rows and device records per student."""
    out = tmp_path_factory.mktemp("zoo-built") / "site"
    return build_site(zoo_dir, out, protocol_versions={})
