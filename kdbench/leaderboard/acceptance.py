"""What the leaderboard accepts, and which records it marks as self-reported.

A submission is a pull request adding records under ``leaderboards/`` (CONTRIBUTING.md).
The build ranks any valid, finished, non-smoke record of a protocol's current version
(:mod:`.intake`); a row is ranked only with :data:`MIN_SEEDS` seeds, and one with fewer is
shown apart as preliminary (:func:`kdbench.leaderboard.aggregate.rank_rows`). A record is
*self-reported* when nobody could rebuild the code that produced it from what it says: it
was made from a kdbench checkout with uncommitted changes (``kdbench.git_dirty``), or by a
kdbench whose version is not a release (a ``.dev``, pre-release or ``+local`` version).
Self-reported records are ranked like the others and marked as such on the site.
"""

from __future__ import annotations

import re

from kdbench.results import Record

#: The seed policy: the fewest seeds a (method, student) row needs to be ranked (the
#: default of ``kdbench leaderboard build --min-seeds``).
MIN_SEEDS = 3

#: A final release number (``0.2``, ``1.4.0``, ``1.4.0.post1``): no dev, pre or local part.
_RELEASE = re.compile(r"^\d+(\.\d+)*(\.post\d+)?$")


def is_release(version: str) -> bool:
    """Whether ``version`` names a kdbench release rather than a development build."""
    return bool(_RELEASE.match(version))


def self_reported(record: Record) -> list[str]:
    """Why ``record`` counts as self-reported (empty when it does not)."""
    reasons = []
    info = record.kdbench
    if info.git_dirty:
        sha = f" {info.git_sha[:12]}" if info.git_sha else ""
        reasons.append(f"made from a kdbench checkout{sha} with uncommitted changes")
    if not is_release(info.version):
        reasons.append(f"kdbench {info.version} is not a release")
    return reasons
