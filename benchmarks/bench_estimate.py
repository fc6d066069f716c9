"""Calibration of the few-shot accuracy estimate (``est_acc_*``) and of leave-one-out.

Each row is a bank of novel-class features with its base classes, scored as the
``fewshot`` protocol scores them: features centred on the base-class mean and
L2-normalised, the base classes' within-class variance (for one shot) and per-class
dimension (:func:`kdbench.fewshot_estimate.within_class_statistics`), 5-way episodes with 15
queries per class, 1 and 5 shots. Per row and shot setting: the measured NCM accuracy,
the estimate (:func:`kdbench.fewshot_estimate.estimate_accuracy`), leave-one-out on the support
(:func:`kdbench.fewshot_estimate.loo_accuracy`, five shots) and the first estimate
(``tests/fewshot_reference.py``: the Gaussian model without the sphere, plug-in distances,
the pooled participation ratio as dimension), each minus the measurement.

Rows:

* ``synthetic d=16|64|256``: isotropic Gaussian classes ``N(μ_c, I_d)``, 64 base and 20
  novel classes of 100 images, class means in random directions at a common norm
  ``|μ_c|² = 1.5·√d`` (about 60% one-shot accuracy at every ``d``); 1,000 episodes.
* ``shapes student|teacher|vit-xs``: the embedded suite's features from the shipped
  pretrained ``shapes-student``, ``shapes-teacher`` and ``shapes-vit-xs`` (no
  distillation), on the protocol's own base (100 per class) and novel (40 per class)
  images, episodes of seed 0 as the protocol draws them; 10,000 episodes, as the protocol
  scores them. The features are computed once and cached (``KDBENCH_CACHE``); the teacher
  takes about two minutes on a 2-core CPU.

Printed at the end, as the table in ``docs/protocols/fewshot.md``; the pytest-benchmark
timing is the estimate of each setting. Run::

    PYTHONPATH=. python -m pytest benchmarks/bench_estimate.py --benchmark-only -p no:cacheprovider
    PYTHONPATH=. python benchmarks/bench_estimate.py          # the table only, no timing
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from kdbench.fewshot import (
    ncm_accuracy,
    sample_episodes,
)
from kdbench.fewshot_estimate import (
    estimate_accuracy,
    loo_accuracy,
    within_class_statistics,
)
from tests.fewshot_reference import gaussian_estimate_v1

WAYS, QUERIES, SHOTS = 5, 15, (1, 5)
SYNTHETIC_DIMS = (16, 64, 256)
SHAPES_BACKBONES = ("shapes-student", "shapes-teacher", "shapes-vit-xs")
SEPARATION = 1.5  # |μ_c|² = SEPARATION·√d: about 60% one-shot accuracy at every d


@dataclass(frozen=True)
class Bank:
    name: str
    base: np.ndarray
    base_labels: np.ndarray
    novel: np.ndarray
    novel_labels: np.ndarray
    episodes: int


def synthetic_bank(dim: int, seed: int = 0) -> Bank:
    """Isotropic Gaussian classes in ``dim`` dimensions: 64 base, 20 novel, 100 images each."""
    g = np.random.default_rng([seed, dim])

    def classes(count: int, per_class: int = 100) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(count), per_class)
        means = g.standard_normal((count, dim))
        means *= np.sqrt(SEPARATION * np.sqrt(dim)) / np.linalg.norm(means, axis=1)[:, None]
        features = means[labels] + g.standard_normal((count * per_class, dim))
        return features.astype(np.float32), labels

    base, base_labels = classes(64)
    novel, novel_labels = classes(20)
    return Bank(f"synthetic d={dim}", base, base_labels, novel, novel_labels, 1_000)


def shapes_bank(backbone: str) -> Bank:
    """Features of a shipped pretrained Shapes backbone on the fewshot protocol's images."""
    from kdbench.data.base_classes import load_base_data
    from kdbench.data.novel import load_novel
    from kdbench.distillation import init_backbone
    from kdbench.plugins import get_registry
    from kdbench.protocols.base_training import base_features
    from kdbench.protocols.fewshot import FewShot, novel_features

    registry = get_registry()
    config = FewShot().default_config("embedded", smoke=False)
    kind = "teachers" if backbone == config["base"]["teacher"]["name"] else "students"
    model = init_backbone(registry, kind, {"name": backbone, "options": {}}).eval()
    quiet: Callable = lambda items, **_: items  # noqa: E731
    base = load_base_data(config["base"], registry, quiet, key="fewshot.base")
    novel = load_novel(config, registry, quiet, key="fewshot.novel")
    base_f = base_features(model, base, device="cpu", progress=quiet).numpy()
    novel_f = novel_features(model, novel, device="cpu", progress=quiet).numpy()
    name = f"shapes {backbone.removeprefix('shapes-')}"
    return Bank(name, base_f, base.labels.numpy(), novel_f, novel.labels, config["episodes"])


@cache
def bank(name: str) -> Bank:
    if name.startswith("synthetic"):
        return synthetic_bank(int(name.split("=")[1]))
    return shapes_bank(name)


BANKS = [f"synthetic d={d}" for d in SYNTHETIC_DIMS] + list(SHAPES_BACKBONES)


def calibration(b: Bank, shots: int, estimate: Callable | None = None) -> dict[str, float]:
    """Measured NCM accuracy and each prediction, in % (means over episodes)."""
    center = b.base.astype(np.float64).mean(0)
    scatter = within_class_statistics(b.base, b.base_labels, center=center)
    episodes = sample_episodes(b.novel_labels, WAYS, shots, QUERIES, b.episodes, seed=0)
    args = (b.novel, b.novel_labels, episodes)

    def new() -> np.ndarray:
        return estimate_accuracy(
            *args, center=center, within_variance=scatter.variance, dim=scatter.class_dim
        )

    row = {"measured": 100 * ncm_accuracy(*args, center=center).mean()}
    row["estimate"] = 100 * (estimate(new) if estimate else new()).mean()
    old = gaussian_estimate_v1(
        *args, center=center, within_variance=scatter.variance, dim=scatter.effective_dim
    )
    row["old"] = 100 * old.mean()
    row["loo"] = 100 * loo_accuracy(*args, center=center).mean() if shots >= 2 else np.nan
    return row


RESULTS: dict[tuple[str, int], dict[str, float]] = {}


def table(results: dict[tuple[str, int], dict[str, float]]) -> str:
    """The calibration table (markdown): differences from the measurement, in points."""
    lines = [
        "| features | shots | measured | estimate − measured | leave-one-out − measured "
        "| first estimate − measured |",
        "|---|---|---|---|---|---|",
    ]
    errors: dict[tuple[str, int], dict[str, list[float]]] = {}
    for (name, shots), r in results.items():
        diff = {k: r[k] - r["measured"] for k in ("estimate", "loo", "old")}
        loo = "–" if np.isnan(diff["loo"]) else f"{diff['loo']:+.1f}"
        lines.append(
            f"| {name} | {shots} | {r['measured']:.1f} | {diff['estimate']:+.1f} | {loo} "
            f"| {diff['old']:+.1f} |"
        )
        group = errors.setdefault((name.split()[0], shots), {})
        for k, v in diff.items():
            group.setdefault(k, []).append(abs(v))
    for (kind, shots), e in errors.items():
        mean = {k: np.mean(v) for k, v in e.items()}
        loo = "–" if np.isnan(mean["loo"]) else f"{mean['loo']:.1f}"
        lines.append(
            f"| mean \\|error\\|, {kind} | {shots} | | {mean['estimate']:.1f} | {loo} "
            f"| {mean['old']:.1f} |"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("shots", SHOTS)
@pytest.mark.parametrize("name", BANKS)
def test_estimate(benchmark, name, shots):
    b = bank(name)
    benchmark.group = f"estimate, {b.episodes:,} episodes"
    timed = lambda run: benchmark.pedantic(run, rounds=1)  # noqa: E731
    RESULTS[(b.name, shots)] = row = calibration(b, shots, timed)
    benchmark.extra_info.update({k: round(v, 2) for k, v in row.items()})


@pytest.fixture(scope="module", autouse=True)
def calibration_table(request):
    yield
    if RESULTS:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print("\n" + table(RESULTS))


if __name__ == "__main__":
    only = sys.argv[1:] or BANKS
    for name in only:
        for shots in SHOTS:
            RESULTS[(bank(name).name, shots)] = calibration(bank(name), shots)
            print(
                name,
                shots,
                {k: round(v, 2) for k, v in RESULTS[(bank(name).name, shots)].items()},
                flush=True,
            )
    print(table(RESULTS))
