"""Where each page of the site lives, and the relative links between pages.

Names in records are untrusted and may hold any character, so file names are slugs:
lower-case letters, digits, ``-``, ``_`` and ``.``, with a short hash appended whenever the
slug had to change the name (so ``KD`` and ``kd`` never share a file, even on a
case-insensitive disk). Every link is relative, so the site works from ``file://``.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, urlsplit

_SAFE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,79}$")
_UNSAFE_CHARS = re.compile(r"[^a-z0-9_.\-]+")


def slug(name: str) -> str:
    """A file-name-safe form of ``name``; names that are already safe are kept as they are."""
    if _SAFE.match(name) and ".." not in name:
        return name
    cleaned = _UNSAFE_CHARS.sub("-", name.lower()).strip("-.")[:60] or "x"
    cleaned = cleaned.replace("..", ".")
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def protocol_page(suite: str, protocol: str) -> str:
    return f"protocols/{slug(suite)}/{slug(protocol)}.html"


def method_page(method: str) -> str:
    return f"methods/{slug(method)}.html"


def run_page(run_id: str) -> str:
    return f"runs/{slug(run_id)}.html"


def raw_record(path: str) -> str:
    """Where a record file is copied: its path under the records folder, below ``raw/``."""
    return f"raw/{path}"


def relative(from_page: str, to_path: str) -> str:
    """A URL-quoted link from the page at ``from_page`` to ``to_path`` (both site paths).

    The link climbs to the site root and back down (``../../methods/kd.html``): always
    right for the site's simple paths, and cheap enough for ten thousand pages.
    """
    return "../" * from_page.count("/") + quote(to_path, safe="/")


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
