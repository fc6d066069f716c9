"""Peak memory of one batch-1 forward: the model's weights, the input, and the peak of the
tensors allocated while it runs.

On CUDA the activation peak is ``torch.cuda.max_memory_allocated`` above what was allocated
before the forward. On CPUs it is read from the PyTorch profiler's allocation events (the
same CPU allocator accounting ``torch.profiler`` reports). Neither counts memory that a
library allocates outside PyTorch's allocator (e.g. oneDNN or cuDNN scratch space), the
CUDA context, or the Python process itself: it is the model's tensor footprint, not RSS.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CPU_METHOD = "torch.profiler CPU allocator events (weights + input + activation peak)"
CUDA_METHOD = "torch.cuda.max_memory_allocated (weights + input + activation peak)"


@dataclass
class MemoryReading:
    """Peak bytes (or ``None`` with the reason) and how they were measured."""

    bytes: int | None
    method: str
    reason: str | None = None
    weights_bytes: int = 0
    activation_bytes: int | None = None

    @property
    def megabytes(self) -> float | None:
        return None if self.bytes is None else self.bytes / 1e6


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def weights_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers, including packed quantized weights."""
    seen: set[int] = set()
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += _tensor_bytes(tensor)
    for key, value in model.state_dict().items():
        if "_packed_params" in key:  # dynamically quantized Linear: (int8 weight, bias)
            total += _tensor_bytes(value)
    return total


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on fd 2; keep them off the terminal."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def _cpu_activation_peak(model: nn.Module, example: torch.Tensor) -> int:
    from torch.profiler import ProfilerActivity, profile

    def forward() -> None:
        model(example)

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward()
    peak = 0
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        extra = event.typed[1]
        if type(extra).__name__ == "_ExtraFields_Allocation":
            # total_allocated: live bytes of the CPU allocator counted since profiling began
            peak = max(peak, int(extra.total_allocated))
        stack.extend(event.children)
    return peak


def peak_memory(model: nn.Module, example: torch.Tensor, device: str) -> MemoryReading:
    """Peak tensor memory of ``model(example)`` on ``device`` (call under no_grad)."""
    weights = weights_bytes(model)
    inputs = example.numel() * example.element_size()
    if device.startswith("cuda"):
        dev = torch.device(device)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        model(example)
        torch.cuda.synchronize(dev)
        activations = torch.cuda.max_memory_allocated(dev) - before
        return MemoryReading(
            weights + inputs + activations, CUDA_METHOD, None, weights, activations
        )
    if device != "cpu":
        return MemoryReading(None, "", f"peak memory is measured on cpu and cuda, not {device}")
    try:
        activations = _cpu_activation_peak(model, example)
    except Exception as error:  # private profiler structures changed in this torch
        return MemoryReading(
            None,
            CPU_METHOD,
            f"the profiler's allocation events could not be read in this torch ({error})",
            weights,
        )
    return MemoryReading(weights + inputs + activations, CPU_METHOD, None, weights, activations)
