"""``kdbench rerun RECORD``: run a record's unit again and print how its metrics moved.

The unit is rebuilt from what the record says: its protocol and method (by name, from the
installed plugins), its stored ``config`` (so its ``config_hash`` is the same), seed, suite
and smoke flag. A record of another protocol version cannot be re-run: the installed
protocol would measure something else. A method whose installed version differs from the
record's runs with a warning, since that is often the question being asked.

By default the unit runs with an empty cache of its own (``fresh_cache``), so nothing a
previous run left (a trained student, frozen features) is reused: the re-run recomputes
every stage. ``fresh_cache=False`` reuses the shared cache, which is faster and checks only
the stages that are not cached.

Each metric is printed with the stored value, the new one, their difference and a verdict:
``identical`` (bit for bit), ``within CI`` (inside the record's own 95% interval) or
``outside CI``. ``docs/results.md`` says which differences to expect and where they come
from.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdbench.errors import ConfigError
from kdbench.record_files import load_record
from kdbench.results import Record
from kdbench.terminal import text_table


@dataclass
class MetricChange:
    name: str
    stored: float | None
    rerun: float | None
    ci95: float | None
    unit: str | None = None

    @property
    def diff(self) -> float | None:
        if self.stored is None or self.rerun is None:
            return None
        return self.rerun - self.stored

    @property
    def verdict(self) -> str:
        if self.stored is None and self.rerun is None:
            return "null in both"
        if self.diff is None:
            return "null in one"
        if self.unit == "s" or self.name.endswith("_seconds"):
            return "a timing: not expected to repeat"
        if self.rerun == self.stored:
            return "identical"
        if self.ci95 is not None and abs(self.diff) <= self.ci95:
            return "within CI"
        return "outside CI" if self.ci95 is not None else "differs (no CI)"


@dataclass
class Rerun:
    stored: Record
    new: Record
    changes: list[MetricChange]
    warnings: list[str]


def rerun(
    path: Path,
    *,
    out: Path | None = None,
    device: str = "auto",
    fresh_cache: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> Rerun:
    """Run the unit of the record at ``path`` again (its record written under ``out``, a
    temporary folder by default) and compare the metrics. ``progress``: bars on (True), off
    (False) or on a terminal only (None)."""
    import os

    from kdbench.leaderboard.students import row_student
    from kdbench.planning import Unit
    from kdbench.plugins import get_registry
    from kdbench.protocols.base import load_protocol
    from kdbench.record_files import write_record
    from kdbench.runner import run_unit
    from kdbench.runtime import make_progress, resolve_device

    stored = load_record(path)
    if stored.status != "ok":
        raise ConfigError(f"{path}: the unit failed ({stored.error}); only finished records rerun")
    registry = get_registry()
    protocol = registry.get("protocols", stored.protocol.name)
    method = registry.get("methods", stored.method.name)
    proto = load_protocol(protocol)
    if int(proto.version) != stored.protocol.version:
        raise ConfigError(
            f"{path}: recorded with {stored.protocol.name} version {stored.protocol.version}, "
            f"but the installed protocol is version {proto.version}; install the kdbench that "
            f"made it ({stored.kdbench.version}, commit {stored.kdbench.git_sha or 'unknown'})"
        )
    warnings = []
    if method.version != stored.method.version:
        warnings.append(
            f"method {method.name!r} is version {method.version} here, "
            f"{stored.method.version} in the record"
        )
    student = row_student(stored)
    default = proto.student_of(proto.default_config(stored.suite, stored.smoke))
    own = student if default and student and student != default["name"] else None
    unit = Unit(
        protocol,
        method,
        stored.seed,
        stored.suite,
        stored.smoke,
        dict(stored.protocol.config),
        own,
    )
    device = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="kdbench-rerun-") as scratch:
        folder = Path(out) if out is not None else Path(scratch) / "records"
        saved = os.environ.get("KDBENCH_CACHE")
        if fresh_cache:
            os.environ["KDBENCH_CACHE"] = str(Path(scratch) / "cache")
        log(
            f"re-running {unit.label} from {path}" + (" with an empty cache" if fresh_cache else "")
        )
        try:
            new = run_unit(
                unit,
                out=folder,
                registry=registry,
                device=device,
                progress=make_progress(progress),
                log=log,
            )
        finally:
            if fresh_cache:
                if saved is None:
                    os.environ.pop("KDBENCH_CACHE", None)
                else:
                    os.environ["KDBENCH_CACHE"] = saved
        if new.status != "ok":
            raise ConfigError(f"the re-run failed: {new.error}")
        if out is not None:
            write_record(new, unit.record_path(folder))
    changes = []
    for metric in stored.metrics:
        try:
            value = new.metric(metric.name).value
        except KeyError:
            value = None
        changes.append(MetricChange(metric.name, metric.value, value, metric.ci95, metric.unit))
    return Rerun(stored, new, changes, warnings)


def format_rerun(result: Rerun) -> str:
    def num(x: float | None) -> str:
        if x is None:
            return "null"
        return f"{x:.6g}" if math.isfinite(x) else str(x)

    s, n = result.stored, result.new
    lines = [
        f"{s.protocol.name} / {s.method.name} / seed {s.seed}: stored record from kdbench "
        f"{s.kdbench.version} (torch {s.environment.torch}), re-run with kdbench "
        f"{n.kdbench.version} (torch {n.environment.torch})",
        *(f"warning: {w}" for w in result.warnings),
        "",
    ]
    rows = []
    for c in result.changes:
        diff = "" if c.diff is None else f"{c.diff:+.6g}"
        rows.append((c.name, num(c.stored), num(c.rerun), diff, c.verdict))
    lines += text_table(("metric", "stored", "re-run", "re-run - stored", "verdict"), rows)
    return "\n".join(lines)
