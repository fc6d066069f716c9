"""Which precision a record scores its student at, so the site keeps quantised rows in
their own tables (like another teacher) and marks them on the fronts.

A unit scored at a precision other than fp32 names it in its config's ``precision``
section (``kdbench run --precision``); records without one are fp32.
"""

from __future__ import annotations

from kdbench.results import Record

FP32 = "fp32"


def record_precision(record: Record) -> str:
    """``fp32``, or the precision in the record's config (``int8``, ``int4-sim``, ...)."""
    section = record.protocol.config.get("precision")
    if isinstance(section, dict) and section.get("name"):
        return str(section["name"])
    return FP32


def precision_label(name: str) -> str:
    """How headings say a precision: ``int8 (PTQ)``, ``int4 (simulated)``."""
    from kdbench.quantization.precisions import UnsupportedPrecision, parse_precision

    try:
        return parse_precision(name).label
    except UnsupportedPrecision:
        return name
