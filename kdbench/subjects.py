"""What a method's row scores: decided once, from what the method is, never from its name.

A method is a recipe, its own ``fit``, or a reference row (see :mod:`kdbench.methods`).
:func:`subject_of` maps it to a :class:`Subject`; each protocol declares which subjects it
cannot score and why (``Protocol.unsupported``), and ``Protocol.supports`` is the only gate
the runner asks. A new protocol therefore gets every method whose subject it can score,
plugin methods included, without any list of protocol names.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Subject(str, Enum):
    """The model a protocol scores for a method."""

    TEACHER = "teacher"
    """The pretrained teacher as shipped (a reference row; nothing is trained)."""
    STUDENT = "student"
    """The pretrained student as shipped (a reference row; nothing is trained)."""
    SCRATCH = "scratch"
    """A reference row the protocol trains from random weights with a label-only recipe."""
    RECIPE = "recipe"
    """A student the protocol trains with the method's recipe."""
    FIT = "fit"
    """Whatever the method's own ``fit`` returns, given the protocol's context."""


def subject_of(method: Any) -> Subject:
    """The :class:`Subject` a protocol scores for ``method`` (a ``Method``)."""
    if getattr(method, "recipe", None) is not None:
        if getattr(method, "reference", False):
            return Subject.SCRATCH
        return Subject.RECIPE
    if getattr(method, "fit", None) is not None:
        return Subject.FIT
    if getattr(method, "subject", "student") == "teacher":
        return Subject.TEACHER
    return Subject.STUDENT


def pretrained_role(subject: Subject) -> str:
    """``teacher`` or ``student``: which shipped model a reference row scores."""
    if subject not in (Subject.TEACHER, Subject.STUDENT):
        raise ValueError(f"{subject.value!r} is not a pretrained reference row")
    return subject.value
