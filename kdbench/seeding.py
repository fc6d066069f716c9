"""One place that seeds every random source from a run's seed, and derives independent,
named streams from it so that adding a draw never shifts the others."""

from __future__ import annotations

import random
import zlib

import numpy as np


def _key(parts: tuple[object, ...]) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def seed_everything(seed: int) -> dict[str, int]:
    """Seed python, numpy and torch (all devices) from ``seed``; returns what to record."""
    import torch

    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return {"seed": seed}


def rng(seed: int, *stream: object) -> np.random.Generator:
    """A numpy generator for the named ``stream`` of ``seed`` (e.g. ``rng(0, "episodes", 5)``)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *_key(stream)]))


def torch_generator(seed: int, *stream: object):
    """A CPU ``torch.Generator`` for the named ``stream`` of ``seed``."""
    import torch

    value = int(np.random.SeedSequence([seed, *_key(stream)]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(value & 0x7FFF_FFFF_FFFF_FFFF)
