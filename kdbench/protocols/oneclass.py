"""``oneclass`` (version 2): zero-shot one-class classification with confusers.

Only the target's label is known. An image is scored against the target's name and the
names of ``k`` visually confusing classes ("confusers", from a plugin source) in a teacher's
image–text space: ``s(x, c)`` is the cosine between the image embedding and the embedding of
the prompt "a photo of a {c}.". The decision is *positive iff s(x, target) beats the mean
of the confusers' scores* (the "average negative prototype"); ranking metrics use the same
margin ``s(x, target) - mean_k s(x, confuser_k)`` (``score: target`` ranks by
``s(x, target)`` alone).

Tasks: for every target class and taxonomy distance ``d``, positives are images of the
target and as many negatives are drawn from the images of classes whose lowest common
ancestor with the target is *exactly* at rank ``d`` (``uniform``: any other class). A target
with no class at distance ``d`` is skipped and counted. Metrics per task: AUROC, FPR at 95%
TPR, macro-F1 of the decision; mean over tasks ± 95% CI, per distance and overall.

The *student* is scored: its image embedding (aligned to the teacher's joint space by the
method) against the teacher's text embeddings. Recipes train the student (from the pretrained
student, or from random weights for ``student_init="scratch"``) on the base classes with a
text-space head (:class:`kdbench.models.text_space.TextSpaceStudent`); reference rows
are the teacher itself and the pretrained student with a closed-form linear map into the
joint space. Embeddings of the evaluation images and label texts are computed once per
model and cached; tasks are index arithmetic over the cached matrices.

Pools live in :mod:`kdbench.data.pool`; task sampling, confusers and scoring in the
evaluation library :mod:`kdbench.oneclass`. This module keeps the config, the unit and the
record. At a precision (``kdbench run --precision``, docs/quantization.md) the subject's
image encoder is statically quantised and every metric is the quantised one, with
``auroc``'s fp32 twin and the drop paired over the tasks.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from kdbench import subjects
from kdbench.cache import cache_key, cached_tensors, numerics
from kdbench.data.pool import load_pool
from kdbench.metrics import mean_ci95, proportion_ci95
from kdbench.models.image_text import ImageTextModel
from kdbench.oneclass import (
    DISTANCES,
    UNIFORM,
    Tasks,
    TaskScores,
    cached_tasks,
    check_distances,
    choose_targets,
    draw_confusers,
    embed_pool,
    sample_tasks,
    score_tasks,
    zero_shot_correct,
)
from kdbench.protocols.base import ConfigError, MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.protocols.base_training import BASE_UNSUPPORTED, frozen_teacher_reason
from kdbench.protocols.configs import oneclass as oneclass_config
from kdbench.protocols.text_stage import text_space_encoder
from kdbench.quantization.scoring import precision_specs, quantise_student, twin_and_drop
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef


def _per_distance_specs() -> tuple[MetricSpec, ...]:
    specs = []
    for d in DISTANCES:
        where = "any other class" if d == UNIFORM else f"lowest common ancestor at {d}"
        specs += [
            MetricSpec(f"auroc_{d}", True, None, description=f"Mean AUROC, negatives: {where}."),
            MetricSpec(f"fpr95_{d}", False, None, description=f"Mean FPR at 95% TPR ({where})."),
            MetricSpec(f"f1_{d}", True, None, description=f"Mean macro-F1 ({where})."),
        ]
    return tuple(specs)


# -- the protocol ---------------------------------------------------------------------------


class OneClass(Protocol):
    name = "oneclass"
    student_key = "student"
    teacher_key = "teacher"
    version = 2
    config_models = oneclass_config.MODELS
    description = "Zero-shot one-class classification with confusers, per taxonomy distance."
    explanation = """\
Whether a small student can tell a class from look-alikes knowing only the class's name.
A method distils a student image encoder into the teacher's image–text space; the protocol
embeds images with the student and class names with the teacher's text tower, and decides
"is this the target?" by comparing an image's similarity to the target's name with its
similarity to the names of confusing classes (confusers).

Negatives come from the same dataset at controlled distances in its taxonomy (in the
Shapes world: another tone, colour, shape or only another pattern), so the per-distance
columns show where a student starts to confuse near relatives. The headline is the mean
AUROC over tasks (0.5 is chance, 1 is perfect); `fpr95` is the false-positive rate when
95% of the positives are accepted, and `f1` scores the yes/no decision itself.

The `teacher` row is the reference: the teacher's own image embeddings. `student` is the
pretrained student mapped into the joint space by a ridge regression, without distillation;
`supervised` trains the same text-space head on labels alone.
"""
    unsupported: ClassVar[dict[subjects.Subject, str]] = {
        **BASE_UNSUPPORTED,
        subjects.Subject.SCRATCH: (
            "oneclass runs no from-scratch reference row ({method!r}): its student stage "
            "adapts the pretrained student to the teacher's text space"
        ),
    }
    teacher_space = "joint"
    metrics = (
        MetricSpec(
            "auroc",
            True,
            None,
            headline=True,
            description="Mean AUROC over all tasks (every distance).",
        ),
        MetricSpec("fpr95", False, None, description="Mean FPR at 95% TPR over all tasks."),
        MetricSpec(
            "f1",
            True,
            None,
            description="Mean macro-F1 of 'target beats the mean confuser score'.",
        ),
        MetricSpec(
            "zero_shot_top1",
            True,
            "%",
            description="Zero-shot top-1 over the pool's class names (all pool images).",
        ),
        *_per_distance_specs(),
    )
    metrics += precision_specs([m for m in metrics if m.headline])
    quantisable = True

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        return oneclass_config.defaults(suite, smoke)

    def data_sections(
        self, config: dict[str, Any], subject: subjects.Subject
    ) -> dict[str, dict[str, Any]]:
        """The image pool, and the student stage's images for rows that train or map the
        student (the teacher row reads only the pool)."""
        sections = super().data_sections(config, subject)
        if subject is subjects.Subject.TEACHER:
            sections.pop("student_stage", None)
        return sections

    def supports(
        self, method: Component, registry: Registry | None = None, student: str | None = None
    ) -> str | None:
        return super().supports(method, registry, student) or frozen_teacher_reason(
            method, registry
        )

    # -- one unit ------------------------------------------------------------------------
    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device, seed = (
            context.config,
            context.registry,
            context.device,
            context.seed,
        )
        pool = load_pool(config["data"], registry, context.progress, context.cache_dir)
        task_config = config["tasks"]
        distances = task_config["distances"]
        if distances is None:  # every rank of the taxonomy above the class, or uniform
            distances = list(pool.levels[:-1]) if pool.levels else [UNIFORM]
        check_distances(distances, pool.levels)
        # targets and their confusers (a bad confuser file fails here, before any model work)
        targets = choose_targets(pool, task_config["max_targets"], seed)
        source_cfg = config["confusers"]
        source_c = registry.get("confusers", source_cfg["source"])
        source = source_c.load()(pool.vocabulary, **source_cfg["options"])
        confusers = draw_confusers(
            source, source_cfg["source"], pool, targets, int(source_cfg["k"]), seed
        )
        confuser_ref = ComponentRef(
            **source_c.ref(),
            options={
                **source_cfg["options"],
                "k": source_cfg["k"],
                "version": str(getattr(source, "version", "")),
            },
        )
        teacher_c = registry.get("teachers", config["teacher"]["name"])
        teacher: ImageTextModel = teacher_c.load()(**config["teacher"]["options"])
        if not isinstance(teacher, ImageTextModel):
            raise ConfigError(
                f"teacher {config['teacher']['name']!r} is not an image–text model; oneclass "
                "needs one with a text tower (e.g. shapes-clip, open_clip:ViT-B-16-quickgelu)"
            )
        teacher = teacher.to(device).eval()
        components = {
            "teacher": ComponentRef(**teacher_c.ref(), options=config["teacher"]["options"]),
            "student": ComponentRef(
                **registry.get("students", config["student"]["name"]).ref(),
                options=config["student"]["options"],
            ),
            "confusers": confuser_ref,
        }

        # label texts, once per teacher text tower, prompt and vocabulary
        prompt = config["prompt"]
        texts = [prompt.format(n) for n in pool.vocabulary.names]
        text_key = cache_key("oneclass-text", teacher.text_digest(), texts, numerics(device))
        text = cached_tensors(
            "oneclass-text",
            text_key,
            lambda: {"text": teacher.encode_text(texts).cpu()},
            context.cache_dir,
        )[0]["text"]

        # the subject's image embeddings of the pool, once per model
        subject = text_space_encoder(context, self.version, teacher, components)
        components.update(subject.components)
        eval_started = time.perf_counter()
        image_key = cache_key("oneclass-images", subject.digest, pool.digest, numerics(device))
        embeddings = cached_tensors(
            "oneclass-images",
            image_key,
            lambda: {
                "x": embed_pool(
                    subject.encode, pool, device=device, progress=context.progress
                ).cpu()
            },
            context.cache_dir,
        )[0]["x"]

        # tasks
        tasks_key = cache_key(
            "oneclass-tasks",
            self.version,
            seed,
            pool.digest,
            targets.tolist(),
            distances,
            task_config["positives"],
            task_config["per_target"],
        )
        tasks = cached_tasks(
            lambda: sample_tasks(
                pool,
                targets,
                distances,
                task_config["positives"],
                task_config["per_target"],
                seed,
            ),
            tasks_key,
            distances,
            context.cache_dir,
        )
        scores = score_tasks(
            embeddings, text, pool, targets, confusers, tasks, score=config["score"]
        )

        quantised = None
        if config.get("precision"):
            if subject.module is None or subject.calibration is None:
                raise ConfigError(
                    f"oneclass: {context.method.name!r} has no image encoder as a module, so "
                    "it cannot be scored at a precision; run it at fp32"
                )
            fp32_metrics, _, _ = self._aggregate(scores, tasks)
            quantised = quantise_student(
                subject.module, config["precision"], subject.calibration, progress=context.progress
            )
            embeddings = embed_pool(quantised, pool, device="cpu", progress=context.progress)
            fp32_auroc = scores.auroc
            scores = score_tasks(
                embeddings, text, pool, targets, confusers, tasks, score=config["score"]
            )

        metrics, statistics, notes = self._aggregate(scores, tasks)
        notes = subject.notes + notes
        if config["zero_shot_top1"]:
            correct = zero_shot_correct(embeddings, text, pool)
            acc, ci = proportion_ci95(correct, pool.num_images)
            metrics.append(self.metric("zero_shot_top1")(acc, ci95=ci, n=pool.num_images))
        if quantised is not None:
            metrics += twin_and_drop(self, fp32_metrics[0], fp32_auroc, scores.auroc)
            metrics += quantised.footprint_metrics(self)
            statistics["precision"] = quantised.statistics()
            statistics["per_task"]["fp32_auroc"] = np.round(fp32_auroc, 6).tolist()
            notes = quantised.notes + notes
        vocab = pool.vocabulary.names
        if len(targets) <= 2000:  # small enough to keep in the record
            statistics["confusers"] = {
                pool.names[t]: [vocab[c] for c in row if c >= 0]
                for t, row in zip(targets.tolist(), confusers.tolist())
            }
        statistics["targets"] = len(targets)
        statistics["score"] = config["score"]
        draws = {
            "tasks": tasks.digest(),
            "confusers": cache_key(confusers.tolist()),
            "pool": pool.digest,
        }
        if subject.base_digest:
            draws["base"] = subject.base_digest
        if quantised is not None:
            draws.update(quantised.draws())
        return UnitResult(
            metrics=metrics,
            dataset=pool.identity,
            components=components,
            draws=draws,
            statistics=statistics,
            notes=notes,
            train_seconds=subject.train_seconds,
            eval_seconds=time.perf_counter() - eval_started,
        )

    def _aggregate(
        self, scores: TaskScores, tasks: Tasks
    ) -> tuple[list[Any], dict[str, Any], list[str]]:
        """Metrics overall and per distance, the record's statistics, and notes."""
        metrics: list[Any] = []
        notes: list[str] = []
        per_distance: dict[str, Any] = {}
        names = {"auroc": scores.auroc, "fpr95": scores.fpr95, "f1": scores.f1}
        for name, values in names.items():
            if len(values):
                mean, ci = mean_ci95(values)
                metrics.append(self.metric(name)(mean, ci95=ci, n=len(values)))
            else:
                metrics.append(self.metric(name)(None, reason="no task could be drawn"))
        for di, distance in enumerate(tasks.distances):
            mask = tasks.distance == di
            skipped = tasks.skipped[distance]
            for name, values in names.items():
                spec = self.metric(f"{name}_{distance}")
                chosen = values[mask]
                if len(chosen):
                    mean, ci = mean_ci95(chosen)
                    metrics.append(spec(mean, ci95=ci, n=len(chosen)))
                else:
                    metrics.append(
                        spec(None, reason=f"no target has a class at distance {distance!r}")
                    )
            per_distance[distance] = {
                "tasks": int(mask.sum()),
                "skipped_targets": skipped,
            }
            if skipped:
                notes.append(
                    f"{skipped} target(s) have no class at distance {distance!r} in the pool "
                    "and were skipped there"
                )
        if tasks.short:
            notes.append(
                f"{tasks.short} task(s) have fewer positives than configured (too few images "
                "of the target or at the distance), balanced 1:1 all the same"
            )
        statistics = {
            "distances": per_distance,
            "skipped_targets": {d: tasks.skipped[d] for d in tasks.distances},
            "per_task": {
                "target": tasks.target.tolist(),
                "distance": [tasks.distances[d] for d in tasks.distance.tolist()],
                "positives": (tasks.labels == 1).sum(1).tolist(),
                "auroc": np.round(scores.auroc, 6).tolist(),
                "fpr95": np.round(scores.fpr95, 6).tolist(),
                "f1": np.round(scores.f1, 6).tolist(),
            },
        }
        return metrics, statistics, notes
