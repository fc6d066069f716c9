"""Each built-in protocol explains itself once: ``Protocol.explanation`` is what the site
shows, and ``docs/protocols/<name>.md`` holds the same text as its "What it measures"
section, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdbench.leaderboard.prose import normalised, render_prose
from kdbench.plugins import get_registry
from kdbench.protocols.base import load_protocol

DOCS = Path(__file__).resolve().parents[1] / "docs" / "protocols"
HEADING = "## What it measures"


def _builtin_protocols():
    return [c for c in get_registry().components("protocols") if c.distribution == "kdbench"]


def doc_section(text: str, heading: str = HEADING) -> str:
    """The body of the section under ``heading``, up to the next heading of level 1 or 2."""
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(r"^#{1,2} ", text[start:], flags=re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


@pytest.mark.parametrize("component", _builtin_protocols(), ids=lambda c: c.name)
def test_the_doc_opens_with_the_protocols_own_explanation(component):
    protocol = load_protocol(component)
    assert len(normalised(protocol.explanation)) >= 2, "a few paragraphs: what and why"
    doc = (DOCS / f"{component.name}.md").read_text(encoding="utf-8")
    first = re.search(r"^## .+$", doc, flags=re.MULTILINE)
    assert first is not None and first.group() == HEADING, "the doc's first section"
    assert normalised(doc_section(doc)) == normalised(protocol.explanation)


def test_a_changed_doc_is_caught():
    doc = f"# x\n\n{HEADING}\n\nOne paragraph,\nwrapped.\n\nTwo.\n\n## Next\n\nMore.\n"
    assert normalised(doc_section(doc)) == ["One paragraph, wrapped.", "Two."]
    assert normalised(doc_section(doc)) != normalised("One paragraph.\n\nTwo.")


def test_explanations_render_as_escaped_paragraphs_and_lists():
    html = render_prose(
        "A **bold** `code <b>` claim,\nwrapped.\n\n- one `x`\n- two\n  wrapped\n\n<script>"
    )
    assert html == (
        "<p>A <strong>bold</strong> <code>code &lt;b&gt;</code> claim, wrapped.</p>\n"
        "<ul><li>one <code>x</code></li><li>two wrapped</li></ul>\n"
        "<p>&lt;script&gt;</p>"
    )
    assert render_prose("`**not bold**`") == "<p><code>**not bold**</code></p>"
