"""Numbered notes under a table: why each blank cell is blank, readable without hovering.

A blank cell shows a small number that links to its note below the table; cells blank for
the same reason share one note. Numbers are given in the order cells are rendered, so the
same table always gets the same numbers.
"""

from __future__ import annotations


class Notes:
    """The notes of one table; ``prefix`` makes their anchors unique on the page."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._numbers: dict[str, int] = {}

    def ref(self, text: str) -> int:
        """The number of the note saying ``text`` (a new note on first use)."""
        return self._numbers.setdefault(text, len(self._numbers) + 1)

    def anchor(self, number: int) -> str:
        return f"{self.prefix}-{number}"

    @property
    def items(self) -> list[tuple[int, str]]:
        """``(number, text)`` of every note, in number order."""
        return [(n, text) for text, n in self._numbers.items()]

    def __bool__(self) -> bool:
        return bool(self._numbers)
