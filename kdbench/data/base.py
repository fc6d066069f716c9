"""What a dataset loader returns: a split as a list of files plus labels, with a manifest
hash that identifies it in result records. Images are decoded on demand, resized and
centre-cropped to the size a protocol asks for, as uint8 tensors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.errors import DatasetError, DatasetNotFoundError

IGNORE_INDEX = 255


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a :class:`DatasetError` naming it and what was expected."""
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist; expected {what}")
    return path


def require_split(split: str, valid: Iterable[str], dataset: str) -> str:
    """``split`` if it is one of ``valid``, else a :class:`DatasetError` listing the valid ones."""
    valid = list(valid)
    if split not in valid:
        raise DatasetError(
            f"unknown split {split!r} for {dataset}; valid splits: {', '.join(valid) or 'none'}"
        )
    return split


def require_files(paths: Iterable[Path], listed_by: str) -> None:
    """A :class:`DatasetNotFoundError` naming the first missing files among ``paths``, if any."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetNotFoundError(
            f"{len(missing)} file(s) listed by {listed_by} do not exist: {shown}{more}; "
            "check that the dataset was unpacked completely and that the root is right"
        )


def manifest_sha256(items: Sequence[tuple[str, Any]]) -> str:
    """sha256 of ``(relative path, label)`` lines: the identity of a split in records."""
    digest = hashlib.sha256()
    for rel, label in items:
        digest.update(f"{rel}\t{label}\n".encode())
    return digest.hexdigest()


def load_rgb(path: Path, size: int | None = None, resize: int | None = None) -> np.ndarray:
    """Decode an image to uint8 HxWx3; optionally resize the shorter side to ``resize``
    (default ``size``) and centre-crop ``size`` x ``size``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            im = resize_center_crop(im, size, resize or size)
        return np.asarray(im, dtype=np.uint8).copy()


LABEL_IMAGE_MODES = ("P", "L", "I", "I;16")


def load_label_image(path: Path) -> np.ndarray:
    """Decode a PNG whose pixel values are class indices (palette or greyscale) to HxW."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in LABEL_IMAGE_MODES:
            raise DatasetError(
                f"{path} is a {im.mode} image; expected a palette (P) or greyscale (L) PNG whose "
                "pixel values are class indices (colour-coded masks must be converted first)"
            )
        return np.asarray(im).copy()


def resize_center_crop(im: Any, size: int, resize: int, resample: int | None = None) -> Any:
    from PIL import Image

    w, h = im.size
    scale = resize / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), resample if resample is not None else Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


@dataclass
class ClassificationSplit:
    """One split of a classification dataset: files, integer labels and class names."""

    name: str
    split: str
    root: Path
    files: list[Path]
    labels: np.ndarray
    classes: list[str]
    taxonomy: list[tuple[str, ...]] | None = None
    """Per class, its path from the root of a taxonomy to the class (coarse to fine)."""
    taxonomy_levels: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    @classmethod
    def from_items(
        cls,
        name: str,
        split: str,
        root: Path,
        items: Iterable[tuple[Path, int]],
        classes: Sequence[str],
        listed_by: str,
        **fields: Any,
    ) -> ClassificationSplit:
        """A split of ``(file, label)`` items in canonical order (sorted by path below
        ``root``), after checking that every file exists; ``listed_by`` names the index
        file (or folder) the items came from, for errors."""
        ordered = sorted(items, key=lambda item: item[0].relative_to(root).as_posix())
        files = [f for f, _ in ordered]
        require_files(files, listed_by)
        labels = np.asarray([y for _, y in ordered], dtype=np.int64)
        return cls(name, split, root, files, labels, list(classes), **fields)

    @property
    def manifest_sha256(self) -> str:
        return manifest_sha256(
            [
                (f.relative_to(self.root).as_posix(), int(y))
                for f, y in zip(self.files, self.labels, strict=True)
            ]
        )

    def load(self, index: int, size: int, resize: int | None = None) -> np.ndarray:
        return load_rgb(self.files[index], size, resize)

    def load_all(
        self, size: int, resize: int | None = None, progress: Callable[..., Any] | None = None
    ):
        """All images as a uint8 tensor N x 3 x size x size, decoded by worker processes
        (:func:`kdbench.data.decoding.decode_split`), and labels as int64."""
        import torch

        from kdbench.data.decoding import decode_split

        desc = f"decode {self.name}/{self.split}"
        images = decode_split(self, size, resize, progress=progress, desc=desc)
        return images, torch.from_numpy(self.labels.astype(np.int64))


@dataclass
class SegmentationSplit:
    """One split of a semantic segmentation dataset: images and per-pixel class masks
    (``IGNORE_INDEX`` for pixels that are not scored)."""

    name: str
    split: str
    root: Path
    files: list[Path]
    masks: list[Any]
    """Per image, a mask file or whatever ``mask_loader`` needs to build the mask."""
    classes: list[str]
    mask_loader: Callable[[Any], np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_items(
        cls,
        name: str,
        split: str,
        root: Path,
        items: Iterable[tuple[Path, Any]],
        classes: Sequence[str],
        mask_loader: Callable[[Any], np.ndarray],
        listed_by: str,
        **fields: Any,
    ) -> SegmentationSplit:
        """A split of ``(image, mask)`` items sorted by image path below ``root``, after
        checking that every image (and every mask given as a path) exists."""
        ordered = sorted(items, key=lambda item: item[0].relative_to(root).as_posix())
        files = [f for f, _ in ordered]
        masks = [m for _, m in ordered]
        require_files(files + [m for m in masks if isinstance(m, Path)], listed_by)
        return cls(name, split, root, files, masks, list(classes), mask_loader, **fields)

    @property
    def manifest_sha256(self) -> str:
        return manifest_sha256(
            [
                (f.relative_to(self.root).as_posix(), self._mask_key(m))
                for f, m in zip(self.files, self.masks, strict=True)
            ]
        )

    def _mask_key(self, mask: Any) -> str:
        """A mask path relative to ``root`` (so the manifest does not depend on where the
        dataset lives), or the mask source's own ``str``."""
        if isinstance(mask, Path):
            try:
                return mask.relative_to(self.root).as_posix()
            except ValueError:
                return mask.as_posix()
        return str(mask)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 HxWx3 image, int64 HxW mask), with mask values and size checked."""
        image = load_rgb(self.files[index])
        mask = np.asarray(self.mask_loader(self.masks[index]), dtype=np.int64)
        where = str(self.masks[index])
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{self.files[index]} is {image.shape[1]}x{image.shape[0]} (width x height)"
            )
        check_mask(mask, self.num_classes, where=where)
        return image, mask


def check_mask(mask: np.ndarray, num_classes: int, where: str) -> None:
    """Refuse mask values outside ``[0, num_classes)`` other than ``IGNORE_INDEX``."""
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DatasetError(
            f"{where}: mask values {bad.tolist()} are outside [0, {num_classes}) and not "
            f"{IGNORE_INDEX} (ignore); check the label mapping for this dataset"
        )
