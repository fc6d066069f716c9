"""kdbench's training loop vs a hand-written PyTorch loop doing the same maths.

Both train the Shapes student classifier for the same steps on the same batches with AdamW,
warm-up + cosine schedule and gradient clipping; the final weights are asserted equal, so the
timings compare the loops, not different work.

    python -m pytest benchmarks/bench_train.py --benchmark-only --benchmark-group-by=group
"""

import copy
import math

import pytest
import torch
from torch import nn

from kdbench.train import TrainConfig, _lr_lambda, epoch_batches, fit
from kdbench.world.models import build_vit

STEPS, BATCH = 30, 64


class Step(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = build_vit("student")
        self.head = nn.Linear(self.backbone.embed_dim, 120)

    def forward(self, images, labels):
        return nn.functional.cross_entropy(self.head(self.backbone(images)), labels)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (STEPS * BATCH, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 120, (STEPS * BATCH,), generator=g)
    return images, labels


CONFIG = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-3)


def kdbench_loop(model, data):
    fit(model, data, CONFIG)
    return model


def hand_written_loop(model, data):
    images, labels = data
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=CONFIG.lr, weight_decay=CONFIG.weight_decay)
    total = math.ceil(len(labels) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, CONFIG.warmup))
    model.train()
    for index in epoch_batches(len(labels), BATCH, CONFIG.seed, 0):
        loss = model(images[index], labels[index])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CONFIG.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    return model


def test_same_maths(data):
    a = kdbench_loop(Step(), data)
    b = hand_written_loop(Step(), data)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("loop", [kdbench_loop, hand_written_loop], ids=["kdbench", "hand"])
def test_bench_loop(benchmark, data, loop):
    base = Step()
    benchmark.pedantic(
        lambda m: loop(m, data),
        setup=lambda: ((copy.deepcopy(base),), {}),
        rounds=5,
        warmup_rounds=1,
    )
