"""Render the site's pages with jinja2: index, protocol, fronts, method, run and not-ranked
pages.

Autoescaping is always on (plugin names, descriptions and every other record text are
untrusted); the only markup passed through unescaped is the SVG that :mod:`plots` builds
with every text escaped. Pages are yielded as ``(site path, bytes)`` in a fixed order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2

from kdbench.leaderboard.aggregate import Row, Table
from kdbench.leaderboard.baselines import BASELINE_METHOD, is_baseline
from kdbench.leaderboard.budgets import BudgetView, table_budgets
from kdbench.leaderboard.costs import DeviceCosts
from kdbench.leaderboard.devices import (
    DEVICE_PROTOCOL,
    fingerprint_id,
    fingerprint_summary,
    short_id,
)
from kdbench.leaderboard.downloads import records_json, tables_csv, tables_json
from kdbench.leaderboard.formatting import format_ci, format_number, signed_number, sort_key_text
from kdbench.leaderboard.fronts import Front, table_fronts
from kdbench.leaderboard.intake import REASONS, Intake, RecordFile, Unranked
from kdbench.leaderboard.links import anchor, raw_record, relative, safe_url
from kdbench.leaderboard.plots import tick_label
from kdbench.leaderboard.students import row_student
from kdbench.results import ComponentRef, Record

#: Protocols in the order readers expect them; any other protocol follows, alphabetically.
PROTOCOL_ORDER = ("distill", "fewshot", "oneclass", "segmentation", "device")
SUITE_ORDER = ("embedded", "standard")

CSV_PATH = "data/leaderboard.csv"
JSON_PATH = "data/leaderboard.json"
RECORDS_PATH = "data/records.json"


def _ordered(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


@functools.cache
def environment() -> jinja2.Environment:
    """The jinja2 environment: package templates, autoescape on, undefined names are errors.

    One per process, so each template is compiled once however many sites are built."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kdbench.leaderboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.filters["sortkey"] = sort_key_text
    env.filters["safe_url"] = safe_url
    env.filters["short_id"] = short_id
    env.filters["signed"] = signed_number
    env.filters["limit"] = tick_label
    env.filters["pretty_json"] = lambda data: json.dumps(
        data, indent=2, sort_keys=True, ensure_ascii=False, default=str
    )
    env.globals["format_ci"] = format_ci
    env.globals["reasons"] = REASONS
    env.globals["baseline_method"] = BASELINE_METHOD
    env.globals["is_baseline"] = is_baseline
    return env


def static_files() -> Iterator[tuple[str, bytes]]:
    """The vendored CSS and JavaScript, as ``static/<name>``."""
    folder = resources.files("kdbench.leaderboard") / "static"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.is_file() and not item.name.startswith("."):
            yield f"static/{item.name}", item.read_bytes()


@dataclass
class DeviceGroup:
    """What a fronts page shows for one device of a table (``device`` None: the figures
    that do not depend on the device): its figures and its budget view."""

    device: str | None
    summary: str | None
    anchor: str
    fronts: list[Front]
    budget: BudgetView | None = None


@dataclass
class TableView:
    """A table as the pages show it: the table plus its anchor, device, fronts and budgets."""

    table: Table
    anchor: str
    device_summary: str | None
    fronts: list[Front] = field(default_factory=list)
    budgets: list[BudgetView] = field(default_factory=list)

    @property
    def ranked_count(self) -> int:
        return sum(row.rank is not None for row in self.table.rows)

    @property
    def groups(self) -> list[DeviceGroup]:
        """The fronts and budget views grouped by device, device-independent ones first."""
        budgets = {view.device: view for view in self.budgets}
        devices = list(dict.fromkeys(front.device for front in self.fronts))
        out = []
        for device in devices:
            summary = None
            if device is not None:
                summary = next((f.summary for f in self.fronts if f.device == device), None)
            suffix = f"-{short_id(device)}" if device is not None else "-any-device"
            out.append(
                DeviceGroup(
                    device=device,
                    summary=summary,
                    anchor=anchor(f"{self.anchor}{suffix}"),
                    fronts=[f for f in self.fronts if f.device == device],
                    budget=budgets.get(device) if device is not None else None,
                )
            )
        return out

    @property
    def students(self) -> list[str]:
        """The students of the table's rows, sorted (what the Student filter offers)."""
        return sorted({row.student for row in self.table.rows if row.student is not None})

    @property
    def delta_columns(self) -> list[str]:
        """The headline metrics shown as a difference from the baseline with the same
        student; none when the table has no baseline row."""
        if not any(is_baseline(row) for row in self.table.rows):
            return []
        return [c.name for c in self.table.columns if c.headline]


@dataclass
class MethodResult:
    """One row of a method's page: where the method stands in one table."""

    view: TableView
    row: Row
    page: str


@dataclass
class MethodInfo:
    """Everything a method page shows about one method name."""

    name: str
    latest: Record
    versions: list[tuple[str, str]]
    components: list[tuple[str, ComponentRef]]
    results: list[MethodResult]
    unranked: list[Unranked]
    reference: bool


class SiteRenderer:
    """Renders every page of the site from the screened records and their tables."""

    def __init__(self, intake: Intake, tables: Sequence[Table], costs: DeviceCosts):
        self.intake = intake
        self.tables = list(tables)
        self.costs = costs
        self.env = environment()
        self.pages = intake.pages()
        self.run_pages = intake.run_pages(self.pages)
        valid = [f.record for f in intake.files if f.record is not None]
        newest = max((r.created_at for r in valid), default=None)
        self.stamp = newest.strftime("%Y-%m-%d %H:%M UTC") if newest else None
        self.views = self._table_views()
        self.unranked_by_path = {u.file.path: u for u in intake.unranked}
        self.protocol_pages = self._pages_of_views()

    # -- pages -----------------------------------------------------------------------------
    def files(self) -> Iterator[tuple[str, bytes]]:
        """Every file of the site, in a fixed order."""
        yield from static_files()
        yield "index.html", self._index()
        yield "methods.html", self._methods_index()
        yield "unranked.html", self._unranked_page()
        for (suite, protocol), views in self.protocol_pages.items():
            yield self._protocol_page(suite, protocol, views)
            if any(view.fronts for view in views):
                yield self._fronts_page(suite, protocol, views)
        for info in self.method_infos:
            yield self.pages.method(info.name), self._method_page(info)
        for file in self.intake.files:
            page = self.run_pages.get(file.path)
            if page is not None:
                yield page, self._run_page(file, page)
            if file.raw is not None:
                yield raw_record(file.path), file.raw
        yield CSV_PATH, tables_csv(self.tables)
        yield JSON_PATH, tables_json(self.tables, self.stamp)
        yield RECORDS_PATH, records_json(self.intake)

    def _render(self, template: str, path: str, **context: Any) -> bytes:
        url = functools.partial(relative, path)
        text = self.env.get_template(template).render(
            url=url, path=path, stamp=self.stamp, **context
        )
        return text.encode("utf-8")

    # -- tables ----------------------------------------------------------------------------
    def _table_views(self) -> list[TableView]:
        summaries: dict[str, str] = {}
        for file in self.intake.ranked:
            record = file.record
            if record is not None and record.device_fingerprint is not None:
                identity = fingerprint_id(record.device_fingerprint)
                summaries.setdefault(identity, fingerprint_summary(record.device_fingerprint))
        views = []
        for table in self.tables:
            fronts_page = self.pages.fronts(table.suite, table.protocol)
            href_of = {
                row.method: relative(fronts_page, self.pages.method(row.method))
                for row in table.rows
            }
            device = f"-{short_id(table.device)}" if table.device else ""
            views.append(
                TableView(
                    table=table,
                    anchor=anchor(f"{table.protocol}-v{table.version}{device}"),
                    device_summary=summaries.get(table.device) if table.device else None,
                    fronts=table_fronts(table, self.costs, href_of),
                    budgets=table_budgets(table, self.costs),
                )
            )
        return views

    def _pages_of_views(self) -> dict[tuple[str, str], list[TableView]]:
        pages: dict[tuple[str, str], list[TableView]] = {}
        suites = _ordered([v.table.suite for v in self.views], SUITE_ORDER)
        protocols = _ordered([v.table.protocol for v in self.views], PROTOCOL_ORDER)
        for protocol in protocols:
            for suite in suites:
                views = [
                    v for v in self.views if (v.table.suite, v.table.protocol) == (suite, protocol)
                ]
                if views:
                    pages[(suite, protocol)] = views
        return pages

    def _unranked_of(self, protocol: str, suite: str | None = None) -> list[Unranked]:
        out = []
        for item in self.intake.unranked:
            record = item.file.record
            if record is None or record.protocol.name != protocol:
                continue
            if suite is None or record.suite == suite:
                out.append(item)
        return out

    # -- index and lists -------------------------------------------------------------------
    def _index(self) -> bytes:
        pages = self.protocol_pages
        names = [v.table.protocol for v in self.views] + [
            u.file.record.protocol.name for u in self.intake.unranked if u.file.record
        ]
        cards = []
        for protocol in _ordered(names, PROTOCOL_ORDER):
            entries = [
                (self.pages.protocol(suite, protocol), views)
                for (suite, name), views in pages.items()
                if name == protocol
            ]
            cards.append(
                {
                    "protocol": protocol,
                    "entries": entries,
                    "version": self.intake.current_versions.get(protocol),
                    "unranked": len(self._unranked_of(protocol)),
                }
            )
        return self._render(
            "index.html.j2",
            "index.html",
            cards=cards,
            total=len(self.intake.files),
            ranked=len(self.intake.ranked),
            unranked_counts=self.intake.reason_counts(),
            method_page=self.pages.method,
            fronts_page=self.pages.fronts,
            downloads={"csv": CSV_PATH, "json": JSON_PATH, "records": RECORDS_PATH},
        )

    def _methods_index(self) -> bytes:
        return self._render(
            "methods.html.j2",
            "methods.html",
            methods=self.method_infos,
            method_page=self.pages.method,
        )

    def _unranked_page(self) -> bytes:
        groups = {
            reason: [u for u in self.intake.unranked if u.reason == reason]
            for reason in self.intake.reason_counts()
        }
        return self._render(
            "unranked.html.j2",
            "unranked.html",
            groups=groups,
            run_pages=self.run_pages,
            raw_record=raw_record,
        )

    # -- protocol pages --------------------------------------------------------------------
    def _protocol_page(
        self, suite: str, protocol: str, views: list[TableView]
    ) -> tuple[str, bytes]:
        page = self.pages.protocol(suite, protocol)
        unranked = self._unranked_of(protocol, suite)
        counts: dict[str, int] = {}
        for item in unranked:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        is_device = protocol == DEVICE_PROTOCOL
        return page, self._render(
            "protocol.html.j2",
            page,
            suite=suite,
            protocol=protocol,
            views=views,
            is_device=is_device,
            has_device_records=bool(self.costs.suite_devices(suite)),
            fronts_page=self.pages.fronts(suite, protocol),
            unranked_counts=dict(sorted(counts.items(), key=lambda kv: list(REASONS).index(kv[0]))),
            run_pages=self.run_pages,
            method_page=self.pages.method,
        )

    def _fronts_page(self, suite: str, protocol: str, views: list[TableView]) -> tuple[str, bytes]:
        page = self.pages.fronts(suite, protocol)
        return page, self._render(
            "fronts.html.j2",
            page,
            suite=suite,
            protocol=protocol,
            views=[view for view in views if view.fronts],
            protocol_page=self.pages.protocol(suite, protocol),
            method_page=self.pages.method,
        )

    # -- method pages ----------------------------------------------------------------------
    @functools.cached_property
    def method_infos(self) -> list[MethodInfo]:
        """One entry per method name among the valid records, ranked or not, sorted."""
        by_name: dict[str, list[RecordFile]] = {}
        for file in self.intake.files:
            if file.record is not None:
                by_name.setdefault(file.record.method.name, []).append(file)
        ranked_paths = {f.path for f in self.intake.ranked}
        infos = []
        for name in sorted(by_name):
            files = by_name[name]
            records = [f.record for f in files if f.record is not None]
            preferred = [f.record for f in files if f.path in ranked_paths and f.record] or records
            latest = max(preferred, key=lambda r: (r.created_at, r.method.version, r.run_id))
            versions = sorted({(r.method.version, r.method.distribution) for r in records})
            components = sorted(
                {
                    (role, c.name, c.distribution, c.version): (role, c)
                    for r in records
                    for role, c in r.components.items()
                }.items()
            )
            results = []
            for view in self.views:
                for row in view.table.rows:
                    if row.method == name:
                        page = self.pages.protocol(view.table.suite, view.table.protocol)
                        results.append(MethodResult(view, row, page))
            infos.append(
                MethodInfo(
                    name=name,
                    latest=latest,
                    versions=versions,
                    components=[pair for _, pair in components],
                    results=results,
                    unranked=[
                        self.unranked_by_path[f.path]
                        for f in files
                        if f.path in self.unranked_by_path
                    ],
                    reference=any(r.method.reference for r in records),
                )
            )
        return infos

    def _method_page(self, info: MethodInfo) -> bytes:
        page = self.pages.method(info.name)
        return self._render(
            "method.html.j2",
            page,
            info=info,
            protocol_page=self.pages.protocol,
            run_pages=self.run_pages,
        )

    # -- run pages -------------------------------------------------------------------------
    def _run_page(self, file: RecordFile, page: str) -> bytes:
        record = file.record
        assert record is not None
        fingerprint = record.device_fingerprint
        return self._render(
            "run.html.j2",
            page,
            record=record,
            student=row_student(record),
            file=file,
            unranked=self.unranked_by_path.get(file.path),
            raw=raw_record(file.path),
            method_href=self.pages.method(record.method.name),
            protocol_href=self.pages.protocol(record.suite, record.protocol.name),
            has_protocol_page=(record.suite, record.protocol.name) in self.protocol_pages,
            device_id=fingerprint_id(fingerprint) if fingerprint is not None else None,
            device_summary=fingerprint_summary(fingerprint) if fingerprint is not None else None,
        )
