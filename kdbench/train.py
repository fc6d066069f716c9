"""The one training loop every protocol and method uses.

The trained thing is a module whose ``forward(*batch)`` returns the scalar loss (a "step
module": model, heads and losses together). That keeps the loop short and makes DDP
correct, since every forward goes through the DDP wrapper. The loop adds what a hand-written
PyTorch loop lacks and nothing per step that costs time: AMP on GPUs, gradient accumulation,
a seeded data order per epoch, checkpoints and resume, a progress bar, DDP under
``torchrun`` (only rank 0 writes), and a stop with a clear error when the loss is not finite.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.atomic import atomic_save
from kdbench.errors import CheckpointError
from kdbench.phases import in_phase
from kdbench.seeding import torch_generator


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stopped."""


@dataclass
class TrainConfig:
    """How long and how to train; the budget protocols fix per suite."""

    epochs: int
    batch_size: int
    lr: float
    steps: int | None = None
    """If set, train exactly this many optimiser steps (as many epochs as that takes)."""
    weight_decay: float = 0.05
    warmup: float = 0.05
    """Fraction of all optimiser steps spent warming the learning rate up linearly."""
    grad_accum: int = 1
    amp: str = "auto"
    """'auto' (bf16 on GPUs that have it, else fp16; off on CPU), 'off', 'bf16', 'fp16'."""
    clip_grad: float | None = 1.0
    checkpoint_every: int = 0
    """Optimiser steps between checkpoints (0: none mid-epoch)."""
    checkpoint_seconds: float = field(default_factory=lambda: _checkpoint_seconds())
    """At an epoch's end, checkpoint if this long has passed since the last save (default
    60, or ``KDBENCH_CHECKPOINT_SECONDS``: a cluster whose jobs are preempted often wants
    it shorter)."""
    check_every: int = 10
    """Optimiser steps between loss checks (each check waits for the device)."""
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resume_key(self) -> dict[str, Any]:
        """What a checkpoint must have been written with to be resumed: everything but how
        often checkpoints are saved."""
        return _without_cadence(self.as_dict())


_CADENCE = ("checkpoint_every", "checkpoint_seconds")


def _without_cadence(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _CADENCE}


def _checkpoint_seconds() -> float:
    raw = os.environ.get("KDBENCH_CHECKPOINT_SECONDS", "").strip()
    try:
        return max(0.0, float(raw)) if raw else 60.0
    except ValueError:
        raise ValueError(f"KDBENCH_CHECKPOINT_SECONDS={raw!r} is not a number of seconds") from None


@dataclass
class TrainResult:
    seconds: float
    steps: int
    last_loss: float
    resumed_from_step: int | None


def distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside ``torch.distributed``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed_from_env() -> bool:
    """Start the process group when launched by ``torchrun`` (gloo on CPU, NCCL on GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return torch.distributed.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``setting`` on ``device`` (None: full precision)."""
    if setting == "off" or device.type != "cuda":
        return None
    if setting == "bf16" or (setting == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if setting in ("fp16", "auto"):
        return torch.float16
    raise ValueError(f"amp must be 'auto', 'off', 'bf16' or 'fp16', not {setting!r}")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """This rank's index batches for ``epoch``: a seeded permutation, split across ranks."""
    rank, world = distributed()
    order = torch.randperm(n, generator=torch_generator(seed, "epoch", epoch))
    per_rank = n // world if world > 1 else n
    order = order[rank * per_rank : (rank + 1) * per_rank] if world > 1 else order
    return list(torch.split(order, batch_size))


def planned_steps(n: int, config: TrainConfig) -> int:
    """The training forwards :func:`fit` makes over ``n`` examples with ``config`` on this
    rank (what a schedule tied to training progress counts)."""
    batches = len(epoch_batches(n, config.batch_size, config.seed, 0))
    steps_per_epoch = math.ceil(batches / config.grad_accum)
    total = config.steps if config.steps is not None else steps_per_epoch * config.epochs
    return total * config.grad_accum


def _lr_lambda(total_steps: int, warmup: float) -> Callable[[int], float]:
    warm = max(1, int(total_steps * warmup)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _to_device(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in batch]


@in_phase("student", weak=True)
def fit(
    step_module: nn.Module,
    data: Sequence[torch.Tensor],
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]] | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``step_module`` (``forward(*batch) -> loss``) on tensors ``data`` that share
    their first dimension. ``params`` defaults to every parameter with ``requires_grad``.

    With ``checkpoint``, the state is saved there (atomically, rank 0 only) and a run that
    finds a checkpoint continues from it, reproducing the uninterrupted run. A checkpoint
    that cannot be read, or was written for another config or model, raises
    :class:`~kdbench.errors.CheckpointError`; ``step_module`` may then hold part of it, so
    start again from fresh objects (the runner discards the checkpoint and starts the unit
    over).
    """
    device = torch.device(device)
    rank, world = distributed()
    n = int(data[0].shape[0])
    if any(int(t.shape[0]) != n for t in data):
        raise ValueError("all training tensors must have the same first dimension")
    if n == 0:
        raise ValueError("no training data")
    step_module.to(device)
    if params is None:
        params = [p for p in step_module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batches_per_epoch = len(epoch_batches(n, config.batch_size, config.seed, 0))
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = config.steps if config.steps is not None else steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, config.warmup))
    dtype = amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    model: nn.Module = step_module
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(step_module, device_ids=ids)

    start_epoch, start_batch, step, resumed = 0, 0, 0, None
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(
                f"the training checkpoint {ckpt_path} cannot be read "
                f"({type(error).__name__}: {' '.join(str(error).split())[:200]}); delete it "
                "to start this training over"
            ) from None
        saved = state.get("config") if isinstance(state, dict) else None
        if not isinstance(saved, dict) or _without_cadence(saved) != config.resume_key():
            raise CheckpointError(
                f"the training checkpoint {ckpt_path} was written with another training config; "
                "delete it to start this training over"
            )
        try:
            step_module.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"])
            start_epoch, start_batch, step = (int(state[k]) for k in ("epoch", "batch", "step"))
        except Exception as error:  # the module may now hold part of it: start from scratch
            raise CheckpointError(
                f"the training checkpoint {ckpt_path} does not fit this training "
                f"({type(error).__name__}: {' '.join(str(error).split())[:200]}); delete it "
                "to start this training over"
            ) from None
        resumed = step

    last_save = time.perf_counter()

    def save(epoch: int, batch: int) -> None:
        nonlocal last_save
        last_save = time.perf_counter()
        if ckpt_path is None or rank != 0:
            return
        state = {
            "model": step_module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
            "batch": batch,
            "step": step,
            "config": config.as_dict(),
        }
        atomic_save(ckpt_path, lambda tmp: torch.save(state, tmp))

    bar = None
    if progress is not None:
        bar = progress(total=total_steps, initial=step, desc=desc, unit="step")
    last_loss = float("nan")
    started = time.perf_counter()
    step_module.train()
    for epoch in range(start_epoch, epochs):
        batches = epoch_batches(n, config.batch_size, config.seed, epoch)
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, len(batches)):
            index = batches[b]
            micro = (b + 1) % config.grad_accum != 0 and b + 1 != len(batches)
            sync = model.no_sync() if (world > 1 and micro) else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = model(*_to_device([t[index] for t in data], device))
                scaler.scale(loss / config.grad_accum).backward()
            if micro:
                continue
            if config.clip_grad is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(step_module.parameters(), config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if step % config.check_every == 0 or step == total_steps:
                last_loss = float(loss.detach())
                if not math.isfinite(last_loss):
                    raise NonFiniteLossError(
                        f"{desc}: the loss became {last_loss} at step {step} (epoch {epoch}); "
                        "lower the learning rate or check the loss and inputs"
                    )
                if bar is not None:
                    bar.set_postfix(loss=f"{last_loss:.4f}")
            if bar is not None:
                bar.update(1)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save(epoch, b + 1)
            if step == total_steps:
                break
        if time.perf_counter() - last_save >= config.checkpoint_seconds:
            save(epoch + 1, 0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    if bar is not None:
        bar.close()
    step_module.eval()
    return TrainResult(seconds=seconds, steps=step, last_loss=last_loss, resumed_from_step=resumed)


EVAL_BATCH_SIZE = 256
"""The batch size of frozen-model evaluation (:func:`predict`) unless a caller sets its own;
records state it (``environment.eval_batch_size``). Training batch sizes are in the config."""


@torch.no_grad()
@in_phase("evaluation", weak=True)
def predict(
    fn: Callable[[torch.Tensor], Any],
    images: torch.Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: Callable[..., Any] | None = None,
    desc: str = "features",
) -> Any:
    """Apply ``fn`` to ``images`` in batches on ``device``; concatenates tensor outputs
    (or each entry of tuple outputs) on the CPU."""
    device = torch.device(device)
    chunks: list[Any] = []
    starts: Iterable[int] = range(0, images.shape[0], batch_size)
    if progress is not None:
        starts = progress(starts, desc=desc, total=math.ceil(images.shape[0] / batch_size))
    for start in starts:
        out = fn(images[start : start + batch_size].to(device, non_blocking=True))
        chunks.append(
            tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu()
        )
    if not chunks:
        raise ValueError("predict got no images")
    if isinstance(chunks[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*chunks))
    return torch.cat(chunks)
