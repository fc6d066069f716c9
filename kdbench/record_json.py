"""Strict JSON for records, below the schema: the checks made on a record's text before it
is parsed (nesting depth), the parse itself (the standard library with hooks that refuse
NaN, out-of-range numbers and repeated keys; orjson where its result is the same) and the
escape that may spell a lone surrogate. :mod:`kdbench.record_files` words the errors."""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from kdbench.results import MAX_DEPTH

try:  # a C parser, about 4.5x the standard library's speed on a fewshot record
    import orjson as _orjson
except ImportError:  # pragma: no cover - a platform without its wheel: the stdlib parses
    _orjson = None


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed in a record (use null with a reason)")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"the number {token[:40]} is out of range for a record")
    return value


class DuplicateKey(ValueError):
    """A key that appears twice in one object (``key`` names it)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return data


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")
_NOT_BRACKETS = str.maketrans("", "", "".join(chr(c) for c in range(128) if chr(c) not in "[]{}"))
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# An escape that may spell half of a surrogate pair.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def too_deep(text: str) -> bool:
    """Whether the JSON ``text`` nests more than :data:`MAX_DEPTH` levels (found without
    parsing it, so without recursion).

    Outside its strings, JSON text is ASCII: the brackets are kept, every other character
    dropped (one C-level pass), and the depth is the running sum of +1 per opening and -1 per
    closing bracket. Text that is not ASCII outside its strings is not JSON; the bracket loop
    judges it as before, and the parser then reports it."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # brackets inside strings only add to the count: never too deep
    outside = _JSON_STRING.sub("", text)
    if outside.isascii():
        brackets = outside.translate(_NOT_BRACKETS)
        return bool(brackets) and max(accumulate(map(_STEP.__getitem__, brackets))) > MAX_DEPTH
    depth = 0
    for bracket in _BRACKET.findall(outside):
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


# digits as 0, the decimal point kept, everything else a space: an integer part of 19 digits
# or more (maybe beyond 64 bits, which orjson reads as a float) shows as a space and 19 zeros
_DIGIT_RUNS = bytes(
    ord("0") if 48 <= c <= 57 else ord(".") if c == ord(".") else ord(" ") for c in range(256)
)
_LONG_INTEGER = b" " + b"0" * 19


def _fast_load(text: str) -> Any:
    """``text`` parsed by orjson, when that gives exactly what the strict standard-library
    parse gives; otherwise ``None``, and the standard library parses it and words any
    problem. orjson refuses what the strict parse refuses (NaN, an out-of-range number, a
    lone surrogate, text that is not JSON) and differs from it in two things, both checked:

    - a repeated key, which orjson keeps the last of: the text's colons are counted against
      those of the parsed data written back. Every key is followed by one colon and the
      strings are the same, so the counts differ exactly when a key was dropped (text with
      ``\\u`` escapes, which may spell a colon, takes the standard library);
    - integers beyond 64 bits, which orjson reads as floats: text with a number of 19 digits
      or more before any decimal point takes the standard library.
    """
    if _orjson is None:
        return None
    raw = text.encode("utf-8", "surrogatepass")
    if b"\\u" in raw or _LONG_INTEGER in raw.translate(_DIGIT_RUNS):
        return None
    try:
        data = _orjson.loads(raw)
    except _orjson.JSONDecodeError:
        return None
    if type(data) is not dict or raw.count(b":") != _orjson.dumps(data).count(b":"):
        return None
    return data


def loads(text: str) -> Any:
    """``text`` parsed strictly: orjson's result where :func:`_fast_load` vouches for it,
    else the standard library's, which raises ``ValueError`` naming the problem
    (:class:`DuplicateKey` for a repeated key; ``RecursionError`` when nesting too deep)."""
    data = _fast_load(text)
    if data is None:
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    return data
