"""Fuzzing records: valid ones, and ones mutated in their structure and in every field.

Whatever a records folder holds, ``validate`` and ``leaderboard build`` never raise: every bad
file is a reported problem naming the file and the field; both commands agree on which files
are invalid; a file ``validate`` accepts always builds; nothing invalid, failed or smoke is
ranked; and the build writes nothing outside ``--out``.

The default budget is small enough for CI. ``KDBENCH_FUZZ=long`` runs at least 1,000 folders
(``KDBENCH_FUZZ=<n>`` runs n), for local runs; the counts are printed with ``-s``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.errors import RecordError
from kdbench.leaderboard.build import build_site, check_site
from kdbench.record_files import load_record, validate_paths
from kdbench.results import MAX_MAGNITUDE, MAX_NAME_CHARS
from tests.leaderboard.records import CPU, GPU, make_record, metric

_BUDGET = os.environ.get("KDBENCH_FUZZ", "")
LONG = _BUDGET == "long" or _BUDGET.isdigit()
#: Folders built per test: small by default, at least 1,000 with KDBENCH_FUZZ=long.
BUILDS = int(_BUDGET) if _BUDGET.isdigit() else (1000 if LONG else 40)
#: Single files validated per test (cheap, so more of them).
VALIDATIONS = BUILDS * 3 if LONG else 200

FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=not LONG,  # CI runs the same examples every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TALLY: Counter[str] = Counter()

# -- values ------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "kd",
    "KD",
    "MyKD",
    "mykd-10cf0255",
    "=cmd|' /C calc'!A0",
    "+1",
    "-x",
    "@SUM(A1)",
    "\tlead",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "/etc/passwd",
    "a b",
    "",
    ".",
    "..",
    "\x1b[2J\x1b]0;t\x07",
    "\u202eevil",
    "名前",
    "x" * MAX_NAME_CHARS,
    "line\nbreak",
]
SURROGATES = ["\ud800", "\udfff", "a\udc80b"]

names = st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=24))
finite = st.floats(
    min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE, allow_nan=False, allow_infinity=False
)
timezones = st.sampled_from(
    [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-12))]
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(SURROGATES + HOSTILE_NAMES + ["55.5", "false", "yes", "2026-01-01"]),
)
valid_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        names,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
free_dicts = st.dictionaries(
    st.one_of(names, st.sampled_from(["id", "summary", "gpu"])), valid_json, max_size=4
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def metrics(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        value = draw(st.one_of(st.none(), finite))
        out.append(
            metric(
                f"m{i}" if draw(st.booleans()) else draw(names),
                value,
                higher_is_better=draw(st.booleans()),
                unit=draw(st.one_of(st.none(), names)),
                headline=i == 0 or draw(st.booleans()),
                ci95=draw(st.one_of(st.none(), st.floats(0, MAX_MAGNITUDE))),
                reason=draw(names) or "not measured" if value is None else None,
            )
        )
        if draw(st.booleans()):
            out[-1]["per_seed"] = draw(st.lists(st.one_of(st.none(), finite), max_size=3))
    unique = {m["name"]: m for m in out}
    return list(unique.values())


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    protocol = draw(st.sampled_from(["fewshot", "toy", "device", "=formula", "Toy"]))
    fingerprint = draw(st.sampled_from([CPU, GPU, {"id": draw(names) or "x"}, draw(free_dicts)]))
    when = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=timezones))
    record = make_record(
        protocol=protocol,
        version=draw(st.integers(1, 3)),
        suite=draw(st.sampled_from(["embedded", "standard", "Embedded", "x y"])),
        method=draw(names),
        method_version=draw(st.sampled_from(["0.1.0", "=1+1", "2"])),
        seed=draw(st.integers(0, 4)),
        reference=draw(st.booleans()),
        smoke=draw(st.booleans()),
        status=draw(st.sampled_from(["ok", "ok", "ok", "failed"])),
        subject=draw(st.sampled_from(["shapes-vit-tiny", "shapes-vit-base", None])),
        fingerprint=fingerprint if protocol == "device" else None,
        run_id=draw(st.one_of(st.none(), names.filter(bool))),
        created_at=when.isoformat(),
        description=draw(st.one_of(st.none(), names)),
        url=draw(st.sampled_from([None, "https://example.org/?a=1&b=2"])),
        config=draw(st.one_of(st.none(), free_dicts)),
    )
    record["statistics"] = draw(free_dicts)
    record["draws"] = draw(st.dictionaries(names, names, max_size=2))
    record["components"].update(
        draw(
            st.dictionaries(
                names,
                st.fixed_dictionaries(
                    {"name": names, "distribution": names, "version": names},
                    optional={"description": names, "options": free_dicts},
                ),
                max_size=2,
            )
        )
    )
    if record["status"] == "ok":
        record["metrics"] = draw(st.one_of(st.just(record["metrics"]), metrics()))
    if protocol == "device" and record["status"] == "ok":
        for m in record["metrics"]:
            if draw(st.booleans()) and m["value"] is not None:
                m["value"] = abs(m["value"])
    record["notes"] = draw(st.lists(names, max_size=2))
    return record


# -- mutations ---------------------------------------------------------------------------------


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


def _set(data: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(what was done, the file's bytes): a valid record changed in one place."""
    record = draw(valid_records())
    kind = draw(
        st.sampled_from(
            ["field", "field", "field", "delete", "extra", "text", "bytes", "encoding", "depth"]
        )
    )
    if kind in {"field", "delete", "extra"}:
        path = draw(st.sampled_from(_paths(record)))
        if kind == "field":
            record = _set(record, path, draw(json_values))
        elif kind == "delete" and path:
            record = _set(record, path, None, delete=True)
        else:
            target = record
            for part in path:
                target = target[part]
            if isinstance(target, dict):
                target[draw(st.text(max_size=8))] = draw(json_values)
        text = json.dumps(record, allow_nan=True, ensure_ascii=draw(st.booleans()))
        return f"{kind}:{'.'.join(map(str, path))[:40]}", text.encode("utf-8", "surrogatepass")
    text = json.dumps(record)
    if kind == "text":
        choice = draw(
            st.sampled_from(
                [
                    text[:-1] + ', "status": "ok"}',  # a repeated key
                    text[:-1] + ', "smoke": false}',
                    text.replace('"value": ', '"value": "', 1),
                    text.replace("true", '"true"', 1),
                    text.replace("false", "0", 1),
                    text.replace('"seed": ', '"seed": 1e400, "x": ', 1),
                    text.replace("Z", "", 1),
                    text.replace("+00:00", "", 1),
                    text[: draw(st.integers(0, len(text)))],
                    "[" + text + "]",
                    text.replace('"', "'", 3),
                ]
            )
        )
        return "text", choice.encode("utf-8")
    if kind == "bytes":
        raw = bytearray(text.encode())
        at = draw(st.integers(0, len(raw)))
        raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        return "bytes", bytes(raw)
    if kind == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-8-sig", "latin-1", "utf-32"]))
        return f"encoding:{encoding}", text.replace("kdbench", "kdbénch").encode(encoding)
    depth = draw(st.sampled_from([10, 63, 70, 500, 5000]))
    nested = "[" * depth + "1" + "]" * depth
    return f"depth:{depth}", text.replace('"episodes": 100', f'"episodes": {nested}').encode()


# -- the properties ----------------------------------------------------------------------------


def _write(folder: Path, files: list[tuple[str, bytes]]) -> None:
    for i, (_, raw) in enumerate(files):
        path = folder / f"s{i % 2}" / f"r{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)


def check_folder(folder: Path, out: Path) -> tuple[set[str], set[str]]:
    """Validate and build ``folder``; assert every property. Returns (accepted, ranked)."""
    around = sorted(os.listdir(out.parent))
    checked, problems = validate_paths([folder])
    for problem in problems:
        assert problem.field and problem.message, problem
        assert Path(problem.path).is_relative_to(folder), problem
        str(problem).encode("utf-8")  # printable without an encoding error
    rejected = {Path(p.path).relative_to(folder).as_posix() for p in problems}
    report = build_site(folder, out, protocol_versions={})
    files = {f.path for f in report.intake.files}
    invalid = {u.file.path for u in report.intake.unranked if u.reason == "invalid"}
    assert invalid == rejected, (invalid, rejected)
    assert checked == len(files)
    accepted = files - invalid
    for file in report.intake.ranked:
        record = load_record(folder / file.path)  # never an invalid record ranked
        assert record.status == "ok" and not record.smoke
    assert check_site(folder, out, protocol_versions={}).up_to_date
    assert sorted(os.listdir(out.parent)) == sorted({*around, out.name})  # nothing beside
    return accepted, {f.path for f in report.intake.ranked}


@settings(FUZZ, max_examples=BUILDS)
@given(st.lists(valid_records(), min_size=1, max_size=4))
def test_valid_records_validate_and_build(records):
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "records", Path(tmp) / "site"
        _write(folder, [("valid", json.dumps(r).encode()) for r in records])
        accepted, ranked = check_folder(folder, out)
    assert len(accepted) == len(records)  # the generator makes valid records
    TALLY["valid records built"] += len(records)
    TALLY["ranked"] += len(ranked)
    TALLY["folders built (valid)"] += 1


@settings(FUZZ, max_examples=BUILDS)
@given(st.lists(valid_records(), max_size=2), st.lists(mutated_files(), min_size=1, max_size=3))
def test_mutated_records_are_reported_and_the_rest_builds(records, mutated):
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "records", Path(tmp) / "site"
        files = [("valid", json.dumps(r).encode()) for r in records] + mutated
        _write(folder, files)
        accepted, _ = check_folder(folder, out)
        # a second build over the first (with its manifest) holds the same properties
        check_folder(folder, out)
    TALLY["mutated records built"] += len(mutated)
    TALLY["mutated records accepted"] += len(accepted) - len(records)
    TALLY["folders built (mutated)"] += 1
    for what, _ in mutated:
        TALLY[f"mutation {what.split(':')[0]}"] += 1


@settings(FUZZ, max_examples=VALIDATIONS)
@given(mutated_files())
def test_a_mutated_file_is_accepted_or_refused_naming_a_field(mutated):
    _, raw = mutated
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_bytes(raw)
        try:
            load_record(path)
        except RecordError as error:
            assert error.problems and all(p.field and p.path == path for p in error.problems)
            TALLY["single files refused"] += 1
        else:
            TALLY["single files accepted"] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    if TALLY:
        print("\nfuzz counts:", dict(sorted(TALLY.items())))
