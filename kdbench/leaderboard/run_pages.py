"""Run pages, one per record, rendered by forked worker processes while the main process
renders the rest of the site: most of a large build's rendering. The bytes are those the
main process would render; only where they are made changes."""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
from collections.abc import Iterator
from typing import Any

from kdbench.errors import SiteError
from kdbench.leaderboard.intake import RecordFile
from kdbench.workers import MAX_WORKERS, usable_cpus, worker_count

PARALLEL_RUN_PAGES = 2000
"""Run pages below which rendering them in worker processes is not worth starting them."""
_FORKED: tuple[Any, list[tuple[RecordFile, str]]] | None = None
"""The renderer and the run pages a forked worker renders (inherited, never pickled)."""


def site_workers() -> int:
    """Worker processes that render run pages: ``KDBENCH_SITE_WORKERS``, else the usable
    CPUs (at most 8); 0 or 1 renders them in this process. Workers are forked, so by
    default only where ``fork`` is the safe way to start them (Linux)."""
    default = min(MAX_WORKERS, usable_cpus()) if sys.platform.startswith("linux") else 0
    try:
        return worker_count("KDBENCH_SITE_WORKERS", default)
    except ValueError as error:
        raise SiteError(str(error)) from None


def _render(index: int) -> bytes:
    assert _FORKED is not None
    renderer, runs = _FORKED
    file, page = runs[index]
    return renderer._run_page(file, page)


@contextlib.contextmanager
def run_page_renderer(
    renderer: Any, runs: list[tuple[RecordFile, str]]
) -> Iterator[Iterator[bytes]]:
    """The bytes of ``runs`` ((record file, page) pairs of ``renderer``, a
    :class:`~kdbench.leaderboard.render.SiteRenderer`) in order: from forked workers,
    started at once so they render while the caller does other work, when there are many;
    else rendered on demand in this process."""
    global _FORKED
    workers = site_workers()
    if workers < 2 or len(runs) < PARALLEL_RUN_PAGES:
        yield (renderer._run_page(file, page) for file, page in runs)
        return
    _FORKED = (renderer, runs)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            chunk = max(16, len(runs) // (workers * 16))
            yield pool.imap(_render, range(len(runs)), chunksize=chunk)
    finally:
        _FORKED = None
