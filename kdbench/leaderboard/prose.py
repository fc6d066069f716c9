"""Short explanatory text written in a small subset of Markdown, rendered as safe HTML.

Protocols explain themselves in a few paragraphs (``Protocol.explanation``) that the site
shows and the protocol's doc repeats. Only what such text needs is understood: paragraphs
separated by blank lines, bullet lists (lines starting ``- ``), `` `code` `` and
``**bold**``. Everything is escaped first, so a plugin's text can never add markup.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """One block's text with its line breaks joined, escaped, then code and bold marked."""
    html = str(escape(" ".join(text.split())))
    parts = _CODE.split(html)  # odd parts are code spans: no bold inside them
    out = []
    for i, part in enumerate(parts):
        out.append(f"<code>{part}</code>" if i % 2 else _BOLD.sub(r"<strong>\1</strong>", part))
    return "".join(out)


def blocks(text: str) -> list[str]:
    """The paragraphs and lists of ``text``: blank-line separated, outer space stripped."""
    return [b.strip() for b in re.split(r"\n[ \t]*\n", text.strip()) if b.strip()]


def _list_items(block: str) -> list[str] | None:
    """The items of a block written as a bullet list, else None."""
    lines = block.splitlines()
    if not lines[0].lstrip().startswith("- "):
        return None
    items: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("- "):
            items.append(stripped[2:])
        elif items:
            items[-1] += " " + stripped  # a wrapped item
    return items


def render_prose(text: str) -> Markup:
    """``text`` as HTML paragraphs and lists; empty for empty text."""
    out = []
    for block in blocks(text):
        items = _list_items(block)
        if items is None:
            out.append(f"<p>{_inline(block)}</p>")
        else:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
    return Markup("\n".join(out))


def normalised(text: str) -> list[str]:
    """``text`` as its blocks with the whitespace inside each collapsed: two texts that
    differ only in line wrapping compare equal."""
    return [" ".join(block.split()) for block in blocks(text)]
