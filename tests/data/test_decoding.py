"""Decoding image files in worker processes, and features computed as batches arrive: the
same images and features as a serial loop on the main process, in the same order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.data.decoding import decode_split, decode_workers, stream_features
from kdbench.data.imagefolder import load_imagefolder
from kdbench.train import predict
from tests.data.fixtures import make_imagefolder


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = make_imagefolder(tmp_path_factory.mktemp("ds"), {"train": 23})
    return load_imagefolder(root, "train")


def _serial(split, size, resize, indices):
    pixels = np.stack([split.load(i, size, resize) for i in indices])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2)


@pytest.mark.parametrize("workers", [0, 2])
def test_workers_decode_the_same_images_in_the_same_order(split, workers):
    indices = [5, 0, 68, 3, 3, 41]
    expected = _serial(split, 12, 14, indices)
    got = decode_split(split, 12, 14, indices=indices, workers=workers)
    assert got.dtype == torch.uint8 and torch.equal(got, expected)
    everything = decode_split(split, 12, workers=workers)
    assert torch.equal(everything, _serial(split, 12, None, range(len(split))))
    assert torch.equal(split.load_all(12)[0], everything)


def test_features_stream_as_batches_are_decoded_and_match_decoding_first(split):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)
    ).eval()
    images = _serial(split, 12, None, range(len(split))).float()
    expected = predict(model, images, batch_size=8)
    got = stream_features(lambda x: model(x.float()), split, 12, batch_size=8, workers=2)
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="no images"):
        stream_features(model, split, 12, indices=[])


def test_the_worker_count_comes_from_the_environment_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("KDBENCH_DECODE_WORKERS", "3")
    assert decode_workers() == 3
    monkeypatch.setenv("KDBENCH_DECODE_WORKERS", "many")
    with pytest.raises(ValueError, match="KDBENCH_DECODE_WORKERS='many'"):
        decode_workers()
    monkeypatch.setenv("KDBENCH_DECODE_WORKERS", "-1")
    with pytest.raises(ValueError, match="negative"):
        decode_workers()
    monkeypatch.delenv("KDBENCH_DECODE_WORKERS")
    assert 0 <= decode_workers() <= 8
