"""A standard-suite unit's decoding and feature extraction against timm's own inference
figure for the same model, input size and batch.

On an image folder of JPEG photos-sized files (500 x 375, written once per session), side
by side:

* ``timm``: what timm's ``benchmark.py`` measures for inference: the model in eval mode
  under ``no_grad`` on a random batch already in memory, images per second (no decoding);
* ``serial``: the data layer before worker decoding: every image decoded, resized and
  cropped on the main process, then :func:`kdbench.train.predict`;
* ``workers``: :func:`kdbench.data.decoding.stream_features`: worker processes decode
  while the model runs on the batches already decoded.

The features of ``serial`` and ``workers`` are asserted identical. At the end a table gives
images per second of each and their ratio to ``timm`` (the goal: ``workers`` within 10%).
On a machine with few cores decoding competes with the model's own threads, so the
ratio says more on a larger machine (or a GPU, where the model is fast and decoding is the
bottleneck).

    PYTHONPATH=. python -m pytest benchmarks/bench_standard_data.py --benchmark-only \
        -p no:cacheprovider

``KDBENCH_BENCH_MODEL`` (default ``vit_small_patch16_224``, random weights: nothing is
downloaded), ``KDBENCH_BENCH_IMAGES`` (default 256) and ``KDBENCH_BENCH_BATCH`` (default
64) change the setting.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from kdbench.data.decoding import decode_workers, stream_features
from kdbench.data.imagefolder import load_imagefolder
from kdbench.train import predict

MODEL = os.environ.get("KDBENCH_BENCH_MODEL", "vit_small_patch16_224")
IMAGES = int(os.environ.get("KDBENCH_BENCH_IMAGES", "256"))
BATCH = int(os.environ.get("KDBENCH_BENCH_BATCH", "64"))
SIZE, RESIZE = 224, 256
RESULTS: dict[str, float] = {}
FEATURES: dict[str, torch.Tensor] = {}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    g = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    for i in range(IMAGES):
        folder = root / "train" / f"class{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([(x * (i + 1)) % 256, (y * 3 + i) % 256, (x + y) % 256], -1)
        noisy = np.clip(base + g.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:05d}.jpg", quality=90)
    return load_imagefolder(root, "train")


@pytest.fixture(scope="module")
def model():
    import timm

    net = timm.create_model(MODEL, pretrained=False, num_classes=0).eval()

    def features(images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)
        x = (x - 0.5) / 0.5  # timm's inception-style normalisation; the cost is what counts
        return net(x)

    return net, features


def _rate(seconds: float) -> float:
    return IMAGES / seconds


def test_timm_inference(benchmark, model):
    net, _ = model
    batch = torch.randn(BATCH, 3, SIZE, SIZE)

    def run():
        with torch.no_grad():
            for _ in range(-(-IMAGES // BATCH)):
                net(batch)

    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    RESULTS["timm"] = _rate(benchmark.stats.stats.min)


def test_serial_decoding_then_features(benchmark, split, model):
    _, features = model

    def run():
        images = torch.from_numpy(
            np.stack([split.load(i, SIZE, RESIZE) for i in range(len(split))])
        ).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            return predict(features, images, batch_size=BATCH)

    FEATURES["serial"] = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    RESULTS["serial"] = _rate(benchmark.stats.stats.min)


def test_worker_decoding_streamed_into_the_model(benchmark, split, model):
    _, features = model

    def run():
        return stream_features(features, split, SIZE, RESIZE, batch_size=BATCH)

    FEATURES["workers"] = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    RESULTS["workers"] = _rate(benchmark.stats.stats.min)
    if "serial" in FEATURES:
        assert torch.equal(FEATURES["workers"], FEATURES["serial"])


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if len(RESULTS) < 3:
        return
    started = time.strftime("%Y-%m-%d %H:%M")
    lines = [
        f"{MODEL} at {SIZE} px, batch {BATCH}, {IMAGES} JPEG images of 500x375, "
        f"{torch.get_num_threads()} torch threads, {decode_workers()} decode workers ({started})",
        f"{'way':<8} {'img/s':>8} {'x timm':>8}",
    ]
    for name in ("timm", "serial", "workers"):
        lines.append(f"{name:<8} {RESULTS[name]:>8.1f} {RESULTS[name] / RESULTS['timm']:>8.2f}")
    print("\n" + "\n".join(lines))
