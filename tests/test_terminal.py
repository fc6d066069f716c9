"""Untrusted text on the terminal: escape codes are shown as text, never sent raw."""

import pytest
from typer.testing import CliRunner

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.hookspecs import hookimpl
from kdbench.protocols.base import UnitContext, UnitResult
from kdbench.record_files import load_record
from kdbench.results import MAX_TEXT_CHARS
from kdbench.terminal import printable
from tests.helpers import CoinProtocol, Method

ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcödé ✓ 名前", "plain text, ünïcödé ✓ 名前"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("bell\x07 nul\x00 del\x7f csi\x9b", "bell\\x07 nul\\x00 del\\x7f csi\\x9b"),
        ("a\u202eb\u2066c\u200fd", "a\\u202eb\\u2066c\\u200fd"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("two\nlines\r", "two\\x0alines\\x0d"),
    ],
)
def test_printable_shows_control_characters_as_escapes(text, shown):
    assert printable(text) == shown
    printable(text).encode("utf-8")  # printing it cannot fail


def test_printable_can_keep_line_breaks():
    assert printable("one\ntwo\x1b", newlines=True) == "one\ntwo\\x1b"


class Exploding(CoinProtocol):
    def run(self, context: UnitContext) -> UnitResult:
        raise ValueError(f"boom {ESCAPES}")


class HostilePlugin:
    @hookimpl
    def kdbench_register_protocols(self, register):
        register(Exploding(), name="coin")

    @hookimpl
    def kdbench_register_methods(self, register):
        register(Method("heads"), description=f"{ESCAPES} " + "d" * 10**6)


@pytest.fixture
def hostile():
    with plugins.temporary_plugin(HostilePlugin(), distribution="evil", version=ESCAPES) as reg:
        yield reg


def _no_raw_escapes(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text[:300])


def test_run_summary_and_log_escape_plugin_text(hostile, tmp_path, capsys):
    units, _ = runner.plan(hostile, protocols=["coin"], methods=["heads"], smoke=True)
    report = runner.run_units(units, registry=hostile, out=tmp_path, progress=False)
    summary = runner.format_summary(report, tmp_path)
    _no_raw_escapes(summary)
    assert "FAILED" in summary and "boom \\x1b[2J" in summary
    _no_raw_escapes(capsys.readouterr().err)


def test_records_cap_a_plugins_long_description(hostile, tmp_path):
    units, _ = runner.plan(hostile, protocols=["coin"], methods=["heads"], smoke=True)
    report = runner.run_units(units, registry=hostile, out=tmp_path, progress=False)
    record = load_record(report.outcomes[0].path)
    assert len(record.method.description) == MAX_TEXT_CHARS
    assert record.method.description.endswith("…")


def test_ls_and_plugins_escape_plugin_text(hostile):
    cli = CliRunner()
    for args in (["ls", "methods"], ["plugins"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output
        _no_raw_escapes(result.output)
        assert "\\x1b[2J" in result.output


def test_plugin_warnings_escape_their_text(capsys):
    plugins._warn(f"plugin failed: {ESCAPES}\nsecond line")
    err = capsys.readouterr().err
    _no_raw_escapes(err)
    assert "second line" in err


def test_text_table_aligns_columns_under_a_rule():
    from kdbench.terminal import text_table

    lines = text_table(("name", "value"), [("kd", "91.85"), ("supervised", "9.1")])
    assert lines == [
        "name        value",
        "----------  -----",
        "kd          91.85",
        "supervised  9.1",
    ]
    numeric = text_table(("name", "value"), [("kd", "91.85"), ("sup", "9.1")], numeric=True)
    assert numeric == ["name  value", "----  -----", "kd    91.85", "sup     9.1"]
    assert text_table(("a", "b"), [("x", "y")], rule=False) == ["a  b", "x  y"]
