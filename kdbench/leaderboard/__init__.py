"""The static leaderboard: records in, a site that works from ``file://`` out.

:func:`build_site` reads and screens the records (:mod:`.intake`), aggregates them over seeds
into (method, student) rows (:mod:`.aggregate`) paired with the baseline of the same student
(:mod:`.baselines`), joins device costs (:mod:`.costs`), draws the accuracy-versus-cost
fronts (:mod:`.fronts`, :mod:`.plots`), picks the best row under a few budgets
(:mod:`.budgets`) and renders the pages (:mod:`.render`). :func:`check_site` says whether a
built site is current. Imported lazily, so ``kdbench --help`` does not load pandas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BuildReport", "SiteError", "build_site", "check_site"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kdbench.leaderboard import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
