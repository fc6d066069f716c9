"""Text from records and plugins, made safe to print on a terminal.

Record fields, plugin descriptions, error messages and even file names are untrusted: an
escape sequence in them could clear the screen, rewrite earlier lines or retitle the window,
a bidirectional override could make a line read differently from what it holds, and a lone
surrogate would make ``print`` itself fail. :func:`printable` shows every such character as a
visible escape (``\\x1b``, ``\\u202e``) instead, so the reader still sees that it was there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# C0 controls, DEL and C1 controls; bidirectional embeddings, overrides and isolates; the
# line and paragraph separators; lone surrogates (text that is not valid Unicode).
_OTHERS = "\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x0a{_OTHERS}]")
_UNSAFE_KEEPING_NEWLINES = re.compile(f"[\x00-\x09{_OTHERS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control, bidi and surrogate character shown as an escape.

    With ``newlines=True`` a line feed is kept (for multi-line messages); otherwise the result
    is always one line.
    """
    pattern = _UNSAFE_KEEPING_NEWLINES if newlines else _UNSAFE
    return pattern.sub(_escape, str(text))


def text_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: bool = False,
    rule: bool = True,
) -> list[str]:
    """Lines of a plain-text table: columns two spaces apart, as wide as their widest cell,
    with a rule of dashes under the header (``rule``). Cells are left-aligned, or with
    ``numeric`` every column after the first is right-aligned. Cells are printed as given:
    make untrusted text :func:`printable` first."""
    table = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = (
            cell.rjust(w) if numeric and i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    lines = [line(table[0])]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    return lines + [line(row) for row in table[1:]]
