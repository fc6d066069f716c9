"""SLAD, shared LoRA adapters for task-specific distillation (Bensaid et al., 2026,
arXiv 2605.29726), as a kdbench plugin for the ``distill`` protocol.

Teacher and student are adapted to the downstream task *together*: LoRA on the attention
``qkv`` projections of both, the student's adapters being truncated slices of the
teacher's through a layer mapping (``first``, ``last`` or ``even``), and the loss
``CE(student) + CE(teacher) + T²·KL(teacher_T ‖ student_T)``. See
:mod:`kdbench_slad.sharing` for exactly what is shared.

Methods: ``slad`` (even mapping, the paper's best), ``slad-first``, ``slad-last``; and the
two-stage baselines SLAD is compared with, Hinton KD from a teacher adapted first by
fine-tuning (``kd-ft``) or by LoRA (``kd-lora``); kdbench's own ``kd`` is the linear-probe
one. :func:`slad_method` builds a variant with other options.

This module only names things: torch code is imported when a method runs.
"""

from __future__ import annotations

import functools
from typing import Any

from kdbench.hookspecs import hookimpl
from kdbench.methods import CE, LossTerm, Method, Recipe

__version__ = "0.1.0"
URL = "https://arxiv.org/abs/2605.29726"
MAPPINGS = ("first", "last", "even")


def _fit(ctx: Any, **options: Any) -> Any:
    from kdbench_slad.joint import fit

    return fit(ctx, **options)


def slad_method(
    name: str = "slad",
    mapping: str = "even",
    temperature: float = 4.0,
    r: int | None = None,
    alpha: float | None = None,
    dropout: float | None = None,
    transfer_set: bool = False,
    description: str | None = None,
) -> Method:
    """A SLAD method with these options (``r``, ``alpha``, ``dropout`` default to the
    protocol's LoRA config; ``transfer_set`` adds the protocol's unlabelled images to the
    KL term)."""
    if mapping not in MAPPINGS:
        raise ValueError(f"slad: mapping must be one of {', '.join(MAPPINGS)}, not {mapping!r}")
    fit = functools.partial(
        _fit,
        mapping=mapping,
        temperature=temperature,
        r=r,
        alpha=alpha,
        dropout=dropout,
        transfer_set=transfer_set,
    )
    text = description or (
        f"SLAD: teacher and student LoRA-adapted jointly, adapters shared through the "
        f"{mapping!r} layer mapping; CE + CE + T²·KL (T={temperature:g})."
    )
    return Method(name, text, fit=fit, url=URL)


KD_RECIPE = (CE, LossTerm("kd", 1.0, {"temperature": 4.0}))
METHODS = (
    slad_method("slad", "even"),
    slad_method("slad-first", "first"),
    slad_method("slad-last", "last"),
    Method(
        "kd-ft",
        "Two-stage baseline: teacher fine-tuned on the task, then Hinton KD (T=4).",
        recipe=Recipe(losses=KD_RECIPE, teacher_mode="ft"),
        url="https://arxiv.org/abs/1503.02531",
    ),
    Method(
        "kd-lora",
        "Two-stage baseline: teacher LoRA-adapted on the task, then Hinton KD (T=4).",
        recipe=Recipe(losses=KD_RECIPE, teacher_mode="lora"),
        url="https://arxiv.org/abs/1503.02531",
    ),
)


@hookimpl
def kdbench_register_methods(register):
    for method in METHODS:
        register(method, name=method.name, description=method.description, url=method.url)
