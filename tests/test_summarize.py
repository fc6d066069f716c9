"""``kdbench summarize``: the leaderboard's tables as markdown, CSV or JSON, no site built."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.errors import ConfigError
from kdbench.protocols.fewshot import FewShot
from kdbench.summarize import summarize
from tests.leaderboard.records import make_record, metric, write_records


@pytest.fixture
def records(tmp_path):
    rows = []
    for seed in range(3):
        for method, value in (("supervised", 50.0), ("kd", 60.0), ("a|b\x1b[31m", 40.0)):
            rows.append(
                make_record(
                    method=method,
                    seed=seed,
                    version=FewShot.version,  # the installed protocol's: older ones are superseded
                    metrics=[metric("acc_1shot", value + seed * 0.5, headline=True)],
                )
            )
    lucky = metric("acc_1shot", 99.0, headline=True)
    rows.append(make_record(method="=lucky", version=FewShot.version, metrics=[lucky]))
    write_records(tmp_path, rows)
    return tmp_path


def test_markdown_ranks_like_the_site_and_keeps_text_inert(records):
    text = summarize(records, "markdown")
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| rank | method | student | acc_1shot (%) | Δ acc_1shot")
    body = [line.split(" | ") for line in lines[1:]]
    assert [(cells[0].lstrip("| "), cells[1]) for cells in body] == [
        ("1", "kd"),
        ("2", "supervised"),
        ("3", "a\\|b\\x1b[31m"),
        ("prelim.", "=lucky"),
    ]
    assert "baseline" in lines[2] and "+10.00 ± 0.00" in lines[1]
    assert "\x1b" not in text


def test_csv_and_json_are_the_site_downloads(records):
    rows = list(csv.DictReader(io.StringIO(summarize(records, "csv"))))
    assert {r["method"] for r in rows} == {"supervised", "kd", "a|b\x1b[31m", "'=lucky"}
    lucky = next(r for r in rows if r["method"] == "'=lucky")
    assert lucky["preliminary"] == "true" and lucky["rank"] == ""
    data = json.loads(summarize(records, "json"))
    assert {r["method"] for r in data} == {"supervised", "kd", "a|b\x1b[31m", "=lucky"}


def test_errors_and_the_command(records, tmp_path):
    with pytest.raises(ConfigError, match="markdown, csv, json"):
        summarize(records, "html")
    with pytest.raises(ConfigError, match="does not exist"):
        summarize(tmp_path / "nope")
    result = CliRunner().invoke(app, ["summarize", str(records), "--min-seeds", "1"])
    assert result.exit_code == 0, result.output
    assert "| 1 | =lucky |" in result.output  # with a one-seed policy it ranks
