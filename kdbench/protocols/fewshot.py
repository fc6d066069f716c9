"""``fewshot`` (version 1): 1-shot and 5-shot classification from a distilled student.

A method distils a student backbone from the teacher on the *base* classes (the shared
base stage, :mod:`kdbench.protocols.base_training`; the MobileViT few-shot work pre-trains
its student this way). The protocol then freezes the backbone and scores nearest class
mean (NCM) on episodes of *novel* classes: 5-way, 1 and 5 shots, 15 queries per class,
10,000 episodes per shot setting, on features centred on the base-class mean of the same
backbone and L2-normalised. Episodes come from the unit's seed, so every method with the
same seed is scored on identical episodes (their sha256 is in the record's ``draws``).

Reference rows: ``teacher`` (the teacher backbone), ``student`` (the pretrained student as
shipped) and ``supervised`` (the student from random weights trained on base-class labels
alone: the from-scratch reference every distillation method is compared with).

Metrics per shot setting: mean accuracy over episodes with its 95% CI, and the accuracy
predicted from the support sets alone by a model of the features on the unit sphere
(:func:`kdbench.fewshot_estimate.estimate_accuracy`, an experimental estimate); for five shots also
leave-one-out on the support sets (:func:`kdbench.fewshot_estimate.loo_accuracy`), the baseline the
estimate is compared with. The per-episode counts of correct queries are stored, so a
record can be rescored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors, numerics, tensor_digest
from kdbench.data.base_classes import load_base_data
from kdbench.data.novel import NovelData, episodes_identity, load_novel
from kdbench.fewshot import (
    ncm_accuracy,
    sample_episodes,
    summarize,
)
from kdbench.fewshot_estimate import (
    estimate_accuracy,
    loo_accuracy,
    within_class_statistics,
)
from kdbench.models.backbone import Backbone
from kdbench.protocols.base import ConfigError, MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.protocols.base_training import (
    BASE_UNSUPPORTED,
    base_features,
    base_student,
    default_base_config,
    frozen_teacher_reason,
)
from kdbench.protocols.configs import fewshot as fewshot_config
from kdbench.quantization.scoring import precision_specs, quantise_student, twin_and_drop
from kdbench.registry import Component, Registry
from kdbench.subjects import Subject
from kdbench.train import predict

SHOTS = (1, 5)


def novel_features(
    backbone: Backbone, data: NovelData, *, device: str, progress: Callable[..., Any]
) -> torch.Tensor:
    """Pooled embeddings of the frozen ``backbone`` on the novel images, computed once per
    (weights, preprocessing, data) and cached."""
    key = cache_key(
        "novel-features",
        tensor_digest(backbone),
        backbone.preprocess.as_dict(),
        data.digest,
        numerics(device),
    )

    def compute() -> dict[str, torch.Tensor]:
        model = backbone.to(device).eval()
        if data.stream is not None:  # files: decoded by workers while the model runs
            return {"features": data.stream(model, device, progress)}
        images, _ = data.load()
        feats = predict(model, images, device=device, progress=progress, desc="features")
        return {"features": feats}

    return cached_tensors("fewshot-features", key, compute)[0]["features"]


class FewShot(Protocol):
    name = "fewshot"
    student_key = "base.student"
    teacher_key = "base.teacher"
    version = 2
    config_models = fewshot_config.MODELS
    description = "1-shot and 5-shot NCM on novel classes from a student distilled on base classes."
    explanation = """\
Whether a student distilled on one set of classes has features good enough for classes
it never saw, given one or five labelled images of each. A method trains a student on the
**base** classes; the protocol freezes it and scores nearest class mean (NCM) on 5-way
episodes of **novel** classes: 1-shot and 5-shot, 15 queries per class, 10,000 episodes
per setting, identical for every method of a seed. The headline is the mean accuracy over
episodes ± its 95% CI; `est_acc_*` predicts the same accuracy without reading a query
label.

The base stage trains every method's student **from random weights** on a short, fixed
budget (in the embedded suite, 4 epochs over 100 images per base class), so rows differ
only by what the method adds. `supervised` is the same budget with labels alone: the row a
distillation method must beat.

Why the `student` reference row scores above every distilled row: it is the pretrained
student as shipped, trained on far more base images than the base stage allows (in the
embedded suite, 1,000 per class instead of 100). It shows what the architecture can reach,
not what a method adds; compare distilled rows with `supervised`, which had the same
budget.
"""
    unsupported = BASE_UNSUPPORTED
    metrics = (
        MetricSpec(
            "acc_1shot",
            True,
            "%",
            headline=True,
            description="5-way 1-shot NCM accuracy on novel classes, mean over episodes.",
        ),
        MetricSpec(
            "acc_5shot",
            True,
            "%",
            headline=True,
            description="5-way 5-shot NCM accuracy on novel classes, mean over episodes.",
        ),
        MetricSpec(
            "est_acc_1shot",
            True,
            "%",
            description=(
                "Experimental estimate: 1-shot accuracy predicted from the support sets "
                "alone (Gaussian classes on the unit sphere), no query label read."
            ),
        ),
        MetricSpec(
            "est_acc_5shot",
            True,
            "%",
            description=(
                "Experimental estimate: 5-shot accuracy predicted from the support sets "
                "alone (Gaussian classes on the unit sphere), no query label read."
            ),
        ),
        MetricSpec(
            "loo_acc_5shot",
            True,
            "%",
            description=(
                "5-shot accuracy by leave-one-out on each support set (each shot classified "
                "by the other four), no query read: the baseline for est_acc_5shot."
            ),
        ),
        MetricSpec(
            "train_seconds", False, "s", description="Wall-clock time of the base-class stage."
        ),
    )
    metrics += precision_specs([m for m in metrics if m.headline])
    quantisable = True

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        common: dict[str, Any] = {
            "ways": 5,
            "shots": list(SHOTS),
            "queries": 15,
            "episodes": 100 if smoke else 10_000,
            "estimate": {"draws": 4 if smoke else 16},
        }
        if suite == "embedded":
            return {
                "base": default_base_config(suite, smoke),
                "novel": {"per_class": 20 if smoke else 40, "domain": "base"},
                **common,
            }
        return {
            "base": default_base_config(suite, smoke),
            "novel": {
                "dataset": "miniimagenet",
                "root": None,
                "split": "test",
                "image_size": 84,
                "resize": 92,
            },
            **common,
        }

    def data_sections(self, config: dict[str, Any], subject: Subject) -> dict[str, dict[str, Any]]:
        """The base and novel sections; the novel one reads the base folder (and its loader
        options) when it names the same dataset and no folder of its own."""
        sections = super().data_sections(config, subject)
        novel, base = sections.get("novel"), sections.get("base")
        if novel is not None and base is not None and novel.get("dataset") == base.get("dataset"):
            novel = dict(novel)
            if not novel.get("root"):
                novel["root"] = base.get("root")
                novel.setdefault("options", base.get("options") or {})
            sections["novel"] = novel
            if not novel["root"]:  # it follows the base folder: one problem, said once
                del sections["novel"]
        return sections

    @staticmethod
    def _shot_metrics(shots: int) -> tuple[str, ...]:
        """The metrics of one shot setting: leave-one-out needs two shots or more."""
        names = (f"acc_{shots}shot", f"est_acc_{shots}shot")
        return (*names, f"loo_acc_{shots}shot") if shots >= 2 else names

    def supports(
        self, method: Component, registry: Registry | None = None, student: str | None = None
    ) -> str | None:
        return super().supports(method, registry, student) or frozen_teacher_reason(
            method, registry
        )

    def _score(
        self,
        config: dict[str, Any],
        feats: torch.Tensor,
        base_feats: torch.Tensor,
        base_labels: torch.Tensor,
        novel: NovelData,
        episodes: dict[int, Any],
        seed: int,
    ) -> tuple[list[Any], dict[str, Any], dict[int, np.ndarray]]:
        """The shot metrics of one backbone's features, its statistics and the per-episode
        accuracies (for paired comparisons)."""
        center = base_feats.double().mean(0)
        scatter = within_class_statistics(base_feats, base_labels.numpy(), center=center)
        metrics: list[Any] = []
        statistics: dict[str, Any] = {}
        accuracies: dict[int, np.ndarray] = {}
        queries_per_episode = config["ways"] * config["queries"]
        for k in SHOTS:
            if k not in episodes:
                for name in self._shot_metrics(k):
                    metrics.append(self.metric(name)(None, reason=f"{k}-shot not configured"))
                continue
            acc = ncm_accuracy(feats, novel.labels, episodes[k], center=center)
            accuracies[k] = np.asarray(acc)
            mean, ci = summarize(acc)
            metrics.append(self.metric(f"acc_{k}shot")(mean, ci95=ci, n=len(acc)))
            est = estimate_accuracy(
                feats,
                novel.labels,
                episodes[k],
                center=center,
                within_variance=scatter.variance,  # used for one shot only
                dim=scatter.class_dim,
                draws=config["estimate"]["draws"],
                seed=seed,
            )
            est_mean, est_ci = summarize(est)
            metrics.append(self.metric(f"est_acc_{k}shot")(est_mean, ci95=est_ci, n=len(est)))
            if k >= 2:
                loo = loo_accuracy(feats, novel.labels, episodes[k], center=center)
                loo_mean, loo_ci = summarize(loo)
                metrics.append(self.metric(f"loo_acc_{k}shot")(loo_mean, ci95=loo_ci, n=len(loo)))
            statistics[f"correct_{k}shot"] = np.rint(acc * queries_per_episode).astype(int).tolist()
        statistics.update(
            queries_per_episode=queries_per_episode,
            feature_dim=int(feats.shape[1]),
            base_within_variance=scatter.variance,
            base_effective_dim=scatter.effective_dim,
            base_class_dim=scatter.class_dim,
        )
        return metrics, statistics, accuracies

    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device = context.config, context.registry, context.device
        shots = config["shots"]
        if not shots or any(k not in SHOTS for k in shots) or len(set(shots)) != len(shots):
            raise ConfigError(
                f"fewshot: shots must be a non-empty subset of {list(SHOTS)} (the protocol "
                f"reports acc_1shot and acc_5shot), got {shots!r}"
            )
        # Draw the episodes first: a split too small for them fails before any training.
        novel = load_novel(config, registry, context.progress, key="fewshot.novel")
        episodes = {
            k: sample_episodes(
                novel.labels,
                config["ways"],
                k,
                config["queries"],
                config["episodes"],
                context.seed,
                class_names=novel.class_names,
            )
            for k in shots
        }
        subject = base_student(context, config["base"])
        eval_started = time.perf_counter()
        backbone = subject.backbone.eval()
        base = load_base_data(config["base"], registry, context.progress, key="fewshot.base")
        base_feats = base_features(backbone, base, device=device, progress=context.progress)
        feats = novel_features(backbone, novel, device=device, progress=context.progress)
        metrics, statistics, accuracies = self._score(
            config, feats, base_feats, base.labels, novel, episodes, context.seed
        )
        quantised = None
        if config.get("precision"):
            quantised = quantise_student(
                backbone, config["precision"], base.images, progress=context.progress
            )
            q_base = predict(quantised, base.images, progress=context.progress, desc="base q")
            q_feats = predict(quantised, novel.load()[0], progress=context.progress, desc="q")
            q_metrics, q_statistics, q_accuracies = self._score(
                config, q_feats, q_base, base.labels, novel, episodes, context.seed
            )
            for k in episodes:
                fp32 = next(m for m in metrics if m.name == f"acc_{k}shot")
                q_metrics += twin_and_drop(self, fp32, 100 * accuracies[k], 100 * q_accuracies[k])
                q_statistics[f"fp32_correct_{k}shot"] = statistics[f"correct_{k}shot"]
            q_metrics += quantised.footprint_metrics(self)
            q_statistics["precision"] = quantised.statistics()
            metrics, statistics = q_metrics, q_statistics
        if subject.train_seconds is None:
            metrics.append(
                self.metric("train_seconds")(None, reason="reference row: nothing is trained")
            )
        else:
            metrics.append(self.metric("train_seconds")(subject.train_seconds))
        notes = list(subject.notes) + (quantised.notes if quantised is not None else [])
        recipe = getattr(context.method.load(), "recipe", None)
        if recipe is not None and recipe.teacher_mode is None:
            notes.append(
                f"{context.method.name} uses no teacher: it is the from-scratch reference, the "
                "student from random weights trained on base-class labels alone"
            )
        notes.append(
            f"{config['ways']}-way episodes with {config['queries']} queries per class; NCM "
            "on pooled features centred on the base-class mean of the same backbone and "
            "L2-normalised"
        )
        notes.append(
            "est_acc (experimental): Gaussian classes projected on the unit sphere, fitted "
            "to each episode's support set with the per-class dimension and (for one shot) "
            "the variance of the base classes' scatter, five shots extrapolated to no "
            "support noise; loo_acc: leave-one-out on the support set; no query label is read"
        )
        notes.append("no model selection: the base stage's last epoch is scored")
        identity = episodes_identity(base.identity, novel.identity)
        draws = {f"episodes_{k}shot": episodes[k].sha256() for k in episodes}
        draws.update(novel=novel.digest, base=base.digest)
        if quantised is not None:
            draws.update(quantised.draws())
        return UnitResult(
            metrics=metrics,
            dataset=identity,
            components=subject.components,
            draws=draws,
            statistics=statistics,
            notes=notes,
            train_seconds=subject.train_seconds,
            eval_seconds=time.perf_counter() - eval_started,
        )
