"""A contact sheet of the Shapes world, so a person can see what the models see."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdbench.atomic import atomic_save
from kdbench.world.world import IGNORE, SCENE_CLASSES, ShapesWorld

# One colour per scene class for mask overlays (background dark, ignore white).
_MASK_COLOURS = np.array(
    [
        [30, 30, 30],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
    ],
    dtype=np.uint8,
)


def _tile(image: np.ndarray, scale: int) -> np.ndarray:
    hwc = image.transpose(1, 2, 0) if image.ndim == 3 and image.shape[0] == 3 else image
    return np.kron(hwc, np.ones((scale, scale, 1), dtype=np.uint8))


def _mask_rgb(mask: np.ndarray) -> np.ndarray:
    out = _MASK_COLOURS[np.minimum(mask, len(_MASK_COLOURS) - 1)]
    out[mask == IGNORE] = 255
    return out


def contact_sheet(world: ShapesWorld, seed: int = 0, columns: int = 8) -> object:
    """A PIL image: labelled samples of each split and domain, then scenes with masks."""
    from PIL import Image, ImageDraw

    scale, cell_h, pad = 3, 3 * world.image_size + 24, 4
    cell_w = 3 * world.image_size + 2 * pad + 20
    rows: list[tuple[str, list[tuple[np.ndarray, str]]]] = []
    for split, domain in (("base", "base"), ("novel", "base"), ("downstream", "shift")):
        ids = world.classes(split)[:: max(1, len(world.classes(split)) // columns)][:columns]
        pixels = world.render(ids, seed, f"preview/{split}", domain)
        rows.append(
            (
                f"{split} classes ({domain} domain)",
                [(p, n) for p, n in zip(pixels, world.names(ids))],
            )
        )
    images, masks = world.scenes(columns // 2, seed, "preview/scenes")
    scene_cells = []
    for img, mask in zip(images.numpy(), masks.numpy()):
        scene_cells.append((img, "scene"))
        scene_cells.append((_mask_rgb(mask).transpose(2, 0, 1), "mask"))
    legend = ", ".join(f"{i}={c}" for i, c in enumerate(SCENE_CLASSES))
    rows.append((f"segmentation scenes and masks ({legend}; white=ignore)", scene_cells))

    header = 18
    width = columns * cell_w + pad
    height = sum(header + cell_h for _ in rows) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for title, cells in rows:
        draw.text((pad, y), title, fill=(0, 0, 0))
        y += header
        for i, (pixels, label) in enumerate(cells):
            tile = _tile(pixels, scale * world.image_size // pixels.shape[-1])
            x = pad + i * cell_w
            sheet.paste(Image.fromarray(tile), (x, y))
            draw.text((x, y + tile.shape[0] + 2), label, fill=(40, 40, 40))
        y += cell_h
    return sheet


def write_preview(path: str | Path, seed: int = 0, world: ShapesWorld | None = None) -> Path:
    """Write the contact sheet as a PNG at ``path`` (atomically)."""
    path = Path(path)
    sheet = contact_sheet(world or ShapesWorld(), seed)
    atomic_save(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path
