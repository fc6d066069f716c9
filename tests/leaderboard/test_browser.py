"""The built site in a real browser: the system Chromium driven by Playwright, from disk.

Skipped when no Chromium is installed (CI installs the distribution's package). Set
``KDBENCH_SCREENSHOTS`` to a folder to keep the screenshot; otherwise it stays in the test's
temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kdbench.leaderboard.budgets import table_budgets
from kdbench.leaderboard.costs import device_costs
from kdbench.leaderboard.formatting import format_number
from tests.leaderboard.conftest import PAYLOAD

pytestmark = pytest.mark.browser

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str | None:
    candidates = [os.environ.get("KDBENCH_CHROMIUM"), "chromium", "chromium-browser"]
    for candidate in candidates:
        if candidate:
            found = shutil.which(candidate)
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium binary found (apt-get install chromium, or set KDBENCH_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield launched
        launched.close()


def _column(page, table: str, index: int) -> list[str]:
    """The visible rows' text in column ``index``, without the numbers of blank-cell notes."""
    return page.eval_on_selector_all(
        f"#{table} tbody tr:not([hidden]):not(.group-head)",
        f"""rows => rows.map(r => {{
            const cell = r.cells[{index}].cloneNode(true);
            cell.querySelectorAll(".note-ref").forEach(n => n.remove());
            return cell.textContent.trim();
        }})""",
    )


def test_sort_and_filter_a_protocol_table_from_disk(browser, built, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(5000)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))

    page.goto((built.out / "index.html").resolve().as_uri())
    card = page.locator(".card", has=page.locator("h2", has_text="fewshot"))
    card.get_by_role("link", name="embedded", exact=True).click()
    page.wait_for_url("**/protocols/embedded/fewshot.html#fewshot-v1")

    table = "t-fewshot-v1"
    expected = next(t for t in built.tables if (t.suite, t.protocol) == ("embedded", "fewshot"))
    methods = [row.method for row in expected.rows]
    groups = [[r for r in expected.rows if r.preliminary == p] for p in (False, True)]
    assert groups[1], "the sample has a preliminary row"

    def grouped(order):  # each table body sorts on its own: preliminary rows stay last
        return [r.method for group in groups for r in sorted(group, key=order)]

    # server-side order: by acc_1shot, best first
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == methods

    # sort by method name: ascending, then descending
    header = page.locator(f"#{table} thead th", has_text="Method")
    header.get_by_role("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    by_name = grouped(lambda r: r.method.lower())
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == by_name
    header.get_by_role("button").click()
    descending = [
        r.method
        for group in groups
        for r in sorted(group, key=lambda r: r.method.lower(), reverse=True)
    ]
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == descending

    # sort by acc_5shot: a higher-is-better column sorts best first on the first click
    five = page.locator(f"#{table} thead th", has_text="acc_5shot")
    five.get_by_role("button").click()
    assert five.get_attribute("aria-sort") == "descending"
    by_five = [
        r for group in groups for r in sorted(group, key=lambda r: -r.cells["acc_5shot"].mean)
    ]
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == [
        r.method for r in by_five
    ]

    # filter: only the rows holding the text stay visible
    page.locator(f'input.table-filter[data-table="{table}"]').fill("method-00")
    shown = [m.removesuffix(" reference") for m in _column(page, table, 1)]
    assert shown == [r.method for r in by_five if "method-00" in r.method]
    assert len(shown) < len(methods)
    count = page.locator(".table-count").first.inner_text()
    assert count == f"{len(shown)} of {len(methods)} rows"

    shot = tmp_path / "protocol-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("KDBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / shot.name)

    # an HTML/JS payload as a method name is shown as text and never runs
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.locator(f'input.table-filter[data-table="{table}"]').fill("<script>")
    assert len(_column(page, table, 1)) == 1
    page.locator(f"#{table} tbody th.method a", has_text="<script>").click()
    page.wait_for_url("**/methods/*.html")
    assert page.locator("h1").inner_text().startswith(PAYLOAD)
    assert page.locator("script:not([src])").count() == 0 and page.locator("img").count() == 0

    assert errors == [] and dialogs == []
    assert requests and all(url.startswith("file://") for url in requests)
    page.close()


def test_tables_read_in_order_without_javascript(browser, built):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto((built.out / "protocols" / "embedded" / "fewshot.html").resolve().as_uri())
    assert page.locator("#t-fewshot-v1 thead button").count() == 0  # no script ran
    assert not page.locator(".table-tools").first.is_visible()  # no dead filter box
    expected = next(t for t in built.tables if (t.suite, t.protocol) == ("embedded", "fewshot"))
    rows = page.locator("#t-fewshot-v1 tbody th.method a").all_inner_texts()
    assert rows == [row.method for row in expected.rows]
    context.close()


def _open(browser, path, javascript=True):
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    page.set_default_timeout(5000)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.resolve().as_uri())
    return context, page, errors, requests


def test_the_student_filter_keeps_one_students_rows_and_the_teacher(browser, zoo_built):
    path = zoo_built.out / "protocols" / "embedded" / "fewshot.html"
    context, page, errors, requests = _open(browser, path)
    table = "t-fewshot-v1"
    rows = next(t for t in zoo_built.tables if t.protocol == "fewshot").rows
    page.locator(f'select.student-filter[data-table="{table}"]').select_option(
        label="shapes-vit-small"
    )
    shown = list(zip(_column(page, table, 1), _column(page, table, 2), strict=True))
    expected = [r for r in rows if r.student in ("shapes-vit-small", None)]
    assert [(m.removesuffix(" reference"), s) for m, s in shown] == [
        (r.method, r.student or "–") for r in expected
    ]
    assert page.locator(".table-count").first.inner_text() == f"{len(expected)} of {len(rows)} rows"
    page.locator(f'input.table-filter[data-table="{table}"]').fill("fitnets")
    assert list(zip(_column(page, table, 1), _column(page, table, 2), strict=True)) == [
        ("fitnets", "shapes-vit-small")
    ]
    page.locator(f'select.student-filter[data-table="{table}"]').select_option(value="")
    assert sorted(_column(page, table, 2)) == [
        "shapes-vit-base",
        "shapes-vit-small",
        "shapes-vit-tiny",
    ]
    assert errors == [] and all(url.startswith("file://") for url in requests)
    context.close()


def test_the_budget_control_shows_the_best_row_for_the_chosen_limits(browser, zoo_built, tmp_path):
    path = zoo_built.out / "fronts" / "embedded" / "fewshot.html"
    context, page, errors, requests = _open(browser, path)
    table = next(t for t in zoo_built.tables if t.protocol == "fewshot")
    views = table_budgets(table, device_costs(zoo_built.intake.ranked))
    picker = page.locator(".budget-picker").first
    assert picker.is_visible()
    view = views[0]
    assert (
        picker.locator(".budget-answer")
        .inner_text()
        .endswith(view.best[0][0].row.label + " " + format_number(view.best[0][0].score))
    )
    i, j = len(view.latency_options) - 2, 1  # a latency limit and the smallest parameter limit
    picker.locator("select.budget-latency").select_option(str(i))
    picker.locator("select.budget-params").select_option(str(j))
    pick = view.best[i][j]
    answer = picker.locator(".budget-answer").inner_text()
    assert answer.startswith("Latency p50 ≤ ") and ", parameters ≤ " in answer
    assert answer.endswith(f"{pick.row.label} {format_number(pick.score)}" if pick else ": ")
    marked = page.locator("table.budget-table").first.locator("td.picked")
    assert marked.count() == 1
    assert marked.get_attribute("data-latency") == str(i)
    assert marked.get_attribute("data-params") == str(j)
    shot = tmp_path / "fronts-page.png"
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("KDBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / shot.name)
    assert errors == [] and all(url.startswith("file://") for url in requests)
    context.close()

    context, page, errors, _ = _open(browser, path, javascript=False)
    assert not page.locator(".budget-picker").first.is_visible()
    assert page.locator("table.budget-table").first.is_visible()
    assert page.locator("table.budget-table td.picked").count() == 0
    context.close()


def _keep(shot: Path) -> None:
    """Copy a screenshot to ``KDBENCH_SCREENSHOTS`` when it is set."""
    keep = os.environ.get("KDBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / shot.name)


def test_the_overview_sorts_and_says_why_a_cell_is_empty(browser, zoo_built, tmp_path):
    context, page, errors, requests = _open(browser, zoo_built.out / "index.html")
    table = "t-overview-embedded"
    labels = _column(page, table, 0)
    fewshot = next(t for t in zoo_built.tables if t.protocol == "fewshot")
    assert len(labels) == len({(r.method, r.student) for t in zoo_built.tables for r in t.rows})
    # the fewshot column sorts best first on its first click
    header = page.locator(f"#{table} thead th", has_text="fewshot")
    header.get_by_role("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    best = max((r for r in fewshot.rows), key=lambda r: r.cells["acc_1shot"].mean or float("-inf"))
    assert _column(page, table, 0)[0].startswith(f"{best.method} · {best.student}")
    # kd does not apply to device: the cell says so and its note says why
    kd = page.locator(f"#{table} tbody tr", has_text="kd · shapes-vit-small").first
    refused = kd.locator("td.not-applicable")
    assert refused.count() >= 1 and refused.first.inner_text().startswith("not applicable")
    refused.first.locator("sup a").click()
    target = page.locator("li:target")
    assert "architectures, not training recipes" in target.inner_text()
    shot = tmp_path / "overview.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    assert errors == [] and all(url.startswith("file://") for url in requests)
    context.close()


def test_a_protocol_page_explains_itself_and_its_columns_without_javascript(browser, built):
    path = built.out / "protocols" / "embedded" / "fewshot.html"
    context, page, errors, _ = _open(browser, path, javascript=False)
    explanation = page.locator("#what-it-measures")
    assert explanation.is_visible()
    assert "nearest class mean" in explanation.inner_text()
    box = explanation.bounding_box()
    table_box = page.locator("#t-fewshot-v1").bounding_box()
    assert box["y"] < table_box["y"]  # the page opens with it
    legend = page.locator("#legend-fewshot-v1")
    assert legend.is_visible() and legend.locator("dl.legend").first.is_visible()
    text = legend.inner_text()
    assert "5-way 1-shot NCM accuracy on novel classes" in text
    assert "Unit: % (percent). Higher is better." in text
    title = page.locator("#t-fewshot-v1 thead th", has_text="acc_1shot").first.get_attribute(
        "title"
    )
    assert title.startswith("5-way 1-shot NCM accuracy") and title.endswith("higher is better")
    assert page.locator("svg.dots").first.is_visible()
    assert errors == []
    context.close()


def test_a_method_page_shows_every_protocol_side_by_side(browser, built, tmp_path):
    method = next(r.method for r in built.tables[0].rows if not r.reference)
    path = built.out / "methods" / f"{method}.html"
    context, page, errors, _ = _open(browser, path)
    panels = page.locator(".panel-grid figure.panel")
    tables = [t for t in built.tables if any(r.method == method for r in t.rows)]
    assert panels.count() == len(tables)
    tops = {round(panels.nth(i).bounding_box()["y"]) for i in range(min(2, panels.count()))}
    assert len(tops) == 1, "at desktop width the first panels sit side by side"
    seeds = panels.first.locator("circle.seed.mine")
    assert seeds.count() >= 2  # one dot per seed of the method's row
    shot = tmp_path / "method-page.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    assert errors == []
    context.close()


def test_phone_width_keeps_the_page_narrow_and_the_method_column_in_view(browser, built, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(5000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    for name in ("index.html", "protocols/embedded/device.html", "about.html"):
        page.goto((built.out / name).resolve().as_uri())
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width}px wide at phone width"
    page.goto((built.out / "protocols" / "embedded" / "fewshot.html").resolve().as_uri())
    scroller = page.locator("#t-fewshot-v1").locator("xpath=..")
    assert page.evaluate("e => e.scrollWidth > e.clientWidth", scroller.element_handle())
    method = page.locator("#t-fewshot-v1 tbody th.method").first
    before = method.bounding_box()["x"]
    page.evaluate("e => { e.scrollLeft = e.scrollWidth; }", scroller.element_handle())
    page.wait_for_function("e => e.scrollLeft > 0", arg=scroller.element_handle())
    assert abs(method.bounding_box()["x"] - before) < 1, "the method column stays in view"
    assert method.is_visible()
    shot = tmp_path / "phone-protocol-page.png"
    page.evaluate("e => { e.scrollLeft = 0; }", scroller.element_handle())
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    page.emulate_media(media="print")
    assert not page.locator(".site-header nav").is_visible()
    assert not page.locator(".table-tools").first.is_visible()
    assert errors == []
    context.close()
