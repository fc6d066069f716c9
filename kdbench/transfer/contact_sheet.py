"""A contact sheet of retrieval: query images and the pool images retrieved for them, so a
person can see what the ``retrieved`` transfer set picked.

One row per query (the first labelled image of each of the task's first classes): the
query, then the neighbours the query-balanced retrieval took for it, in rank order. A
neighbour's frame says what it is when the pool knows: green, the query's class; yellow,
another class of the task; red, a class outside the task; grey, no labelled object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.atomic import atomic_write_bytes
from kdbench.transfer import TransferImages

FRAMES = {
    "same": (40, 170, 60),
    "task": (230, 190, 30),
    "other": (210, 50, 40),
    "none": (140, 140, 140),
    "unknown": (255, 255, 255),
}


@dataclass
class ContactSheet:
    """The written sheet and the composition of the whole retrieved set."""

    path: Path
    queries: int
    statistics: dict[str, Any]


def _tile(image: torch.Tensor, scale: int, frame: tuple[int, int, int], border: int) -> np.ndarray:
    pixels = image.permute(1, 2, 0).numpy().repeat(scale, 0).repeat(scale, 1)
    h, w, _ = pixels.shape
    out = np.empty((h + 2 * border, w + 2 * border, 3), dtype=np.uint8)
    out[:] = frame
    out[border : border + h, border : border + w] = pixels
    return out


def render_sheet(
    transfer: TransferImages,
    query_images: torch.Tensor,
    query_labels: torch.Tensor,
    class_names: list[str],
    *,
    rows: int = 12,
    neighbours: int = 10,
    scale: int = 3,
) -> tuple[np.ndarray, int]:
    """The sheet as an RGB array, and how many query rows it has."""
    found = transfer.retrieval
    if found is None or transfer.pool is None:
        raise ValueError(f"the {transfer.name} transfer set has no retrieval to show")
    owner = found.owner
    labels = query_labels.numpy()
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)][:rows]
    info = transfer.pool.describe(found.indices)
    gap = 8
    lines = []
    for q in firsts:
        picked = np.flatnonzero(owner == q)[:neighbours]
        tiles = [_tile(query_images[q], scale, (0, 0, 0), 2)]
        tiles.append(np.full((tiles[0].shape[0], gap, 3), 255, np.uint8))
        for p in picked:
            kind = "unknown"
            if info is not None:
                name = info["class"][p]
                query_name = class_names[labels[q]]
                kind = (
                    "none"
                    if name == ""
                    else "same"
                    if name == query_name
                    else "task"
                    if name in class_names
                    else "other"
                )
            tiles.append(_tile(transfer.images[p], scale, FRAMES[kind], 2))
        line = np.concatenate(tiles, axis=1)
        width = tiles[0].shape[1] * (neighbours + 1) + gap
        padded = np.full((line.shape[0] + 4, width, 3), 255, np.uint8)
        padded[2 : 2 + line.shape[0], : line.shape[1]] = line
        lines.append(padded)
    return np.concatenate(lines, axis=0), len(firsts)


def write_contact_sheet(
    out: Path,
    *,
    seed: int = 0,
    suite: str = "embedded",
    smoke: bool = False,
    overrides: dict[str, Any] | None = None,
    rows: int = 12,
    neighbours: int = 10,
    device: str = "cpu",
    progress: Any = None,
) -> ContactSheet:
    """Build the ``distill`` protocol's retrieved transfer set for ``seed`` (with the
    config ``overrides``, e.g. ``{"distill.transfer": "retrieved:by=student"}``) and write
    its contact sheet as a PNG."""
    import io

    from PIL import Image

    from kdbench.data.downstream import load_task
    from kdbench.plugins import get_registry
    from kdbench.protocols.base import load_protocol
    from kdbench.transfer import distill_transfer

    registry = get_registry()
    protocol = load_protocol(registry.get("protocols", "distill"))
    overrides = dict(overrides or {})
    overrides.setdefault("distill.transfer", "retrieved")
    plain = {k.removeprefix("distill."): v for k, v in overrides.items()}
    config = protocol.config(suite, smoke, plain)
    data = load_task(config["data"], seed, registry, progress)
    transfer = distill_transfer(
        config, data, seed, "retrieved", registry, device, progress=progress, smoke=smoke
    )
    sheet, count = render_sheet(
        transfer,
        data.train_images,
        data.train_labels,
        data.class_names,
        rows=rows,
        neighbours=neighbours,
    )
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())
    return ContactSheet(out, count, {**transfer.statistics, "size": len(transfer)})
