"""The teacher stage of task-specific distillation: adapt a teacher to a task, or load it
from the cache.

A teacher mode names a registered adapter (``lp`` linear probe, ``ft`` fine-tune, ``lora``,
or a plugin's). :func:`adapt_teacher` applies it to the pretrained teacher, puts a head for
the task's classes on it and trains it on the task's labelled images for a fixed number of
epochs. The result is cached per (teacher weights, mode, adapter options, training images,
seed, budget, learning rate, numerics), so every method of a seed that adapts the teacher
the same way shares one adaptation, under a file lock when jobs run side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdbench.cache import (
    cache_key,
    entry_lock,
    load_module_state,
    numerics,
    save_module_state,
    tensor_digest,
)
from kdbench.data.downstream import TaskData
from kdbench.distillation import Classifier, fit_linear_probe, init_backbone
from kdbench.models.adapters import teacher_adapter
from kdbench.phases import in_phase
from kdbench.registry import Registry
from kdbench.train import TrainConfig, fit


def teacher_lr(rates: dict[str, float], mode: str, frozen: bool) -> float:
    """The teacher's learning rate for ``mode``: ``lr.<mode>`` when the config has it, else
    the linear-probe rate for a frozen adapter and the fine-tuning rate for the others."""
    if mode in rates:
        return rates[mode]
    return rates["lp" if frozen else "ft"]


@dataclass
class AdaptedTeacher:
    model: Classifier
    seconds: float
    """Wall-clock seconds the adaptation took when it was made, also when it is reused."""
    cached: bool
    """Whether it came from the cache."""


@in_phase("teacher")
def adapt_teacher(
    registry: Registry,
    config: dict[str, Any],
    mode: str,
    options: dict[str, Any],
    data: TaskData,
    *,
    seed: int,
    device: str,
    cache_root: Path,
    work_dir: Path,
    progress: Callable[..., Any] | None = None,
    version: int = 2,
) -> AdaptedTeacher:
    """The teacher ``config["teacher"]`` adapted to ``data`` with ``mode``.

    ``config`` is the ``distill`` protocol's: ``teacher``, ``teacher_epochs``,
    ``batch_size``, ``lr`` (per mode) and ``lora`` (the LoRA adapter's defaults, under the
    method's ``options``). ``version`` is the protocol version the cache key carries.
    """
    adapter_c = teacher_adapter(registry, mode)
    adapter_cls = adapter_c.load()
    options = {**(config["lora"] if adapter_c.name == "lora" else {}), **options}
    backbone = init_backbone(registry, "teachers", config["teacher"])
    lr = teacher_lr(config["lr"], mode, frozen=bool(getattr(adapter_cls, "frozen", False)))
    epochs, batch_size = config["teacher_epochs"], config["batch_size"]
    key = cache_key(
        "distill-teacher",
        version,
        tensor_digest(backbone),
        mode,
        options,
        data.draws["train"],
        seed,
        epochs,
        batch_size,
        lr,
        numerics(device),
    )
    folder = cache_root / "distill-teachers"
    with entry_lock(folder, key):  # concurrent jobs never adapt it twice
        adapter = adapter_cls(**options)
        adapter.apply(backbone)
        teacher = Classifier(backbone, data.num_classes)
        cached = load_module_state(teacher, folder, key)
        if cached is not None:
            return AdaptedTeacher(teacher, float(cached["train_seconds"]), True)
        steps = epochs * -(-len(data.train_labels) // batch_size)
        budget = TrainConfig(epochs=1, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        started = time.perf_counter()
        if adapter.frozen:  # linear probe: the backbone's embeddings never change
            fit_linear_probe(
                teacher, data.train_images, data.train_labels, budget,
                device=device, progress=progress,
            )  # fmt: skip
        else:
            fit(
                _ClassifierStep(teacher),
                (data.train_images, data.train_labels),
                budget,
                device=device,
                checkpoint=work_dir / "teacher.pt",
                progress=progress,
                desc=f"teacher {mode}",
            )
        seconds = time.perf_counter() - started
        save_module_state(teacher, folder, key, {"train_seconds": seconds, "mode": mode})
        return AdaptedTeacher(teacher, seconds, False)


class _ClassifierStep(torch.nn.Module):
    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.model(images), labels)
