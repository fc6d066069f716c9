"""Where each page of the site lives, and the relative links between pages.

Names in records are untrusted and may hold any character, so file names are slugs:
lower-case letters, digits, ``-``, ``_`` and ``.``, with a short hash appended whenever the
slug had to change the name (so ``KD`` and ``kd`` never share a file, even on a
case-insensitive disk). A name that already ends like a hash (``-`` and eight or more hex
digits) is hashed too, so no name can take the page of another; and :func:`unique_slugs`
gives every name of a site its own page even if someone searched for a hash prefix that
clashes. Every link is relative, so the site works from ``file://``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

_SAFE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,79}$")
_HASH_LIKE = re.compile(r"-[0-9a-f]{8,}$")
_UNSAFE_CHARS = re.compile(r"[^a-z0-9_.\-]+")


def slug(name: str, digits: int = 8) -> str:
    """A file-name-safe form of ``name``; names that are already safe are kept as they are.

    Any other name becomes its cleaned form plus ``digits`` hex digits of its sha256.
    """
    if _SAFE.match(name) and ".." not in name and not _HASH_LIKE.search(name):
        return name
    cleaned = _UNSAFE_CHARS.sub("-", name.lower()).strip("-.")[:60] or "x"
    cleaned = cleaned.replace("..", ".")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    return f"{cleaned}-{digest}"


def anchor(text: str) -> str:
    """An id for an anchor within one page: ``text`` if it is safe as it is, else its slug."""
    return text if _SAFE.match(text) and ".." not in text else slug(text)


def unique_slugs(names: Iterable[str]) -> dict[str, str]:
    """The slug of each distinct name, no two alike.

    Two names only share a slug when both were hashed and their hashes' first eight digits
    agree (which takes a search); then both get a 16-digit hash, and 64 if that clashes too.
    """
    slugs = {name: slug(name) for name in sorted(set(names))}
    for digits in (16, 64):
        owners: dict[str, list[str]] = {}
        for name, value in slugs.items():
            owners.setdefault(value, []).append(name)
        clashing = [name for group in owners.values() if len(group) > 1 for name in group]
        if not clashing:
            break
        for name in clashing:
            slugs[name] = slug(name, digits)
    return slugs


class SitePages:
    """Where each method, protocol and run page of one site lives; no two names share one."""

    def __init__(
        self,
        methods: Iterable[str],
        protocols: Iterable[tuple[str, str]],
        runs: Iterable[str],
    ):
        pairs = list(protocols)
        self._methods = unique_slugs(methods)
        self._suites = unique_slugs(suite for suite, _ in pairs)
        self._protocols = unique_slugs(protocol for _, protocol in pairs)
        self._runs = unique_slugs(runs)

    def method(self, name: str) -> str:
        return f"methods/{self._methods[name]}.html"

    def protocol(self, suite: str, protocol: str) -> str:
        return f"protocols/{self._suites[suite]}/{self._protocols[protocol]}.html"

    def fronts(self, suite: str, protocol: str) -> str:
        """The page of a protocol's accuracy-versus-cost fronts and budget views."""
        return f"fronts/{self._suites[suite]}/{self._protocols[protocol]}.html"

    def run(self, run_id: str) -> str:
        return f"runs/{self._runs[run_id]}.html"


def raw_record(path: str) -> str:
    """Where a record file is copied: its path under the records folder, below ``raw/``."""
    return f"raw/{path}"


def relative(from_page: str, to_path: str) -> str:
    """A URL-quoted link from the page at ``from_page`` to ``to_path`` (both site paths).

    The link climbs to the site root and back down (``../../methods/kd.html``): always
    right for the site's simple paths, and cheap enough for ten thousand pages.
    """
    return "../" * from_page.count("/") + _quoted(to_path)


@functools.lru_cache(maxsize=65536)
def _quoted(path: str) -> str:
    """``path`` URL-quoted; every page links the same few paths, so each is quoted once."""
    return quote(path, safe="/")


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL without spaces or control characters."""
    if not url or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return None
    return url
