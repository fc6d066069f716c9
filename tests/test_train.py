"""The training loop: resume reproduces an uninterrupted run, accumulation, NaN stops."""

import pytest
import torch
from torch import nn

from kdbench.train import NonFiniteLossError, TrainConfig, epoch_batches, fit, predict


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.1), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x, y):
        return nn.functional.mse_loss(self.net(x).squeeze(-1), y)


def data(n=96):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0])


def test_training_reduces_the_loss():
    x, y = data()
    model = Regression()
    with torch.no_grad():
        before = float(model(x, y))
    fit(model, (x, y), TrainConfig(epochs=20, batch_size=16, lr=1e-2))
    with torch.no_grad():
        assert float(model.eval()(x, y)) < before / 10


def test_resume_after_a_crash_matches_the_uninterrupted_run(tmp_path):
    x, y = data()
    config = TrainConfig(epochs=4, batch_size=16, lr=1e-2, checkpoint_every=5)
    reference = Regression()
    fit(reference, (x, y), config)

    class Crash(Regression):
        calls = 0

        def forward(self, x, y):
            Crash.calls += 1
            if Crash.calls == 12:
                raise KeyboardInterrupt("killed")
            return super().forward(x, y)

    crashed = Crash()
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, (x, y), config, checkpoint=tmp_path / "ck.pt")
    resumed = Regression()
    result = fit(resumed, (x, y), config, checkpoint=tmp_path / "ck.pt")
    assert result.resumed_from_step == 10
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_from_another_config_is_refused(tmp_path):
    x, y = data()
    fit(
        Regression(),
        (x, y),
        TrainConfig(epochs=1, batch_size=16, lr=1e-2, checkpoint_seconds=0),
        checkpoint=tmp_path / "ck.pt",
    )
    with pytest.raises(ValueError, match="another training config"):
        fit(
            Regression(),
            (x, y),
            TrainConfig(epochs=2, batch_size=16, lr=1e-2),
            checkpoint=tmp_path / "ck.pt",
        )


def test_checkpoint_cadence_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("KDBENCH_CHECKPOINT_SECONDS", raising=False)
    assert TrainConfig(epochs=1, batch_size=1, lr=1).checkpoint_seconds == 60.0
    monkeypatch.setenv("KDBENCH_CHECKPOINT_SECONDS", "0")
    assert TrainConfig(epochs=1, batch_size=1, lr=1).checkpoint_seconds == 0.0
    monkeypatch.setenv("KDBENCH_CHECKPOINT_SECONDS", "soon")
    with pytest.raises(ValueError, match="KDBENCH_CHECKPOINT_SECONDS"):
        TrainConfig(epochs=1, batch_size=1, lr=1)


def test_a_checkpoint_saved_at_another_cadence_is_resumed(tmp_path):
    """A requeued job may save more or less often than the one preempted: what it trains
    is the same, so the checkpoint is used."""
    x, y = data()
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, checkpoint_seconds=0)
    fit(Regression(), (x, y), config, checkpoint=tmp_path / "ck.pt")
    again = TrainConfig(epochs=2, batch_size=16, lr=1e-2, checkpoint_seconds=600)
    assert fit(Regression(), (x, y), again, checkpoint=tmp_path / "ck.pt").resumed_from_step == 12


def test_gradient_accumulation_matches_a_larger_batch():
    x, y = data(64)

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 1)
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

        def forward(self, x, y):
            return nn.functional.mse_loss(self.fc(x).squeeze(-1), y)

    big, small = Linear(), Linear()
    common = dict(epochs=1, lr=1e-2, clip_grad=None, warmup=0.0, weight_decay=0.0)
    fit(big, (x, y), TrainConfig(batch_size=32, **common))
    fit(small, (x, y), TrainConfig(batch_size=16, grad_accum=2, **common))
    assert torch.allclose(big.fc.weight, small.fc.weight, atol=1e-6)


def test_exact_step_budget_spans_epochs():
    x, y = data(40)
    result = fit(Regression(), (x, y), TrainConfig(epochs=1, steps=7, batch_size=16, lr=1e-3))
    assert result.steps == 7  # 3 batches per epoch -> 3 epochs, stopping mid-way


def test_a_non_finite_loss_stops_with_a_clear_error():
    x, y = data()
    y[5] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step \d+"):
        fit(Regression(), (x, y), TrainConfig(epochs=2, batch_size=96, lr=1e-2, check_every=1))


def test_epoch_order_is_seeded_and_covers_everything():
    a = epoch_batches(50, 16, seed=3, epoch=0)
    assert sorted(torch.cat(a).tolist()) == list(range(50))
    assert all(torch.equal(p, q) for p, q in zip(a, epoch_batches(50, 16, 3, 0), strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(50, 16, 3, 1)))


def test_predict_batches_and_concatenates():
    x = torch.randn(10, 3)
    out = predict(lambda t: (t * 2, t.sum(-1)), x, batch_size=4)
    assert torch.equal(out[0], x * 2) and torch.allclose(out[1], x.sum(-1))


def test_amp_is_off_on_cpu_and_bf16_or_fp16_on_gpus(monkeypatch):
    from kdbench.train import amp_dtype

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert amp_dtype("auto", cpu) is None and amp_dtype("bf16", cpu) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert amp_dtype("auto", gpu) is torch.bfloat16
    assert amp_dtype("fp16", gpu) is torch.float16
    assert amp_dtype("off", gpu) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert amp_dtype("auto", gpu) is torch.float16
    with pytest.raises(ValueError, match="amp must be"):
        amp_dtype("int4", gpu)
