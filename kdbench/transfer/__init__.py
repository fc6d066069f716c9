"""Transfer sets: the unlabelled images that label-free losses see while a student is
distilled, as a registrable kind (``kdbench_register_transfer_sets``).

A transfer set is an object with ``build(request: TransferRequest) -> TransferImages``. A
recipe names one (``Recipe.transfer_set``: a name; ``True`` means ``task`` and ``False``
``none``, as before names existed); a run overrides it with ``--set
distill.transfer=NAME[:key=value,...]``. The record names it as the component
``transfer_set``, with its size and the sha256 of its image list.

Built-ins (:mod:`kdbench.transfer.sets`): ``task`` (the task's own unlabelled images),
``generic`` (images drawn at random from a generic pool), ``retrieved`` (query-balanced
nearest neighbours of the task's labelled images in that pool) and ``none``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from kdbench.data.downstream import TaskData
    from kdbench.registry import Registry
    from kdbench.transfer.pool import GenericPool
    from kdbench.transfer.retrieval import Retrieval


def transfer_name(choice: bool | str | None) -> str:
    """The transfer set a recipe's ``transfer_set`` names: ``True`` -> ``task``,
    ``False``/``None`` -> ``none``, a name as it is."""
    if choice is True:
        return "task"
    if choice is False or choice is None:
        return "none"
    return str(choice)


def parse_transfer(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:key=value,...]`` -> (name, options), values JSON when they parse."""
    from kdbench.unit_place import parse_model_spec

    spec = parse_model_spec(text)
    return spec["name"], spec["options"]


@dataclass
class TransferRequest:
    """What a transfer set is built from."""

    task: TaskData
    """The downstream task: its labelled images are retrieval's queries."""
    section: dict[str, Any]
    """The protocol's ``data`` config section (which dataset, image size)."""
    seed: int
    options: dict[str, Any]
    """The transfer set's options (``--set distill.transfer=NAME:key=value``)."""
    registry: Registry
    device: str
    models: dict[str, Callable[[], torch.nn.Module]] = field(default_factory=dict)
    """Pretrained backbones by role (``teacher``, ``student``), built on demand."""
    progress: Callable[..., Any] | None = None
    smoke: bool = False
    cache_root: Path | None = None

    @property
    def size(self) -> int:
        """The fixed size of pool-drawn sets: option ``size``, else the size of the task's
        own transfer set, so every set of a comparison has the same number of images."""
        size = self.options.get("size", len(self.task.transfer_images))
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(
                "a transfer set drawn from a pool needs a size: the task has no transfer "
                "images to match, so give one, e.g. --set distill.transfer=generic:size=10000"
            )
        return size

    def pool(self) -> GenericPool:
        """The generic pool of the task's dataset (see ``DataSource.generic_pool``)."""
        from kdbench.data.source import open_source

        source = open_source(self.registry, self.section, "distill.data")
        return source.generic_pool(self.section, self.options, self)


@dataclass
class TransferImages:
    """A built transfer set: its images, a stable name per image, and what to record."""

    name: str
    images: torch.Tensor
    image_ids: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    """What the record's component says besides size and sha256 (pool, retrieval model)."""
    notes: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    """Measured figures for the record's statistics (composition, search time)."""
    pool: GenericPool | None = None
    indices: np.ndarray | None = None
    """Pool indices of the images, for sets drawn from a pool."""
    retrieval: Retrieval | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def images_sha256(self) -> str:
        """sha256 of the image list (one name per line)."""
        return hashlib.sha256("\n".join(self.image_ids).encode()).hexdigest()

    def record_options(self) -> dict[str, Any]:
        return {"size": len(self), "images_sha256": self.images_sha256, **self.options}


def build_transfer(name: str, request: TransferRequest) -> TransferImages:
    """The registered transfer set ``name`` built for ``request``."""
    target = request.registry.get("transfer_sets", name).load()
    obj = target() if isinstance(target, type) else target
    return obj.build(request)


def distill_transfer(
    config: dict[str, Any],
    data: TaskData,
    seed: int,
    default: str,
    registry: Registry,
    device: str,
    *,
    progress: Callable[..., Any] | None = None,
    smoke: bool = False,
    cache_root: Path | None = None,
) -> TransferImages:
    """The transfer set ``config["transfer"]`` names (``NAME[:key=value,...]``), else
    ``default``, built for the task ``data`` and ``seed``; retrieval embeds with the
    config's pretrained teacher (or student)."""
    from kdbench.distillation import init_backbone

    name, options = parse_transfer(config["transfer"]) if config.get("transfer") else (default, {})
    models = {
        "teacher": lambda: init_backbone(registry, "teachers", config["teacher"]),
        "student": lambda: init_backbone(registry, "students", config["student"]),
    }
    request = TransferRequest(
        task=data,
        section=config["data"],
        seed=seed,
        options=options,
        registry=registry,
        device=device,
        models=models,
        progress=progress,
        smoke=smoke,
        cache_root=cache_root,
    )
    return build_transfer(name, request)
