"""The phase clock: where a unit's time goes (``cost.phases``, ``kdbench run --profile``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.phases import PHASES, PhaseClock, format_profile, in_phase, phase, timing
from kdbench.record_files import load_record


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_phases_nest_exclusively_and_add_up():
    t = FakeTime()
    clock = PhaseClock(t)
    with timing(clock):
        t.now += 1  # other
        with phase("student"):
            t.now += 2
            with phase("teacher"):  # explicit inside explicit: the inner one counts
                t.now += 3
            t.now += 4
            with phase("evaluation", weak=True):  # a default: the explicit phase keeps it
                t.now += 5
        with phase("evaluation", weak=True):  # nothing explicit running: it counts
            t.now += 6
            with phase("data"):
                t.now += 7
    seconds = clock.seconds()
    assert seconds == {
        "data": 7,
        "teacher": 3,
        "student": 11,
        "evaluation": 6,
        "writing": 0,
        "other": 1,
    }
    assert sum(seconds.values()) == t.now


def test_markers_do_nothing_without_a_clock_and_names_are_checked():
    @in_phase("data")
    def load(x):
        return x + 1

    assert load(1) == 2
    with phase("teacher"):
        pass
    clock = PhaseClock()
    with pytest.raises(ValueError, match="unknown phase 'training'"), clock.phase("training"):
        pass


def test_the_profile_table_sums_units_and_shows_records_without_phases():
    text = format_profile(
        [
            ("fewshot/kd/seed0", 10.0, {"data": 1.0, "student": 6.0, "evaluation": 3.0}),
            ("distill/kd/seed0", 30.0, {"teacher": 10.0, "student": 20.0}),
            ("old/record", 5.0, None),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["unit", "total", "s", *PHASES]
    assert "–" in lines[4]
    last = lines[-1]
    assert last.startswith("all units") and "40.0" in last
    assert "26.0 (65%)" in last and "10.0 (25%)" in last


@pytest.mark.parametrize(
    "protocol,expected",
    [
        ("fewshot", {"data", "student", "evaluation"}),
        ("distill", {"data", "teacher", "student", "evaluation"}),
    ],
)
def test_a_smoke_unit_records_its_phases_and_run_profile_prints_them(
    world_weights, tmp_path, protocol, expected
):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-p",
            protocol,
            "-m",
            "kd",
            "--smoke",
            "--device",
            "cpu",
            "--no-progress",
            "-o",
            str(out),
            "--profile",
        ],
    )
    assert result.exit_code == 0, result.output
    (path,) = out.rglob("*.json")
    cost = load_record(path).cost
    assert cost.phases is not None and set(cost.phases) == set(PHASES)
    assert sum(cost.phases.values()) == pytest.approx(cost.total_seconds, abs=0.01)
    spent = {name for name, seconds in cost.phases.items() if seconds > 0}
    assert expected <= spent, cost.phases
    assert f"{protocol}/kd/seed0" in result.output and "all units" in result.output


def test_a_record_naming_an_unknown_phase_is_refused():
    from pydantic import ValidationError

    from kdbench.results import Cost

    assert Cost(total_seconds=1.0, device="cpu").phases is None  # older records: no split
    Cost(total_seconds=1.0, device="cpu", phases={"data": 0.5, "other": 0.5})
    with pytest.raises(ValidationError, match="unknown phases"):
        Cost(total_seconds=1.0, device="cpu", phases={"training": 1.0})
    with pytest.raises(ValidationError):
        Cost(total_seconds=1.0, device="cpu", phases={"data": -1.0})
