"""Which student a record's row is about, so the site keeps (method, student) pairs apart.

A run is method x student x seed: the record names its student in
``components["student"]``. A row scores that student unless its ``subject`` is another
backbone (the teacher rows), and then it has no student.
"""

from __future__ import annotations

from kdbench.results import Record

#: How a row's label joins its method and its student.
SEPARATOR = " · "


def row_student(record: Record) -> str | None:
    """The registered name of the student ``record`` scores; None when it scores another
    backbone (its ``subject`` is not the student) or names no student."""
    student = record.components.get("student")
    if student is None:
        return None
    subject = record.components.get("subject")
    if subject is not None and subject.name != student.name:
        return None
    return student.name


def row_label(method: str, student: str | None) -> str:
    """``kd · shapes-resnet12``; the method alone for a row without a student."""
    return method if student is None else f"{method}{SEPARATOR}{student}"
