"""Render the site's pages: the overview (index), protocol, fronts, method, run,
suites-and-submitting (about) and not-ranked pages, from the screened records and their
tables, through the environment of :mod:`templating` and the page objects of :mod:`views`.

Autoescaping is always on (plugin names, descriptions and every other record text are
untrusted); the only markup passed through unescaped is the SVG that :mod:`plots` builds
with every text escaped. Pages are yielded as ``(site path, bytes)`` in a fixed order.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from markupsafe import Markup

from kdbench import __version__
from kdbench.leaderboard.acceptance import MIN_SEEDS, self_reported
from kdbench.leaderboard.aggregate import Row, Table
from kdbench.leaderboard.budgets import table_budgets
from kdbench.leaderboard.catalog import Catalog
from kdbench.leaderboard.costs import DeviceCosts
from kdbench.leaderboard.devices import (
    DEVICE_PROTOCOL,
    fingerprint_id,
    fingerprint_summary,
    short_id,
)
from kdbench.leaderboard.dots import (
    PANEL_LABEL_WIDTH,
    PANEL_PLOT_WIDTH,
    DotRow,
    dot_whisker_svg,
)
from kdbench.leaderboard.downloads import records_json, tables_csv, tables_json
from kdbench.leaderboard.fronts import table_fronts
from kdbench.leaderboard.intake import REASONS, Intake, RecordFile, Unranked
from kdbench.leaderboard.links import anchor, raw_record, relative
from kdbench.leaderboard.overview import Overview, build_overview
from kdbench.leaderboard.run_pages import run_page_renderer
from kdbench.leaderboard.students import row_student
from kdbench.leaderboard.templating import ABOUT_PATH, environment, pretty_json, static_files
from kdbench.leaderboard.views import (
    MethodInfo,
    MethodPanel,
    MethodResult,
    TableView,
)
from kdbench.results import Record

#: Protocols in the order readers expect them; any other protocol follows, alphabetically.
PROTOCOL_ORDER = ("distill", "fewshot", "oneclass", "segmentation", "device")
SUITE_ORDER = ("embedded", "standard")

CSV_PATH = "data/leaderboard.csv"
JSON_PATH = "data/leaderboard.json"
RECORDS_PATH = "data/records.json"


def _ordered(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


class SiteRenderer:
    """Renders every page of the site from the screened records and their tables."""

    def __init__(
        self,
        intake: Intake,
        tables: Sequence[Table],
        costs: DeviceCosts,
        catalog: Catalog | None = None,
        min_seeds: int = MIN_SEEDS,
    ):
        self.intake = intake
        self.tables = list(tables)
        self.costs = costs
        self.catalog = catalog or Catalog()
        self.env = environment()
        self.env.globals["min_seeds"] = min_seeds
        self.pages = intake.pages()
        self.run_pages = intake.run_pages(self.pages)
        valid = [f.record for f in intake.files if f.record is not None]
        newest = max((r.created_at for r in valid), default=None)
        self.stamp = newest.strftime("%Y-%m-%d %H:%M UTC") if newest else None
        self.views = self._table_views()
        self.unranked_by_path = {u.file.path: u for u in intake.unranked}
        self.protocol_pages = self._pages_of_views()
        self._configs: dict[str, str] = {}  # config_hash -> the config as shown

    # -- pages -----------------------------------------------------------------------------
    def files(self) -> Iterator[tuple[str, bytes]]:
        """Every file of the site, in a fixed order. Run pages (one per record) are rendered
        by worker processes where :mod:`kdbench.leaderboard.run_pages` allows, while this
        process renders the others; the bytes are the same either way."""
        runs = [(f, self.run_pages[f.path]) for f in self.intake.files if f.path in self.run_pages]
        with run_page_renderer(self, runs) as rendered:
            yield from self._files(rendered)

    def _files(self, run_pages: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
        yield from static_files()
        yield "index.html", self._index()
        yield ABOUT_PATH, self._about()
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
                yield page, next(run_pages)
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
        variants: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for table in self.tables:
            variants.setdefault((table.suite, table.protocol), set()).add(
                (table.dataset, table.teacher)
            )
        views = []
        for table in self.tables:
            several = len(variants[(table.suite, table.protocol)]) > 1
            variant = (
                " · ".join(x for x in (table.dataset_label, table.teacher_label) if x)
                if several
                else None
            )
            fronts_page = self.pages.fronts(table.suite, table.protocol)
            href_of = {
                row.method: relative(fronts_page, self.pages.method(row.method))
                for row in table.rows
            }
            device = f"-{short_id(table.device)}" if table.device else ""
            if table.quantised:  # fp32 tables keep their anchors
                device = f"-{table.precision}{device}"
            if several:  # one anchor per dataset and teacher, kept short and stable
                digest = hashlib.sha256(f"{table.dataset}\n{table.teacher}".encode()).hexdigest()
                device = f"-{table.dataset.split(':')[0].split('@')[0]}-{digest[:8]}{device}"
            metrics = {
                c.name: self.catalog.metric(table.protocol, c.name, c.unit, c.higher_is_better)
                for c in table.columns
            }
            page = self.pages.protocol(table.suite, table.protocol)
            views.append(
                TableView(
                    table=table,
                    anchor=anchor(f"{table.protocol}-v{table.version}{device}"),
                    device_summary=summaries.get(table.device) if table.device else None,
                    variant=variant,
                    fronts=table_fronts(table, self.costs, href_of),
                    budgets=table_budgets(table, self.costs),
                    metrics=metrics,
                    chart=self._chart(table, table.rows, page),
                )
            )
        return views

    def _chart(
        self,
        table: Table,
        rows: Sequence[Row],
        page: str,
        highlight: str | None = None,
        context: Sequence[float] = (),
        panel: bool = False,
    ) -> Markup | None:
        """The dot-and-whisker chart of ``rows`` of ``table`` (its headline), drawn on
        ``page``; the rows of method ``highlight`` stand out."""
        column = table.sort_column
        if column is None:
            return None
        dots = []
        for row in rows:
            cell = row.cells.get(column.name)
            seeds = row.per_seed.get(column.name, {})
            dots.append(
                DotRow(
                    label=row.label,
                    mean=cell.mean if cell else None,
                    ci95=None if cell is None or cell.exact else cell.ci95,
                    seeds=tuple(seeds.values()),
                    reference=row.reference,
                    highlight=row.method == highlight,
                    href=relative(page, self.pages.method(row.method)),
                )
            )
        unit = f" ({column.unit})" if column.unit else ""
        where = f" · {self.costs.devices.get(table.device, table.device)}" if table.device else ""
        return dot_whisker_svg(
            dots,
            title=f"{table.key} · {table.suite}{where}: {column.name}{unit}, mean, 95% CI "
            "and each seed",
            x_label=f"{column.name}{unit}",
            higher_is_better=column.higher_is_better,
            context=context,
            **({"label_width": PANEL_LABEL_WIDTH, "plot_width": PANEL_PLOT_WIDTH} if panel else {}),
        )

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
            about = self.catalog.about(protocol)
            cards.append(
                {
                    "protocol": protocol,
                    "entries": entries,
                    "version": self.intake.current_versions.get(protocol),
                    "unranked": len(self._unranked_of(protocol)),
                    "description": about.description if about else None,
                }
            )
        return self._render(
            "index.html.j2",
            "index.html",
            cards=cards,
            overviews=self._overviews(),
            protocol_page=self.pages.protocol,
            total=len(self.intake.files),
            ranked=len(self.intake.ranked),
            unranked_counts=self.intake.reason_counts(),
            method_page=self.pages.method,
            fronts_page=self.pages.fronts,
            downloads={"csv": CSV_PATH, "json": JSON_PATH, "records": RECORDS_PATH},
        )

    def _overviews(self) -> list[tuple[Overview, list[TableView]]]:
        """The overview of each suite, with the views of its columns."""
        out = []
        suites = _ordered([v.table.suite for v in self.views], SUITE_ORDER)
        for suite in suites:
            views = [
                view
                for (page_suite, _), page_views in self.protocol_pages.items()
                if page_suite == suite
                for view in page_views
            ]
            overview = build_overview(suite, [v.table for v in views], self.catalog)
            out.append((overview, views))
        return out

    def _about(self) -> bytes:
        """The suites, each protocol's data and models, what is accepted and how to cite."""
        names = _ordered(
            [*self.catalog.protocol_names, *(v.table.protocol for v in self.views)],
            PROTOCOL_ORDER,
        )
        protocols = [(name, self.catalog.about(name)) for name in names]
        suites = _ordered([*SUITE_ORDER, *(v.table.suite for v in self.views)], SUITE_ORDER)
        return self._render(
            "about.html.j2",
            ABOUT_PATH,
            suites=suites,
            protocols=protocols,
            protocol_pages={key: self.pages.protocol(*key) for key in self.protocol_pages},
            version=__version__,
            versions=self.intake.current_versions,
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
            about=self.catalog.about(protocol),
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
            panels = []
            for view in self.views:
                mine = view.rows_by_method.get(name)
                if not mine:
                    continue
                page = self.pages.protocol(view.table.suite, view.table.protocol)
                results += [MethodResult(view, row, page) for row in mine]
                chart = self._method_chart(name, view, mine)
                if chart is not None:
                    panels.append(MethodPanel(view, page, chart))
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
                    panels=panels,
                )
            )
        return infos

    def _method_chart(self, name: str, view: TableView, mine: list[Row]) -> Markup | None:
        """Method ``name``'s rows of one table, with the baselines of their students and
        the reference rows for context, on the scale of the whole table."""
        students = {row.student for row in mine}
        context = [r for r in view.context_rows if r.reference or r.student in students]
        shown = sorted({id(r): r for r in (*mine, *context)}.values(), key=view.position)
        return self._chart(
            view.table, shown, self.pages.method(name), name, view.headline_values, panel=True
        )

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
    def _config_text(self, record: Record) -> str:
        """The record's protocol config as JSON, written once per config: records are read
        only when their ``config_hash`` matches their config, and most share one."""
        key = record.protocol.config_hash
        if key not in self._configs:
            self._configs[key] = pretty_json(record.protocol.config)
        return self._configs[key]

    def _run_page(self, file: RecordFile, page: str) -> bytes:
        record = file.record
        assert record is not None
        fingerprint = record.device_fingerprint
        return self._render(
            "run.html.j2",
            page,
            record=record,
            student=row_student(record),
            self_reported=self_reported(record),
            config_text=self._config_text(record),
            file=file,
            unranked=self.unranked_by_path.get(file.path),
            raw=raw_record(file.path),
            method_href=self.pages.method(record.method.name),
            protocol_href=self.pages.protocol(record.suite, record.protocol.name),
            has_protocol_page=(record.suite, record.protocol.name) in self.protocol_pages,
            device_id=fingerprint_id(fingerprint) if fingerprint is not None else None,
            device_summary=fingerprint_summary(fingerprint) if fingerprint is not None else None,
        )
