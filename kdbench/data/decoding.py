"""Decoding a split's image files off the main process, and feature extraction that overlaps
with it.

The standard suite reads its images from files: JPEG decoding, resizing and cropping are
CPU work that a serial loop does on the main process while the model waits. Here a
:class:`torch.utils.data.DataLoader` decodes batches in worker processes:

- :func:`decode_split` fills one uint8 tensor with every image (what protocols that keep
  the images, e.g. for training, need);
- :func:`stream_features` runs a model on each batch as soon as it is decoded, so the
  forward pass of one batch overlaps the decoding of the next ones, with pinned memory when
  the model is on a GPU; the images are never all in memory.

Both give exactly what a serial loop gives (the same decoder, in index order).
``KDBENCH_DECODE_WORKERS`` sets the worker count; the default is the usable CPUs less one
(for the main process), at most 8, and ``0`` decodes on the main process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kdbench.train import predict
from kdbench.workers import MAX_WORKERS, usable_cpus, worker_count

DECODE_BATCH = 64
"""Images per decoded batch (what one worker hands over at a time)."""


def decode_workers() -> int:
    """Worker processes for decoding: ``KDBENCH_DECODE_WORKERS``, else the usable CPUs less
    one, at most :data:`MAX_WORKERS`."""
    return worker_count("KDBENCH_DECODE_WORKERS", max(0, min(MAX_WORKERS, usable_cpus() - 1)))


class _Decoded(torch.utils.data.Dataset):
    """Image ``indices[i]`` of ``split``, decoded at ``size`` (CHW uint8)."""

    def __init__(self, split: Any, indices: Sequence[int], size: int, resize: int | None):
        self.split, self.indices, self.size, self.resize = split, list(indices), size, resize

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        pixels = self.split.load(self.indices[i], self.size, self.resize)
        return torch.from_numpy(pixels).permute(2, 0, 1)


def _batches(
    split: Any,
    indices: Sequence[int],
    size: int,
    resize: int | None,
    *,
    workers: int | None,
    pin_memory: bool = False,
    batch_size: int = DECODE_BATCH,
) -> torch.utils.data.DataLoader:
    workers = decode_workers() if workers is None else workers
    batches = -(-len(indices) // batch_size)
    # a worker with nothing to decode, or one batch decoded while this process waits,
    # only costs its start
    workers = min(workers, batches) if batches > 1 else 0
    return torch.utils.data.DataLoader(
        _Decoded(split, indices, size, resize),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


def decode_split(
    split: Any,
    size: int,
    resize: int | None = None,
    *,
    indices: Sequence[int] | None = None,
    workers: int | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "decode",
) -> torch.Tensor:
    """Images ``indices`` (default: all) of ``split`` (anything with ``load(index, size,
    resize) -> HxWx3 uint8`` and ``len``) as one N x 3 x size x size uint8 tensor, decoded
    by ``workers`` processes (default :func:`decode_workers`)."""
    indices = list(range(len(split))) if indices is None else list(indices)
    out = torch.empty((len(indices), 3, size, size), dtype=torch.uint8)
    if not indices:
        return out
    loader: Any = _batches(split, indices, size, resize, workers=workers)
    if progress is not None:
        loader = progress(loader, desc=desc, total=len(loader))
    start = 0
    for batch in loader:
        out[start : start + len(batch)] = batch
        start += len(batch)
    return out


@torch.no_grad()
def stream_features(
    model: Callable[[torch.Tensor], torch.Tensor],
    split: Any,
    size: int,
    resize: int | None = None,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    workers: int | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """``model`` on images ``indices`` (default: all) of ``split``, batch by batch as the
    workers decode them: the outputs concatenated on the CPU, in index order. The batches
    are those of :func:`kdbench.train.predict` (256 by default), so the features are the
    same as decoding everything first and calling it."""
    device = torch.device(device)
    indices = list(range(len(split))) if indices is None else list(indices)
    if not indices:
        raise ValueError("no images to compute features of")
    loader: Any = _batches(
        split,
        indices,
        size,
        resize,
        workers=workers,
        pin_memory=device.type == "cuda",
        batch_size=batch_size,
    )
    if progress is not None:
        loader = progress(loader, desc=desc, total=len(loader))
    return torch.cat(
        [predict(model, batch, batch_size=len(batch), device=device) for batch in loader]
    )
