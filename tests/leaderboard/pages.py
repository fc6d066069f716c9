"""Reading built pages in tests: tags, attributes, text and table cells, with the stdlib."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str) -> list[Element]:
        found = [self] if self.tag == tag else []
        for child in self.children:
            found.extend(child.find_all(tag))
        return found

    def by_id(self, element_id: str) -> Element | None:
        if self.attrs.get("id") == element_id:
            return self
        for child in self.children:
            hit = child.by_id(element_id)
            if hit is not None:
                return hit
        return None

    @property
    def all_text(self) -> str:
        return self.text + "".join(child.all_text for child in self.children)

    @property
    def shown_text(self) -> str:
        """The text without the numbers of blank-cell notes (``<sup class="note-ref">``)."""
        if self.attrs.get("class") == "note-ref":
            return ""
        return self.text + "".join(child.shown_text for child in self.children)


_VOID = {
    "meta",
    "link",
    "br",
    "hr",
    "img",
    "input",
    "col",
    "source",
    "wbr",
    "path",
    "circle",
    "line",
    "rect",
    "polyline",
}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        node = self.stack[-1]
        if node.children:
            node.children.append(Element("#text", {}, data))
        else:
            node.text += data


def parse(html: str | Path) -> Element:
    """The element tree of a page (a path is read as UTF-8)."""
    if isinstance(html, Path):
        html = html.read_text(encoding="utf-8")
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def table_cells(page: Element, table_id: str) -> list[list[str]]:
    """The text of each body cell of the table with ``table_id``, row by row, over every
    body (ranked rows, then preliminary ones; a group's heading row left out), without the
    numbers that link blank cells to their notes."""
    table = page.by_id(table_id)
    assert table is not None, f"no table #{table_id}"
    rows = []
    for body in table.find_all("tbody"):
        for tr in body.find_all("tr"):
            if "group-head" in (tr.attrs.get("class") or ""):
                continue
            cells = [c for c in tr.children if c.tag in {"td", "th"}]
            rows.append([" ".join(c.shown_text.split()) for c in cells])
    return rows


def table_notes(page: Element, table_id: str) -> dict[str, list[str]]:
    """Per body row of ``table_id`` (by its first cells' text), the notes its blank cells
    link to, as their texts."""
    table = page.by_id(table_id)
    assert table is not None, f"no table #{table_id}"
    texts = {li.attrs.get("id"): " ".join(li.all_text.split()) for li in page.find_all("li")}
    out: dict[str, list[str]] = {}
    for tr in (tr for body in table.find_all("tbody") for tr in body.find_all("tr")):
        if "group-head" in (tr.attrs.get("class") or ""):
            continue
        cells = [c for c in tr.children if c.tag in {"td", "th"}]
        key = " ".join(" ".join(c.shown_text.split()) for c in cells[:3])
        links = [a.attrs.get("href", "") for sup in tr.find_all("sup") for a in sup.find_all("a")]
        out[key] = [texts[href.removeprefix("#")] for href in links]
    return out
