"""``segmentation`` (version 2): few-shot semantic segmentation, scored by mIoU.

The setting of arXiv 2401.11311 (reference code RedaBensaidDS/Foundation_FewShot): a
backbone gets a small head, BatchNorm + 1x1 conv on its patch tokens with the logits
upsampled bilinearly to the mask, trained with cross-entropy (ignore 255) on ``k`` support
images per class, and is scored by mIoU on a fixed evaluation set.

For one unit (method x seed) the protocol

1. gets the backbone to score: the base-class student the method distils (the stage shared
   with ``fewshot``, :mod:`kdbench.protocols.base_training`), or the teacher / the shipped
   student for the reference rows; it runs it at ``image_size`` (the position embeddings of
   a trained student are resampled to that grid);
2. draws, for every ``k`` in ``shots`` and every seed in ``draws``, a support set of
   ``k`` images per class from the support pool (:func:`kdbench.segmentation.draw_support`);
   the draws depend only on the pool, ``k`` and the draw seed, so every method sees the
   same support sets;
3. runs every adapter the config names, from the registry (built-in or from a plugin):
   for a ``frozen`` one (``linear``: final tokens, ``multilayer``: the last 4 layers
   concatenated) computes the backbone's token maps once per image (cached on disk per
   backbone digest and image set) and trains one head per (k, draw) on them; any other
   (``lora``, ``svf``, ``finetune``) starts from the frozen head on the layers it reads
   and trains the adapted backbone and the head together on the support images;
4. scores every head on the evaluation set, accumulating one dataset-level confusion matrix
   per (adapter, k, draw) with :func:`kdbench.metrics.confusion_matrix`; the last training
   step is scored (no selection on the evaluation set).

Metrics: ``miou`` (headline) is the first adapter's mIoU averaged over the configured k,
mean ± 95% CI over the draws; ``miou_<k>shot`` the first adapter's mIoU at each k;
``miou_<adapter>`` each adapter's average over k. Confusion matrices, per-draw values and
support indices are in ``statistics`` so a record can be rescored. At a precision
(``kdbench run --precision``, docs/quantization.md) each frozen adapter's heads are trained
and scored on the statically quantised backbone's token maps, the headline beside its fp32
twin and the drop paired over the draws; adapters that train the backbone are ``null``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from kdbench.data.scenes import SceneData, load_scenes
from kdbench.distillation import init_backbone
from kdbench.methods import Method
from kdbench.metrics.stats import mean_ci95
from kdbench.models.adapters import AdapterChoice, choose_adapter
from kdbench.models.backbone import resample_backbone
from kdbench.models.heads import SegmentationHead
from kdbench.models.segmenter import TokenMaps
from kdbench.protocols.base import ConfigError, Protocol, UnitContext, UnitResult
from kdbench.protocols.base_training import (
    BASE_UNSUPPORTED,
    base_student,
    default_base_config,
    frozen_teacher_reason,
)
from kdbench.protocols.configs import segmentation as segmentation_config
from kdbench.quantization.scoring import (
    QuantisedStudent,
    precision_specs,
    quantise_student,
    twin_and_drop,
)
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef, MetricFamily, MetricSpec
from kdbench.segmentation import (
    Key,
    PerShot,
    ShotScores,
    adapted_confusions,
    draw_support_sets,
    frozen_confusions,
    percent,
)
from kdbench.subjects import Subject, pretrained_role, subject_of
from kdbench.train import TrainConfig

SHOTS = (1, 2, 5, 10)
"""The k a record can report (PROTOCOLS.md §4)."""
SECTIONS = frozenset(
    {"base", "shots", "draws", "adapters", "head", "adapted", "batch_size", "cache_features"}
    | {"image_size", "data", "precision"}
)
"""The protocol's own config keys; any other top-level section holds the options of the
adapter it is named after (``multilayer``, ``lora``, ``svf`` by default)."""
ADAPTER_MIOU = MetricFamily(
    "miou_", "adapter", True, "%", description="mIoU with the {member} adapter, mean over k."
)
WHERE = "protocol 'segmentation'"


def configured_adapters(registry: Registry, config: dict[str, Any]) -> list[AdapterChoice]:
    """The adapters ``config["adapters"]`` names (:func:`choose_adapter`): options from the
    entry, else the config section named after the adapter; the learning rate of one that
    trains the backbone from the entry, else ``adapted.lr[<name>]``."""
    entries, out = config["adapters"], []
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{WHERE}: adapters needs at least one adapter, e.g. ['linear']")
    for entry in entries:
        choice = choose_adapter(
            registry,
            entry,
            options=lambda name: {} if name in SECTIONS else config.get(name) or {},
            lr=config["adapted"]["lr"].get,
            where=WHERE,
        )
        name = choice.name
        if name in SECTIONS or any(m.name == ADAPTER_MIOU.name(name) for m in METRICS):
            raise ConfigError(
                f"{WHERE}: an adapter cannot be called {name!r}, a setting or metric of this "
                "protocol has that name; register it under another name"
            )
        if any(a.name == name for a in out):
            raise ConfigError(f"{WHERE}: adapter {name!r} is listed twice in {entries}")
        out.append(choice)
    return out


METRICS = (
    MetricSpec(
        "miou",
        True,
        "%",
        headline=True,
        description="mIoU of the first adapter (linear head), mean over the configured k; "
        "mean ± 95% CI over the support draws.",
    ),
    *(
        MetricSpec(
            f"miou_{k}shot", True, "%", description=f"mIoU with {k} support image(s) per class."
        )
        for k in SHOTS
    ),
    MetricSpec(
        "absent_classes",
        False,
        None,
        description="Classes with zero union (IoU NaN, left out of the mean): the most in "
        "any (k, draw) of the first adapter.",
    ),
    MetricSpec(
        "train_seconds",
        False,
        "s",
        description="Wall-clock training time of the scored student (base-class stage).",
    ),
)


# -- the protocol ---------------------------------------------------------------------------


class Segmentation(Protocol):
    name = "segmentation"
    student_key = "base.student"
    teacher_key = "base.teacher"
    version = 2
    config_models = segmentation_config.MODELS
    description = "Few-shot semantic segmentation: a head on k images per class, mIoU."
    explanation = """\
How well a student's patch tokens segment images when a small head is trained on only `k`
labelled images per class (1, 2, 5 and 10), following the few-shot segmentation study of
arXiv 2401.11311. A method is scored through the student it distils on the base classes
(the stage shared with `fewshot`); the protocol freezes it, trains a small head (linear by
default) on its token maps for each `k` and each of three support draws shared by every
method, and scores mIoU on held-out scenes.

The headline `miou` is the mean over `k` and draws ± a 95% CI over the draws; the
`miou_<k>shot` columns show how it grows with more labelled images.

The rows `teacher` (the teacher itself) and `student` (the pretrained student as shipped)
are references; `supervised`, the student trained from random weights on the base-class
labels alone with the same budget, is the row a distillation method must beat. As in
`fewshot`, the shipped `student` was trained on far more base images than the base stage
allows, so it is not the bar for a method.
"""
    unsupported = BASE_UNSUPPORTED
    metrics = (*METRICS, *precision_specs([m for m in METRICS if m.headline]))
    quantisable = True
    metric_families = (ADAPTER_MIOU,)

    def data_sections(self, config: dict[str, Any], subject: Subject) -> dict[str, dict[str, Any]]:
        """The scenes, and the base classes for rows that train a student on them (the
        reference rows score the pretrained models as they are)."""
        sections = super().data_sections(config, subject)
        if subject in (Subject.TEACHER, Subject.STUDENT):
            sections.pop("base", None)
        return sections

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        return segmentation_config.defaults(suite, smoke, default_base_config(suite, smoke))

    def supports(
        self, method: Component, registry: Registry | None = None, student: str | None = None
    ) -> str | None:
        return super().supports(method, registry, student) or frozen_teacher_reason(
            method, registry
        )

    # -- one unit ------------------------------------------------------------------------
    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device = context.config, context.registry, context.device
        shots = [int(k) for k in config["shots"]]
        adapters = configured_adapters(registry, config)
        bad = [k for k in shots if k not in SHOTS]
        if bad or not shots or len(set(shots)) != len(shots):
            raise ConfigError(f"{WHERE}: shots {shots} must be distinct values from {list(SHOTS)}")
        if not config["draws"]:
            raise ConfigError(f"{WHERE}: draws needs at least one seed, e.g. [0, 1, 2]")
        method: Method = context.method.load()

        started = time.perf_counter()
        data = load_scenes(config, registry, context.progress)
        base_started = time.perf_counter()
        base = base_student(context, config["base"])
        base_elapsed = time.perf_counter() - base_started
        notes = list(base.notes)
        if method.recipe is not None and method.recipe.teacher_mode is None:
            notes.append(
                "this recipe uses no teacher: it is the from-scratch reference (random init, "
                "base-class labels only)"
            )
        subject_kind = subject_of(method)
        pretrained = subject_kind in (Subject.TEACHER, Subject.STUDENT)
        role = pretrained_role(subject_kind) if pretrained else "student"
        kind = f"{role}s"
        spec = config["base"][role]
        size = int(config["image_size"])
        if pretrained:  # as shipped: build at the size directly (timm resamples)
            subject = init_backbone(registry, kind, _with_size(spec, size))
        else:
            subject = resample_backbone(base.backbone, registry, kind, spec, size)
        subject = subject.eval()
        described = subject.to(device).describe()

        notes += data.notes
        support = draw_support_sets(data.presence, data.load_pool, shots, config["draws"])
        draws = dict(data.draws)
        for (k, d), s in support.draws.items():
            draws[f"support/{k}shot/draw{d}"] = s.digest
            notes += [
                f"{k}-shot draw {d}: class {data.classes[cls]!r} is shown by only {got} "
                "support image(s) (the pool has no more)"
                for cls, got in s.short.items()
            ]

        common: dict[str, Any] = dict(
            seed=context.seed,
            batch_size=config["batch_size"],
            device=device,
            progress=context.progress,
        )
        head_train = TrainConfig(epochs=1, **config["head"])
        adapted_train = TrainConfig(
            epochs=1,
            steps=config["adapted"]["steps"],
            batch_size=config["adapted"]["batch_size"],
            lr=0.0,  # each adapter's own
            weight_decay=config["head"]["weight_decay"],
        )
        cache_dir = context.cache_dir if config["cache_features"] else None

        def frozen(layers: tuple[int, ...], label: str, maps: Any = None):
            return frozen_confusions(
                subject, layers, data, support, train=head_train, cache_dir=cache_dir,
                label=label, maps=maps, **common,
            )  # fmt: skip

        precision = config.get("precision")
        if precision and not adapters[0].adapter.frozen:
            raise ConfigError(
                f"{WHERE}: at a precision the first adapter (the headline's) must read a "
                f"frozen backbone; {adapters[0].name!r} trains it. Put 'linear' first"
            )
        components = dict(base.components)
        results: dict[str, PerShot] = {}
        quantised: dict[str, PerShot] = {}
        at_precision: dict[tuple[int, ...], QuantisedStudent] = {}
        # frozen heads by the layers they read: where adapted runs start from
        heads: dict[tuple[int, ...], dict[Key, SegmentationHead]] = {}
        head_seconds = 0.0
        for entry in adapters:
            name, adapter = entry.name, entry.adapter
            components[f"adapter:{name}"] = ComponentRef(**entry.ref())
            t0 = time.perf_counter()
            layers = tuple(adapter.layers)
            if precision and not adapter.frozen:
                continue  # the adapted backbone is trained per support set: scored at fp32
            if precision:
                if layers not in at_precision:
                    pool = (len(data.presence), lambda rows: data.load_pool(rows)[0])
                    at_precision[layers] = quantise_student(
                        TokenMaps(subject, layers), precision, pool, progress=context.progress
                    )
                results[name], heads[layers] = frozen(layers, name)
                label = f"{name} {precision['name']}"
                quantised[name], _ = frozen(layers, label, maps=at_precision[layers])
            elif adapter.frozen:
                results[name], heads[layers] = frozen(layers, name)
            else:
                if layers not in heads:
                    _, heads[layers] = frozen(layers, f"{name} start")
                results[name] = adapted_confusions(
                    subject, adapter, heads[layers], data, support,
                    train=dataclasses.replace(adapted_train, lr=entry.lr), name=name, **common,
                )  # fmt: skip
            head_seconds += time.perf_counter() - t0

        if precision:
            metrics, statistics = self._at_precision(results, quantised, shots, config, data)
            for entry in adapters:
                if not entry.adapter.frozen:
                    reason = (
                        f"scored at fp32 only: the {entry.name} adapter trains the backbone "
                        "on each support set, so no one quantised model is scored"
                    )
                    metrics.append(self.metric(ADAPTER_MIOU.name(entry.name))(None, reason=reason))
            headline = at_precision[tuple(adapters[0].adapter.layers)]
            metrics += headline.footprint_metrics(self)
            notes += headline.notes
            draws.update(headline.draws())
            statistics["precision"] = headline.statistics()
        else:
            metrics, statistics = self._score(results, shots, config, data)
        statistics.update(
            backbone=described,
            classes=data.classes,
            support=support.summary(data.classes),
            head_seconds=round(head_seconds, 3),
        )
        notes.append(
            f"scored at {size} px input, token grid {described['grid_size'][0]}x"
            f"{described['grid_size'][1]}; last training step scored (no selection on the "
            "evaluation set)"
        )
        if base.train_seconds is None:
            metrics.append(
                self.metric("train_seconds")(None, reason="reference row: nothing is trained")
            )
        else:
            metrics.append(self.metric("train_seconds")(base.train_seconds))
        return UnitResult(
            metrics=metrics,
            dataset=data.identity,
            components=components,
            draws=draws,
            statistics=statistics,
            notes=notes,
            train_seconds=base.train_seconds,
            eval_seconds=time.perf_counter() - started - base_elapsed,
        )

    def _score(
        self, results: dict[str, PerShot], shots: list[int], config: dict[str, Any], data: SceneData
    ) -> tuple[list[Any], dict[str, Any]]:
        """Metrics from the confusion matrices, and the statistics to rescore them."""
        metrics: list[Any] = []
        statistics: dict[str, Any] = {
            "confusion": {},
            "miou_per_draw": {},
            "absent_per_draw": {},
            "draw_seeds": [int(d) for d in config["draws"]],
        }
        first = next(iter(results))
        for name, per_k in results.items():
            scores = ShotScores.of(per_k, shots)
            for key, value in scores.statistics().items():
                statistics[key][name] = value
            values = scores.percent
            metrics.append(self._mean_metric(ADAPTER_MIOU.name(name), values.mean(0)))
            if name != first:
                continue
            metrics.append(self._mean_metric("miou", values.mean(0)))
            for row, k in enumerate(shots):
                metrics.append(self._mean_metric(f"miou_{k}shot", values[row]))
            metrics.append(self.metric("absent_classes")(scores.absent))
            largest = max(shots)
            statistics["per_class_iou"] = {
                "adapter": name,
                "shots": largest,
                "iou": {c: percent(v) for c, v in zip(data.classes, scores.per_class(largest))},
            }
        return metrics, statistics

    def _at_precision(
        self,
        fp32: dict[str, PerShot],
        quantised: dict[str, PerShot],
        shots: list[int],
        config: dict[str, Any],
        data: SceneData,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Metrics of the quantised backbone's heads, the headline's fp32 twin and its drop
        paired over the support draws (each draw's mIoU averaged over k), and the fp32
        statistics beside the quantised ones."""
        metrics, statistics = self._score(quantised, shots, config, data)
        fp32_metrics, fp32_statistics = self._score(fp32, shots, config, data)
        first = next(iter(fp32))
        per_draw = ShotScores.of(fp32[first], shots).percent.mean(0)
        q_per_draw = ShotScores.of(quantised[first], shots).percent.mean(0)
        both = np.isfinite(per_draw) & np.isfinite(q_per_draw)
        headline = next(m for m in fp32_metrics if m.name == "miou")
        metrics += twin_and_drop(self, headline, per_draw[both], q_per_draw[both])
        statistics["fp32"] = {
            key: fp32_statistics[key] for key in ("confusion", "miou_per_draw", "absent_per_draw")
        }
        return metrics, statistics

    def _mean_metric(self, name: str, values: np.ndarray):
        spec = self.metric(name)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return spec(None, reason="no class has a non-zero union in any draw")
        mean, ci = mean_ci95(finite)
        return spec(mean, ci95=ci, n=int(finite.size))


def _with_size(spec: dict[str, Any], size: int) -> dict[str, Any]:
    return {**spec, "options": {**spec.get("options", {}), "img_size": size}}
