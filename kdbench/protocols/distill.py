"""``distill`` (version 2): task-specific distillation.

A larger and a smaller foundation model of one family are both adapted to the same
downstream task; knowledge goes from the adapted teacher to the student. For a recipe
method the protocol (1) adapts the teacher with the recipe's ``teacher_mode`` (``lp``, ``ft``
or ``lora``) on the labelled training set, (2) trains the student with the recipe's losses
for a fixed number of steps, the same for every method, on the labelled set plus, for
label-free losses, an unlabelled transfer set from the task's domain, and (3) scores both.
A method with its own ``fit`` gets a :class:`DistillContext` and returns a
:class:`DistillResult` (teacher and student classifiers).

Metrics: student and teacher top-1 on the test split (95% Wilson CI per seed); linear CKA
between teacher and student embeddings on a fixed test subset, and its relative drop from
the pretrained pair; wall-clock training seconds (teacher adaptation + student). At a
precision (``kdbench run --precision``, docs/quantization.md) the student classifier is
statically quantised and ``student_top1`` is the quantised one, beside its fp32 twin and
the drop paired over the test images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from kdbench.data.downstream import TaskData, load_task
from kdbench.distillation import Classifier, accuracy_counts, init_backbone
from kdbench.errors import UnknownComponentError
from kdbench.methods import Method, Recipe
from kdbench.metrics import linear_cka, proportion_ci95
from kdbench.models.adapters import teacher_adapter
from kdbench.models.backbone import Backbone
from kdbench.phases import in_phase
from kdbench.protocols.base import MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.protocols.configs import distill as distill_config
from kdbench.quantization.scoring import (
    QuantisedStudent,
    precision_specs,
    quantise_student,
    twin_and_drop,
)
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef
from kdbench.student_stage import FrozenTeacher, StageData, train_student
from kdbench.subjects import Subject, subject_of
from kdbench.teacher_stage import adapt_teacher
from kdbench.train import TrainConfig, TrainResult, fit, predict
from kdbench.transfer import TransferImages, distill_transfer, transfer_name


@dataclass
class DistillContext:
    """What a method's own ``fit`` gets."""

    teacher: Backbone
    student: Backbone
    data: TaskData
    steps: int
    batch_size: int
    config: dict[str, Any]
    registry: Registry
    device: str
    seed: int
    work_dir: Path
    progress: Callable[..., Any]
    transfer: Callable[[str], TransferImages] | None = None
    """``transfer(default)``: the run's transfer set (``--set distill.transfer``), else the
    registered set ``default`` (``task``, ``generic``, ...), built for this task and seed;
    the record names the last one built."""

    @in_phase("student")
    def train(
        self,
        step_module: torch.nn.Module,
        tensors: tuple[torch.Tensor, ...],
        lr: float,
        name: str,
        steps: int | None = None,
    ) -> TrainResult:
        """Run the shared training loop with a checkpoint in the unit's work folder."""
        config = TrainConfig(
            epochs=1, steps=steps or self.steps, batch_size=self.batch_size, lr=lr, seed=self.seed
        )
        return fit(
            step_module,
            tensors,
            config,
            device=self.device,
            checkpoint=self.work_dir / f"{name}.pt",
            progress=self.progress,
            desc=name,
        )


@dataclass
class DistillResult:
    """What a method's own ``fit`` returns."""

    teacher: Classifier | None
    """None for a method that adapts no teacher (teacher_top1 is then null)."""
    student: Classifier
    notes: list[str] = field(default_factory=list)
    components: dict[str, ComponentRef] = field(default_factory=dict)


class Distill(Protocol):
    name = "distill"
    student_key = "student"
    teacher_key = "teacher"
    transfer_key = "transfer"
    version = 2
    config_models = distill_config.MODELS
    description = "Task-specific distillation: adapted teacher -> student on a downstream task."
    explanation = """\
How much of a large model's skill on one downstream task a method passes to a small
student. A teacher and a student of one family are both adapted to a task with few labels:
the teacher by the method's teacher mode (`lp` linear probe, `ft` fine-tune, `lora`), then
the student by the method's losses, for the same number of optimiser steps for every
method, on the labelled images plus an unlabelled transfer set from the task's domain.

The headline is the student's top-1 accuracy on the task's test split. `teacher_top1` is
the adapted teacher's accuracy (what there was to pass on), `cka` and `cka_drop` say how
close the student's embeddings stay to the teacher's, and `train_seconds` is what the
recipe cost in wall-clock time.

Read a row next to `supervised`, the same student trained on the labels alone with the
same budget: a distillation method is worth its teacher when it beats that row with the
same student. `scratch` (the student from random weights) is a reference row.
"""
    unsupported: ClassVar[dict[Subject, str]] = {
        subject: (
            "method {method!r} is a reference row of a pretrained model; distill adapts both "
            "models to the task: its reference rows are the adapted teacher (teacher_top1, in "
            "every record) and the student from scratch (scratch)"
        )
        for subject in (Subject.TEACHER, Subject.STUDENT)
    }
    metrics = (
        MetricSpec(
            "student_top1", True, "%", headline=True, description="Student top-1 on the test split."
        ),
        MetricSpec("teacher_top1", True, "%", description="Adapted teacher top-1."),
        MetricSpec("cka", True, None, description="Linear CKA, adapted teacher vs student."),
        MetricSpec(
            "cka_drop", False, "%", description="Relative drop of CKA from the pretrained pair."
        ),
        MetricSpec(
            "train_seconds",
            False,
            "s",
            description="Wall-clock training time (teacher adaptation + student).",
        ),
    )
    metrics += precision_specs([m for m in metrics if m.headline])
    quantisable = True

    def supports(
        self, method: Component, registry: Registry | None = None, student: str | None = None
    ) -> str | None:
        reason = super().supports(method, registry, student)
        mode = getattr(getattr(method.load(), "recipe", None), "teacher_mode", None)
        if reason is None and mode is not None and registry is not None:
            try:
                teacher_adapter(registry, mode)
            except UnknownComponentError as error:
                return f"method {method.name!r}: teacher_mode {mode!r}: {error}"
        return reason

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        return distill_config.defaults(suite, smoke)

    # -- one unit ------------------------------------------------------------------------
    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device = context.config, context.registry, context.device
        method: Method = context.method.load()
        data = load_task(config["data"], context.seed, registry, context.progress)
        steps = lambda epochs: epochs * -(-len(data.train_labels) // config["batch_size"])  # noqa: E731
        notes: list[str] = []
        components = {
            "teacher": ComponentRef(
                **registry.get("teachers", config["teacher"]["name"]).ref(),
                options=config["teacher"]["options"],
            ),
            "student": ComponentRef(
                **registry.get("students", config["student"]["name"]).ref(),
                options=config["student"]["options"],
            ),
        }
        components["subject"] = components["student"]
        pre_teacher = init_backbone(registry, "teachers", config["teacher"]).to(device).eval()
        pre_student = init_backbone(registry, "students", config["student"]).to(device).eval()
        cka_images = data.test_images[: config["cka_images"]]
        cka_before = linear_cka(
            predict(pre_teacher, cka_images, device=device),
            predict(pre_student, cka_images, device=device),
        )

        built: list[TransferImages] = []
        building = [0.0]  # seconds spent building transfer sets: data, not training

        def transfer(default: str) -> TransferImages:
            started = time.perf_counter()
            built.append(self._transfer(context, data, default))
            building[0] += time.perf_counter() - started
            return built[-1]

        if subject_of(method) in (Subject.RECIPE, Subject.SCRATCH):
            assert method.recipe is not None
            images = transfer(transfer_name(method.recipe.transfer_set))
            recipe = replace(method.recipe, transfer_set=images.name)
            teacher, student, train_seconds = self._run_recipe(
                context, recipe, data, images, steps, components, notes
            )
        else:  # Subject.FIT: the only other subject distill admits
            assert method.fit is not None
            ctx = DistillContext(
                teacher=init_backbone(registry, "teachers", config["teacher"]),
                student=init_backbone(registry, "students", config["student"]),
                data=data,
                steps=steps(config["student_epochs"]),
                batch_size=config["batch_size"],
                config=config,
                registry=registry,
                device=device,
                seed=context.seed,
                work_dir=context.work_dir,
                progress=context.progress,
                transfer=transfer,
            )
            started = time.perf_counter()
            result: DistillResult = method.fit(ctx)
            # as for recipes, building the transfer set (rendering, embedding, retrieval) is
            # not training time, even when the method's own fit asks for it
            train_seconds = time.perf_counter() - started - building[0]
            teacher, student = result.teacher, result.student
            notes += result.notes
            components.update(result.components)

        statistics: dict[str, Any] = {}
        if built:
            chosen = built[-1]
            components["transfer_set"] = ComponentRef(
                **registry.get("transfer_sets", chosen.name).ref(),
                options=chosen.record_options(),
            )
            notes += chosen.notes
            if chosen.statistics:
                statistics["transfer"] = chosen.statistics
        eval_started = time.perf_counter()
        n = data.num_classes
        student_cm = accuracy_counts(
            student.to(device).eval(), data.test_images, data.test_labels, n, device=device
        )
        s_acc, s_ci = proportion_ci95(int(student_cm.trace()), int(student_cm.sum()))
        statistics["student_confusion"] = student_cm.tolist()
        metrics = [self.metric("student_top1")(s_acc, ci95=s_ci, n=int(student_cm.sum()))]
        if teacher is not None:
            teacher_cm = accuracy_counts(
                teacher.to(device).eval(), data.test_images, data.test_labels, n, device=device
            )
            t_acc, t_ci = proportion_ci95(int(teacher_cm.trace()), int(teacher_cm.sum()))
            metrics.append(self.metric("teacher_top1")(t_acc, ci95=t_ci, n=int(teacher_cm.sum())))
            statistics["teacher_confusion"] = teacher_cm.tolist()
            cka_teacher = teacher.backbone
        else:
            metrics.append(
                self.metric("teacher_top1")(None, reason="this method trains no teacher")
            )
            cka_teacher = pre_teacher
            notes.append("CKA is measured against the pretrained teacher (the method uses none)")
        cka_after = linear_cka(
            predict(cka_teacher.eval(), cka_images, device=device),
            predict(student.backbone.eval(), cka_images, device=device),
        )
        metrics += [
            self.metric("cka")(cka_after, n=len(cka_images)),
            self.metric("cka_drop")(100 * (cka_before - cka_after) / cka_before, n=len(cka_images)),
            self.metric("train_seconds")(train_seconds),
        ]
        statistics["cka_pretrained"] = cka_before
        draws = dict(data.draws)
        if config.get("precision"):
            quantised = self._at_precision(config, student, data, metrics, statistics, context)
            notes += quantised.notes
            notes.append("cka and cka_drop are of the fp32 student; the teacher is not quantised")
            draws.update(quantised.draws())
        return UnitResult(
            metrics=metrics,
            dataset=data.identity,
            components=components,
            draws=draws,
            statistics=statistics,
            notes=notes,
            train_seconds=train_seconds,
            eval_seconds=time.perf_counter() - eval_started,
        )

    def _at_precision(
        self,
        config: dict[str, Any],
        student: Classifier,
        data: TaskData,
        metrics: list[Any],
        statistics: dict[str, Any],
        context: UnitContext,
    ) -> QuantisedStudent:
        """Score the student (backbone and head) after static quantisation, calibrated on
        the seeded subset of the training images, on the same test images as at fp32:
        ``student_top1`` becomes the quantised one, with its fp32 twin and the paired drop
        over the test images; ``metrics`` and ``statistics`` are updated in place."""
        device, n = context.device, data.num_classes
        labels = data.test_labels
        fp32_correct = predict(student.eval(), data.test_images, device=device).argmax(-1) == labels
        quantised = quantise_student(
            student.cpu().eval(), config["precision"], data.train_images, progress=context.progress
        )
        q_pred = predict(quantised, data.test_images, progress=context.progress, desc="q")
        q_correct = q_pred.argmax(-1) == labels
        q_cm = torch.bincount(labels * n + q_pred.argmax(-1), minlength=n * n).reshape(n, n)
        fp32 = metrics[0]
        assert fp32.name == "student_top1"
        acc, ci = proportion_ci95(int(q_correct.sum()), len(labels))
        metrics[0] = self.metric("student_top1")(acc, ci95=ci, n=len(labels))
        metrics += twin_and_drop(
            self, fp32, 100 * fp32_correct.double().numpy(), 100 * q_correct.double().numpy()
        )
        metrics += quantised.footprint_metrics(self)
        statistics["fp32_student_confusion"] = statistics["student_confusion"]
        statistics["student_confusion"] = q_cm.tolist()
        statistics["precision"] = quantised.statistics()
        return quantised

    # -- recipes -------------------------------------------------------------------------
    def _run_recipe(
        self,
        context: UnitContext,
        recipe: Recipe,
        data: TaskData,
        transfer: TransferImages,
        steps: Callable[[int], int],
        components: dict[str, ComponentRef],
        notes: list[str],
    ) -> tuple[Classifier | None, Classifier, float]:
        """Adapt the teacher (:func:`~kdbench.teacher_stage.adapt_teacher`, cached per mode
        and seed), then train the student. Returns teacher, student and training seconds
        (teacher adaptation + student training)."""
        config, registry, device = context.config, context.registry, context.device
        teacher, seconds = None, 0.0
        if recipe.teacher_mode is not None:
            adapted = adapt_teacher(
                registry, config, recipe.teacher_mode, dict(recipe.teacher_options), data,
                seed=context.seed, device=device, cache_root=context.cache_dir,
                work_dir=context.work_dir, progress=context.progress, version=self.version,
            )  # fmt: skip
            teacher, seconds = adapted.model, adapted.seconds
            components["teacher_adapter"] = ComponentRef(
                **teacher_adapter(registry, recipe.teacher_mode).ref(),
                options=dict(recipe.teacher_options),
            )
            if adapted.cached:
                notes.append(
                    f"adapted teacher ({recipe.teacher_mode}) reused from the cache; "
                    "the time its adaptation took when it was made is counted"
                )
        started = time.perf_counter()
        scratch = recipe.student_init == "scratch"
        backbone = init_backbone(registry, "students", config["student"], pretrained=not scratch)
        source = None
        if teacher is not None:
            source = FrozenTeacher(
                teacher,
                teacher.backbone.embed_dim,
                teacher.backbone.num_layers,
                device,
                context.progress,
                cache_root=context.cache_dir,
            )
        trained = train_student(
            Classifier(backbone, data.num_classes),
            recipe,
            StageData(data.train_images, data.train_labels, data.num_classes, transfer.images),
            TrainConfig(
                epochs=1,
                steps=steps(config["student_epochs"]),
                batch_size=config["batch_size"],
                lr=config["lr"]["student_scratch" if scratch else "student"],
                seed=context.seed,
            ),
            teacher=source,
            registry=registry,
            device=device,
            checkpoint=context.work_dir / "student.pt",
            progress=context.progress,
        )
        components.update(trained.components)
        notes += trained.notes
        student = trained.model
        return teacher, student, seconds + time.perf_counter() - started

    def _transfer(self, context: UnitContext, data: TaskData, default: str) -> TransferImages:
        """The run's transfer set (``config["transfer"]``), else ``default``, for this unit."""
        return distill_transfer(
            context.config,
            data,
            context.seed,
            default,
            context.registry,
            context.device,
            progress=context.progress,
            smoke=context.smoke,
            cache_root=context.cache_dir,
        )
