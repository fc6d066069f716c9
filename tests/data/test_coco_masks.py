import math

import numpy as np
import pytest

from kdbench.data.base import DatasetError
from kdbench.data.coco_masks import (
    polygon_mask,
    rle_counts_from_string,
    rle_mask,
    segmentation_mask,
)
from tests.data.fixtures import coco_rle_counts, coco_rle_string


def test_polygon_square_covers_the_pixels_whose_centres_are_inside():
    mask = polygon_mask([1, 1, 5, 1, 5, 5, 1, 5], height=8, width=10)
    expected = np.zeros((8, 10), dtype=bool)
    expected[1:5, 1:5] = True
    np.testing.assert_array_equal(mask, expected)


def test_polygon_triangle_by_hand():
    # centre (x + .5, y + .5) is inside x + y < 8.2 exactly when x + y <= 7
    mask = polygon_mask([0, 0, 8.2, 0, 0, 8.2], height=10, width=10)
    ys, xs = np.mgrid[:10, :10]
    np.testing.assert_array_equal(mask, xs + ys <= 7)


def test_polygon_clipped_to_the_image_and_degenerate_polygons_are_empty():
    assert polygon_mask([-3, -3, 20, -3, 20, 20, -3, 20], 4, 5).all()
    assert not polygon_mask([1, 1, 4, 4], 6, 6).any()
    assert not polygon_mask([], 6, 6).any()


def _reference_polygon_mask(xy, h, w):
    """pycocotools ``rleFrPoly`` followed by ``rleDecode``, one scalar step at a time, as an
    oracle for the vectorised version."""
    scale, k = 5.0, len(xy) // 2
    x = [int(scale * xy[2 * j] + 0.5) for j in range(k)] + [int(scale * xy[0] + 0.5)]
    y = [int(scale * xy[2 * j + 1] + 0.5) for j in range(k)] + [int(scale * xy[1] + 0.5)]
    u, v = [], []
    for j in range(k):
        xs, xe, ys, ye = x[j], x[j + 1], y[j], y[j + 1]
        dx, dy = abs(xe - xs), abs(ys - ye)
        flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
        if flip:
            xs, xe, ys, ye = xe, xs, ye, ys
        if dx >= dy:
            s = (ye - ys) / dx if dx else 0.0
            for d in range(dx + 1):
                t = dx - d if flip else d
                u.append(t + xs)
                v.append(int(ys + s * t + 0.5))
        else:
            s = (xe - xs) / dy
            for d in range(dy + 1):
                t = dy - d if flip else d
                v.append(t + ys)
                u.append(int(xs + s * t + 0.5))
    positions = []
    for j in range(1, len(u)):
        if u[j] == u[j - 1]:
            continue
        xd = float(u[j] if u[j] < u[j - 1] else u[j] - 1)
        xd = (xd + 0.5) / scale - 0.5
        if math.floor(xd) != xd or xd < 0 or xd > w - 1:
            continue
        yd = float(v[j] if v[j] < v[j - 1] else v[j - 1])
        yd = (yd + 0.5) / scale - 0.5
        yd = math.ceil(min(max(yd, 0), h))
        positions.append(int(xd) * h + yd)
    positions = sorted([*positions, h * w])
    flat = np.zeros(h * w, dtype=bool)
    value, start = False, 0
    for p in positions:
        flat[start:p] = value
        value, start = not value, p
    return flat.reshape(w, h).T


@pytest.mark.parametrize("seed", range(12))
def test_polygon_matches_the_scalar_pycocotools_algorithm(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 30, size=2)
    points = rng.integers(3, 9)
    xy = rng.uniform(-2, max(h, w) + 2, size=2 * points).round(rng.integers(0, 3)).tolist()
    np.testing.assert_array_equal(polygon_mask(xy, h, w), _reference_polygon_mask(xy, h, w))


def test_uncompressed_rle_is_column_major_zeros_first():
    # 3 x 4 mask, runs down the columns: 0 | 1 1 1 | 0 0 0 0 0 0 0 | 1
    mask = rle_mask([1, 3, 7, 1], height=3, width=4)
    expected = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]]) == 1
    np.testing.assert_array_equal(mask, expected)
    assert rle_mask([0, 6], 2, 3).all()


def test_rle_with_wrong_total_is_refused():
    with pytest.raises(DatasetError, match=r"not 3 x 4 = 12"):
        rle_mask([1, 3], height=3, width=4)


@pytest.mark.parametrize(
    "text, counts",
    [
        ("234", [2, 3, 4]),  # one character each
        ("T3", [100]),  # 100 = 4 + 3 * 32: low 5 bits with the continuation bit, then 3
        ("11140", [1, 1, 1, 5, 1]),  # from the 4th run on, a difference to the run 2 before
        ("151L0", [1, 5, 1, 1, 1]),  # 'L' = 28 = -4 in 5-bit two's complement: 5 - 4 = 1
        ("62X2", [6, 2, 72]),  # 72 = 8 + 2 * 32
    ],
)
def test_compressed_rle_strings_decoded_by_hand(text, counts):
    assert rle_counts_from_string(text) == counts


def test_compressed_rle_round_trip_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, size=2)
        mask = rng.random((h, w)) < rng.random()
        counts = coco_rle_counts(mask)
        assert rle_counts_from_string(coco_rle_string(counts)) == counts
        np.testing.assert_array_equal(rle_mask(counts, h, w), mask)


def test_truncated_compressed_rle_is_refused():
    with pytest.raises(DatasetError, match=r"ends in the middle"):
        rle_counts_from_string("T")


def test_segmentation_mask_dispatches_on_the_encoding():
    polygons = [[0, 0, 2, 0, 2, 2, 0, 2], [3, 2, 4, 2, 4, 4, 3, 4]]
    union = segmentation_mask(polygons, 4, 5)
    expected = np.zeros((4, 5), dtype=bool)
    expected[:2, :2] = True
    expected[2:4, 3] = True
    np.testing.assert_array_equal(union, expected)
    counts = coco_rle_counts(expected)
    np.testing.assert_array_equal(
        segmentation_mask({"size": [4, 5], "counts": counts}, 4, 5), expected
    )
    text = coco_rle_string(counts)
    np.testing.assert_array_equal(
        segmentation_mask({"size": [4, 5], "counts": text}, 4, 5), expected
    )
    np.testing.assert_array_equal(
        segmentation_mask({"size": [4, 5], "counts": text.encode()}, 4, 5), expected
    )


def test_segmentation_mask_refuses_a_size_mismatch_and_unknown_encodings():
    with pytest.raises(
        DatasetError, match=r"RLE size \[4, 4\] differs from the image size \[4, 5\]"
    ):
        segmentation_mask({"size": [4, 4], "counts": [16]}, 4, 5)
    with pytest.raises(DatasetError, match=r"unsupported segmentation"):
        segmentation_mask("0,0,1,1", 4, 5)
