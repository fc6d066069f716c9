"""Vectorised rendering of the Shapes world with numpy.

Each object is a signed-distance shape in its own rotated, scaled frame, filled with a
pattern that turns with it; images are drawn at 2x resolution and averaged down, so edges
are anti-aliased. Everything is drawn for a whole batch at once: the only Python loops are
over the six shapes, five patterns and the object slots of a scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdbench.world.taxonomy import COLOURS, PATTERNS, SHAPES

SUPERSAMPLE = 2
HOLLOW_WIDTH = 0.3  # ring width of hollow shapes, in units of the object radius
DOMAINS = ("base", "shift")


@dataclass
class Objects:
    """Per-object drawing parameters, one entry per image (arrays of length N)."""

    shape: np.ndarray  # int index into SHAPES
    pattern: np.ndarray  # int index into PATTERNS
    rgb: np.ndarray  # (N, 3) fill colour in [0, 1]
    radius: np.ndarray  # in image half-widths (the image spans [-1, 1])
    angle: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    freq: np.ndarray  # pattern frequency, cycles per object radius
    phase: np.ndarray  # (N, 2) pattern phase
    present: np.ndarray  # bool: scenes leave some slots empty

    def take(self, index: np.ndarray) -> Objects:
        return Objects(**{k: v[index] for k, v in self.__dict__.items()})


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue in degrees, saturation and value in [0, 1] -> (N, 3) RGB."""
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - np.abs(h % 2 - 1))
    zero = np.zeros_like(h)
    sector = np.floor(h).astype(int) % 6
    table = np.stack(
        [
            np.stack([c, x, zero], -1),
            np.stack([x, c, zero], -1),
            np.stack([zero, c, x], -1),
            np.stack([zero, x, c], -1),
            np.stack([x, zero, c], -1),
            np.stack([c, zero, x], -1),
        ],
        0,
    )
    rgb = table[sector, np.arange(h.shape[0])]
    return (rgb + (v - c)[:, None]).astype(np.float32)


def draw_objects(
    rng: np.random.Generator,
    colour: np.ndarray,
    shape: np.ndarray,
    pattern: np.ndarray,
    radius: tuple[float, float],
    spread: float,
) -> Objects:
    """Random size, pose, colour jitter and pattern phase for objects of given attributes."""
    n = colour.shape[0]
    hues = np.array([h for _, h in COLOURS.values()], dtype=np.float32)
    hue = hues[colour] + rng.uniform(-8, 8, n)
    sat = rng.uniform(0.65, 1.0, n)
    val = rng.uniform(0.7, 1.0, n)
    return Objects(
        shape=shape.astype(np.int64),
        pattern=pattern.astype(np.int64),
        rgb=hsv_to_rgb(hue, sat, val),
        radius=rng.uniform(*radius, n).astype(np.float32),
        angle=rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        cx=rng.uniform(-spread, spread, n).astype(np.float32),
        cy=rng.uniform(-spread, spread, n).astype(np.float32),
        freq=rng.uniform(1.5, 1.9, n).astype(np.float32),
        phase=rng.uniform(0, 1, (n, 2)).astype(np.float32),
        present=np.ones(n, dtype=bool),
    )


# -- shapes --------------------------------------------------------------------------------


def _polygon(x: np.ndarray, y: np.ndarray, sides: int, inradius: float, start: float) -> np.ndarray:
    d = np.full_like(x, -np.inf)
    for k in range(sides):
        a = start + 2 * np.pi * k / sides
        d = np.maximum(d, x * np.cos(a) + y * np.sin(a))
    return d - inradius


def shape_sdf(shape: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) in object units for shape index ``shape``."""
    name = SHAPES[shape]
    if name == "circle":
        return np.hypot(x, y) - 0.9
    if name == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.72
    if name == "triangle":
        return _polygon(x, y, 3, 0.52, -np.pi / 2)
    if name == "hexagon":
        return _polygon(x, y, 6, 0.82, 0.0)
    if name == "star":
        rho, phi = np.hypot(x, y), np.arctan2(y, x) + np.pi / 2
        t = phi * 5 / (2 * np.pi)
        w = 1 - 2 * np.abs(t - np.floor(t + 0.5))  # 1 towards a point, 0 between points
        return 0.75 * (rho - (0.42 + 0.6 * w**1.5))
    if name == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return np.minimum(np.maximum(ax - 0.95, ay - 0.3), np.maximum(ax - 0.3, ay - 0.95))
    raise ValueError(f"unknown shape index {shape}")


def pattern_mask(
    pattern: int, x: np.ndarray, y: np.ndarray, freq: np.ndarray, phase: np.ndarray
) -> np.ndarray:
    """1 where the pattern's second colour shows, in object units (turns with the object)."""
    name = PATTERNS[pattern]
    f = freq[:, None, None]
    px, py = x * f + phase[:, 0, None, None], y * f + phase[:, 1, None, None]
    if name in ("plain", "hollow"):
        return np.zeros_like(x)
    if name == "striped":
        return ((px % 1.0) < 0.5).astype(np.float32)
    if name == "dotted":
        return (np.hypot(px % 1.0 - 0.5, py % 1.0 - 0.5) < 0.3).astype(np.float32)
    if name == "checkered":
        return ((np.floor(px) + np.floor(py)) % 2).astype(np.float32)
    raise ValueError(f"unknown pattern index {pattern}")


def _grid(res: int) -> np.ndarray:
    return ((np.arange(res, dtype=np.float32) + 0.5) / res) * 2 - 1


def paint(canvas: np.ndarray, objects: Objects) -> np.ndarray:
    """Composite one object per image onto ``canvas`` (N, R, R, 3) in place; returns each
    object's coverage (N, R, R) in [0, 1]."""
    n, res = canvas.shape[0], canvas.shape[1]
    g = _grid(res)
    u, v = g[None, None, :], g[None, :, None]
    cos, sin = np.cos(objects.angle)[:, None, None], np.sin(objects.angle)[:, None, None]
    r = objects.radius[:, None, None]
    du, dv = u - objects.cx[:, None, None], v - objects.cy[:, None, None]
    x = (du * cos + dv * sin) / r
    y = (-du * sin + dv * cos) / r
    pixel = (2.0 / res) / r  # one pixel in object units
    coverage = np.zeros((n, res, res), dtype=np.float32)
    second = np.zeros((n, res, res), dtype=np.float32)
    for s in np.unique(objects.shape):
        idx = np.nonzero(objects.shape == s)[0]
        sdf = shape_sdf(int(s), x[idx], y[idx])
        cov = np.clip(0.5 - sdf / pixel[idx], 0.0, 1.0)
        hollow = objects.pattern[idx] == PATTERNS.index("hollow")
        if hollow.any():
            ring = np.clip(0.5 + (sdf[hollow] + HOLLOW_WIDTH) / pixel[idx][hollow], 0.0, 1.0)
            cov[hollow] *= ring
        coverage[idx] = cov
    for p in np.unique(objects.pattern):
        idx = np.nonzero(objects.pattern == p)[0]
        second[idx] = pattern_mask(int(p), x[idx], y[idx], objects.freq[idx], objects.phase[idx])
    coverage *= objects.present[:, None, None]
    fill = objects.rgb[:, None, None, :] * (1 - 0.7 * second[..., None])
    canvas += coverage[..., None] * (fill - canvas)
    return coverage


# -- backgrounds and domains ---------------------------------------------------------------


def background(rng: np.random.Generator, n: int, res: int, domain: str) -> np.ndarray:
    """(N, R, R, 3) backgrounds: muted gradients (``base``) or coloured textures (``shift``)."""
    g = _grid(res)
    u, v = g[None, None, :, None], g[None, :, None, None]
    if domain == "base":
        a = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1)).astype(np.float32)
        t = (u * np.cos(a) + v * np.sin(a) + 1) / 2
        c0 = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(0, 0.25, n), rng.uniform(0.35, 0.85, n))
        c1 = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(0, 0.25, n), rng.uniform(0.35, 0.85, n))
        return c0[:, None, None] + t * (c1 - c0)[:, None, None]
    if domain == "shift":
        out = np.zeros((n, res, res, 3), dtype=np.float32)
        for _ in range(3):
            a = rng.uniform(0, np.pi, (n, 1, 1, 1)).astype(np.float32)
            f = (rng.uniform(3, 9, (n, 1, 1, 1)) * np.pi).astype(np.float32)
            ph = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1)).astype(np.float32)
            wave = 0.5 + 0.5 * np.sin(f * (u * np.cos(a) + v * np.sin(a)) + ph)  # (N, R, R, 1)
            colour = hsv_to_rgb(
                rng.uniform(0, 360, n), rng.uniform(0.2, 0.5, n), rng.uniform(0.4, 0.9, n)
            )
            out += wave * colour[:, None, None] / 3
        return out + 0.15
    raise ValueError(f"unknown domain {domain!r}; domains are {', '.join(DOMAINS)}")


def clutter(rng: np.random.Generator, n: int, res: int, canvas: np.ndarray, count: int) -> None:
    """Small unlabelled round blobs of random colour painted onto ``canvas``."""
    g = _grid(res)
    u, v = g[None, None, :], g[None, :, None]
    for _ in range(count):
        rgb = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(0, 0.8, n), rng.uniform(0.2, 1, n))
        radius = rng.uniform(0.05, 0.1, (n, 1, 1)).astype(np.float32)
        cx = rng.uniform(-0.95, 0.95, (n, 1, 1)).astype(np.float32)
        cy = rng.uniform(-0.95, 0.95, (n, 1, 1)).astype(np.float32)
        present = (rng.random((n, 1, 1)) < 0.5).astype(np.float32)
        alpha = np.clip(0.5 - (np.hypot(u - cx, v - cy) - radius) * (res / 2), 0.0, 1.0) * present
        where = np.nonzero(alpha)  # blobs are tiny: blend only the pixels they touch
        a = alpha[where][:, None]
        canvas[where] += a * (rgb[where[0]] - canvas[where])


def finish(rng: np.random.Generator, canvas: np.ndarray, domain: str) -> np.ndarray:
    """Domain photometry and sensor noise, downsampling, and conversion to uint8 NCHW."""
    n = canvas.shape[0]
    img = _downsample(canvas)
    if domain == "shift":
        gain = rng.uniform(0.75, 1.25, (n, 1, 1, 3)).astype(np.float32)
        contrast = rng.uniform(0.6, 0.9, (n, 1, 1, 1)).astype(np.float32)
        mean = img.mean(axis=(1, 2, 3), keepdims=True)
        img = (img - mean) * contrast + mean
        img = img * gain
        sigma = 0.06
    else:
        sigma = 0.02
    img = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _downsample(a: np.ndarray) -> np.ndarray:
    """Average SUPERSAMPLE x SUPERSAMPLE pixel blocks over axes 1 and 2."""
    total = np.zeros_like(a[:, ::SUPERSAMPLE, ::SUPERSAMPLE])
    for dy in range(SUPERSAMPLE):
        for dx in range(SUPERSAMPLE):
            total += a[:, dy::SUPERSAMPLE, dx::SUPERSAMPLE]
    return total / (SUPERSAMPLE * SUPERSAMPLE)


def downsample_coverage(coverage: np.ndarray) -> np.ndarray:
    return _downsample(coverage)
