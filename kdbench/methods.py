"""Methods: what a submission is.

A method is either a :class:`Recipe` (data: how the teacher is adapted, which losses train
the student, with what weights) that every protocol knows how to run, or its own ``fit``
function that a protocol calls with a context (see the protocol's docs for what ``fit``
gets and returns). Reference rows (the teacher alone, the student as shipped, the student
from scratch) are methods with ``reference=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdbench.quantization.aware import QuantAware

TEACHER_MODES = {"lp": "linear", "ft": "finetune", "lora": "lora"}
"""Short names a recipe's ``teacher_mode`` may use for built-in adapters."""


@dataclass(frozen=True)
class LossTerm:
    """One registered loss with its weight and options."""

    loss: str
    weight: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "weight": self.weight, "options": dict(self.options)}


@dataclass(frozen=True)
class Recipe:
    """A method as data.

    ``teacher_mode`` says how the teacher is adapted to a downstream task before distilling:
    ``lp`` (linear probe), ``ft`` (fine-tune), ``lora``, or the name of any registered adapter
    (checked when the run is planned); ``None``: no teacher is used;
    ``student_init`` is ``pretrained`` or ``scratch``; ``transfer_set`` names the registered
    transfer set (``kdbench ls transfer_sets``) whose unlabelled images label-free losses
    also see: ``True`` is ``task`` (the protocol's in-domain unlabelled images), ``False``
    is ``none``; a run may override it (``--set distill.transfer=NAME``); ``quantise`` (a
    :class:`~kdbench.quantization.training.TrainingQuantiser`, e.g. ``QuantAware(bits=4)``)
    fake-quantises the student while it trains, whatever the losses.
    """

    losses: tuple[LossTerm, ...]
    teacher_mode: str | None = "lp"
    teacher_options: Mapping[str, Any] = field(default_factory=dict)
    student_init: str = "pretrained"
    transfer_set: bool | str = True
    quantise: Any = None

    def __post_init__(self) -> None:
        if not self.losses:
            raise ValueError("a recipe needs at least one loss")
        if self.teacher_mode is not None and (
            not isinstance(self.teacher_mode, str) or not self.teacher_mode
        ):
            raise ValueError(
                f"teacher_mode must be {', '.join(TEACHER_MODES)}, a registered adapter's name "
                f"or None, not {self.teacher_mode!r}"
            )
        if self.student_init not in ("pretrained", "scratch"):
            raise ValueError(
                f"student_init must be 'pretrained' or 'scratch', not {self.student_init!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "losses": [t.as_dict() for t in self.losses],
            "teacher_mode": self.teacher_mode,
            "teacher_options": dict(self.teacher_options),
            "student_init": self.student_init,
            "transfer_set": self.transfer_set,
            # only when set: the cache keys of the other recipes stay as they were
            **({"quantise": self.quantise.as_dict()} if self.quantise is not None else {}),
        }


@dataclass(frozen=True)
class Method:
    """A registered method. Exactly one of ``recipe`` and ``fit`` (or neither, for the
    reference rows that protocols treat specially)."""

    name: str
    description: str = ""
    recipe: Recipe | None = None
    fit: Callable[..., Any] | None = None
    reference: bool = False
    subject: str = "student"
    """Which model the protocol scores: 'student', or 'teacher' for the teacher's row."""
    url: str | None = None
    student: str | None = None
    """The registered student (``kdbench ls students``) the method trains; ``None``: each
    protocol's default student. ``kdbench run --student`` overrides it."""
    supports: Callable[..., str | None] | None = None
    """Optional: ``supports(protocol) -> None`` if the method can run on ``protocol`` (a
    :class:`~kdbench.protocols.base.Protocol`), else the reason it cannot. Judge from the
    protocol's declared properties, not its name; protocols already refuse the subjects they
    cannot score (see :mod:`kdbench.subjects`). A method that only works with some students
    takes a keyword ``student`` as well (the registered name, or ``None`` for the protocol's
    default) and says why it refuses the others."""
    in_default_run: bool = True
    """Whether ``kdbench run`` without ``--method`` runs it (only kdbench's own methods are
    run by default); ``False`` for a method that must be asked for by name."""

    def __post_init__(self) -> None:
        if self.recipe is not None and self.fit is not None:
            raise ValueError(f"method {self.name!r}: give a recipe or a fit function, not both")
        if self.recipe is None and self.fit is None and not self.reference:
            raise ValueError(f"method {self.name!r} needs a recipe or a fit function")
        if self.subject not in ("student", "teacher"):
            raise ValueError(f"method {self.name!r}: subject is 'student' or 'teacher'")

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.as_dict() if self.recipe else None,
            "custom_fit": self.fit is not None,
            "reference": self.reference,
            "subject": self.subject,
        }


CE = LossTerm("ce")

SUPERVISED = Method(
    "supervised",
    "Baseline: the student trained on labels alone, no teacher.",
    recipe=Recipe(losses=(CE,), teacher_mode=None, transfer_set=False),
)
KD = Method(
    "kd",
    "Hinton KD: cross-entropy plus T²·KL to the teacher's softened predictions (T=4).",
    recipe=Recipe(losses=(CE, LossTerm("kd", 1.0, {"temperature": 4.0})), teacher_mode="lp"),
    url="https://arxiv.org/abs/1503.02531",
)
FITNETS = Method(
    "fitnets",
    "FitNets: cross-entropy plus regression of the teacher's embedding through a projector.",
    recipe=Recipe(losses=(CE, LossTerm("fitnets", 1.0, {"on": "pooled"})), teacher_mode="lp"),
    url="https://arxiv.org/abs/1412.6550",
)
QAT = Method(
    "qat",
    "Plain QAT: Hinton KD (T=4) with weights and activations fake-quantised at 4 bits while "
    "the student trains; score it with --precision int4-sim.",
    recipe=Recipe(
        losses=(CE, LossTerm("kd", 1.0, {"temperature": 4.0})),
        teacher_mode="lp",
        quantise=QuantAware(bits=4),
    ),
    url="https://arxiv.org/abs/1712.05877",
    in_default_run=False,
)
TEACHER = Method(
    "teacher",
    "Reference: the teacher itself, scored where the student would be.",
    reference=True,
    subject="teacher",
)
STUDENT = Method(
    "student",
    "Reference: the pretrained student as shipped, without distillation.",
    reference=True,
)
SCRATCH = Method(
    "scratch",
    "Reference: the student architecture trained from random weights on labels alone.",
    recipe=Recipe(losses=(CE,), teacher_mode=None, student_init="scratch", transfer_set=False),
    reference=True,
)


def _agnostic_fit(ctx: Any) -> Any:
    from kdbench.transfer.agnostic import fit

    return fit(ctx)


AGNOSTIC = Method(
    "agnostic",
    "Task-agnostic baseline: match the pretrained teacher's features on a generic transfer "
    "set, then fine-tune on the labels.",
    fit=_agnostic_fit,
    url="https://arxiv.org/abs/2311.18237",
    in_default_run=False,  # a transfer-set study's baseline, distill only: ask for it by name
)
BUILTIN_METHODS = (SUPERVISED, KD, FITNETS, QAT, TEACHER, STUDENT, SCRATCH, AGNOSTIC)
