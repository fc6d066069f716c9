import numpy as np
import pytest
from PIL import Image

from kdbench.data.base import (
    ClassificationSplit,
    DatasetError,
    DatasetNotFoundError,
    SegmentationSplit,
    load_label_image,
    require_files,
    require_split,
)
from tests.data.fixtures import voc_palette, write_image, write_label_png


def test_require_split_lists_the_valid_splits():
    assert require_split("train", ("train", "test"), "cub") == "train"
    with pytest.raises(
        DatasetError, match=r"unknown split 'tst' for cub; valid splits: train, test"
    ):
        require_split("tst", ("train", "test"), "cub")


def test_require_files_names_the_first_missing_files(tmp_path):
    present = write_image(tmp_path / "a.jpg", 0, 0)
    require_files([present], "x.txt")
    missing = [tmp_path / f"m{i}.jpg" for i in range(5)]
    with pytest.raises(
        DatasetNotFoundError, match=r"5 file\(s\) listed by x.txt .*m0.jpg.* and 2 more"
    ):
        require_files([present, *missing], "x.txt")
    with pytest.raises(DatasetNotFoundError):  # a folder is not an image
        require_files([tmp_path], "x.txt")


def test_classification_from_items_sorts_by_path(tmp_path):
    files = [write_image(tmp_path / name, 0, 0) for name in ("b/2.jpg", "a/9.jpg", "b/10.jpg")]
    split = ClassificationSplit.from_items(
        "toy", "train", tmp_path, zip(files, [1, 0, 2], strict=True), ["x", "y", "z"], "idx"
    )
    assert [f.relative_to(tmp_path).as_posix() for f in split.files] == [
        "a/9.jpg",
        "b/10.jpg",
        "b/2.jpg",
    ]
    assert split.labels.tolist() == [0, 2, 1]
    assert split.labels.dtype == np.int64


def test_load_label_image_reads_palette_and_greyscale_indices_and_refuses_rgb(tmp_path):
    mask = np.array([[0, 1], [15, 255]], dtype=np.uint8)
    palette_png = write_label_png(tmp_path / "p.png", mask, voc_palette())
    grey_png = write_label_png(tmp_path / "l.png", mask)
    np.testing.assert_array_equal(load_label_image(palette_png), mask)
    np.testing.assert_array_equal(load_label_image(grey_png), mask)
    Image.new("RGB", (2, 2), (128, 0, 0)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match=r"rgb.png is a RGB image; expected a palette \(P\)"):
        load_label_image(tmp_path / "rgb.png")


def _segmentation(root, mask_values, mask_size=(4, 3)):
    image = write_image(root / "img" / "a.png", 0, 0, size=(4, 3))
    mask = write_label_png(root / "gt" / "a.png", np.full(mask_size[::-1], mask_values, np.uint8))
    return SegmentationSplit.from_items(
        "toy", "val", root, [(image, mask)], ["bg", "fg"], load_label_image, "idx"
    )


def test_segmentation_manifest_uses_mask_paths_relative_to_root(tmp_path):
    first = _segmentation(tmp_path / "one", 1)
    second = _segmentation(tmp_path / "two", 1)
    assert first.manifest_sha256 == second.manifest_sha256
    image, mask = first.load(0)
    assert image.shape == (3, 4, 3) and mask.dtype == np.int64 and (mask == 1).all()


def test_segmentation_load_checks_mask_values_and_size(tmp_path):
    with pytest.raises(DatasetError, match=r"gt/a.png: mask values \[7\] are outside \[0, 2\)"):
        _segmentation(tmp_path / "bad", 7).load(0)
    assert (_segmentation(tmp_path / "ignore", 255).load(0)[1] == 255).all()
    with pytest.raises(DatasetError, match=r"mask is 5x3 but its image .* is 4x3"):
        _segmentation(tmp_path / "size", 0, mask_size=(5, 3)).load(0)
