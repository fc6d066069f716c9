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
    return page.eval_on_selector_all(
        f"#{table} tbody tr:not([hidden])",
        f"rows => rows.map(r => r.cells[{index}].textContent.trim())",
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
    # server-side order: by acc_1shot, best first
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == methods

    # sort by method name: ascending, then descending
    header = page.locator(f"#{table} thead th", has_text="Method")
    header.get_by_role("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    by_name = sorted(methods, key=str.lower)
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == by_name
    header.get_by_role("button").click()
    assert [m.removesuffix(" reference") for m in _column(page, table, 1)] == by_name[::-1]

    # sort by acc_5shot: a higher-is-better column sorts best first on the first click
    five = page.locator(f"#{table} thead th", has_text="acc_5shot")
    five.get_by_role("button").click()
    assert five.get_attribute("aria-sort") == "descending"
    by_five = sorted(expected.rows, key=lambda r: -r.cells["acc_5shot"].mean)
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
