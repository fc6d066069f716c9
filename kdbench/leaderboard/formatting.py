"""How numbers are written on the site: fixed rules, so the same value always reads the same."""

from __future__ import annotations

import math


def decimals_for(value: float) -> int:
    """Decimal places that keep about four significant digits for ``value``."""
    magnitude = abs(value)
    if magnitude == 0:
        return 2
    if magnitude >= 1000:
        return 0
    if magnitude >= 100:
        return 1
    if magnitude >= 1:
        return 2
    # below 1: enough places for three significant digits, at most 6
    return min(6, 2 - math.floor(math.log10(magnitude)))


def format_number(value: float | None, decimals: int | None = None) -> str:
    """``61.53``, ``0.0123``, ``1234``; ``n/a`` for None."""
    if value is None:
        return "n/a"
    places = decimals_for(value) if decimals is None else decimals
    text = f"{value:.{places}f}"
    if text.startswith("-") and text.strip("-0.") == "":
        text = text[1:]  # no "-0.00"
    return text


def ci_places(mean: float, ci95: float | None) -> int:
    """Decimal places for a mean and its interval: those of the larger of the two, so a
    difference near zero reads ``-0.01 ± 0.50``, not ``-0.00858 ± 0.50010``."""
    return decimals_for(max(abs(mean), abs(ci95 or 0.0)))


def format_ci(mean: float | None, ci95: float | None) -> str:
    """The ``± 0.42`` part beside ``mean``, with :func:`ci_places`; empty if unknown."""
    if mean is None or ci95 is None:
        return ""
    return f"± {format_number(ci95, ci_places(mean, ci95))}"


def sort_key_text(value: float | None) -> str:
    """The exact value for the table script's ``data-sort``; empty (sorted last) for None."""
    return "" if value is None else repr(float(value))


def signed_number(value: float | None, decimals: int | None = None) -> str:
    """A difference: ``+1.25``, ``-0.40``, ``0.00``; ``n/a`` for None."""
    text = format_number(value, decimals)
    if value is None or text.startswith("-") or text.strip("0.") == "":
        return text
    return "+" + text
