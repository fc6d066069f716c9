"""Decoding COCO instance segmentations (polygons, uncompressed and compressed RLE) to
binary masks, without pycocotools but pixel for pixel as it does (``common/maskApi.c``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kdbench.data.base import DatasetError

POLYGON_UPSAMPLING = 5
"""pycocotools walks polygon edges on a grid 5x finer than the pixels."""


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A bool HxW mask from a COCO ``segmentation``: a list of polygons
    ``[[x0, y0, x1, y1, ...], ...]`` (their union) or an RLE ``{"size": [h, w], "counts": ...}``
    whose counts are a list (uncompressed) or a string (compressed)."""
    if isinstance(segmentation, list):
        mask = np.zeros((height, width), dtype=bool)
        for polygon in segmentation:
            mask |= polygon_mask(polygon, height, width)
        return mask
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = list(segmentation.get("size", ()))
        if size != [height, width]:
            raise DatasetError(f"RLE size {size} differs from the image size [{height}, {width}]")
        counts = segmentation["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if isinstance(counts, str):
            counts = rle_counts_from_string(counts)
        return rle_mask(counts, height, width)
    raise DatasetError(
        f"unsupported segmentation of type {type(segmentation).__name__}; expected a list of "
        "polygons or an RLE dict with 'size' and 'counts'"
    )


def rle_mask(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode run lengths (zeros first, alternating, column-major) to a bool HxW mask."""
    runs = np.asarray(counts, dtype=np.int64)
    if runs.ndim != 1 or (runs < 0).any() or runs.sum() != height * width:
        raise DatasetError(
            f"RLE counts sum to {int(runs.sum()) if runs.ndim == 1 else '?'}, not "
            f"{height} x {width} = {height * width}, or hold negative runs"
        )
    values = np.arange(runs.size) % 2 == 1
    return np.repeat(values, runs).reshape(width, height).T


def rle_counts_from_string(text: str) -> list[int]:
    """Run lengths from COCO's compressed RLE string: LEB128-like, 5 bits per character
    (offset by 48), a sign bit in the last character, and from the fourth run on each run
    stored as its difference to the run two before."""
    counts: list[int] = []
    position = 0
    try:
        while position < len(text):
            value, shift, more = 0, 0, True
            while more:
                chunk = ord(text[position]) - 48
                value |= (chunk & 0x1F) << shift
                more = bool(chunk & 0x20)
                position += 1
                shift += 5
                if not more and chunk & 0x10:
                    value |= -1 << shift
            if len(counts) > 2:
                value += counts[-2]
            counts.append(value)
    except IndexError:
        raise DatasetError(f"compressed RLE string ends in the middle of a run: {text!r}") from None
    return counts


def polygon_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """Rasterise one polygon ``[x0, y0, x1, y1, ...]`` as pycocotools' ``rleFrPoly`` does:
    a pixel is inside when its centre is, up to the 1/5-pixel grid the edges are walked on."""
    coords = np.asarray(polygon, dtype=np.float64)
    if coords.size < 6:
        return np.zeros((height, width), dtype=bool)
    scale = POLYGON_UPSAMPLING
    # 1. vertices on the fine grid (C casts truncate), edges walked one fine step at a time
    xs = np.trunc(scale * coords[0::2] + 0.5).astype(np.int64)
    ys = np.trunc(scale * coords[1::2] + 0.5).astype(np.int64)
    xe, ye = np.roll(xs, -1), np.roll(ys, -1)
    dx, dy = np.abs(xe - xs), np.abs(ye - ys)
    major_x = dx >= dy
    flip = (major_x & (xs > xe)) | (~major_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    steps = np.maximum(dx, dy)
    rise = np.where(major_x, ye - ys, xe - xs).astype(np.float64)
    slope = np.divide(rise, steps, out=np.zeros_like(rise), where=steps > 0)

    edge = np.repeat(np.arange(steps.size), steps + 1)
    d = np.arange(edge.size) - (np.cumsum(steps + 1) - (steps + 1))[edge]
    t = np.where(flip[edge], steps[edge] - d, d)
    start_along = np.where(major_x, xs, ys)[edge]
    start_across = np.where(major_x, ys, xs)[edge]
    along = t + start_along
    across = np.trunc(start_across + slope[edge] * t + 0.5).astype(np.int64)
    u = np.where(major_x[edge], along, across)
    v = np.where(major_x[edge], across, along)

    # 2. where the boundary crosses a pixel column's centre, the first row inside/outside
    changed = u[1:] != u[:-1]
    u1, u0, v1, v0 = u[1:][changed], u[:-1][changed], v[1:][changed], v[:-1][changed]
    column = (np.where(u1 < u0, u1, u1 - 1) + 0.5) / scale - 0.5
    keep = (np.floor(column) == column) & (column >= 0) & (column <= width - 1)
    row = (np.where(v1 < v0, v1, v0) + 0.5) / scale - 0.5
    row = np.ceil(np.clip(row, 0, height))
    toggles = (column[keep] * height + row[keep]).astype(np.int64)

    # 3. each crossing toggles inside/outside from that pixel on (column-major order)
    flips = np.bincount(toggles, minlength=height * width + 1)[: height * width]
    inside = np.cumsum(flips) % 2 == 1
    return inside.reshape(width, height).T
