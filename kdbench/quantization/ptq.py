"""Static post-training quantisation of a backbone with torchao's PT2E flow.

The backbone is exported (``torch.export``, the batch dimension dynamic), annotated by the
x86 inductor quantiser (:class:`torchao.quantization.pt2e.quantizer.X86InductorQuantizer`),
calibrated on a fixed set of training images (histogram observers for activations, min/max
for weights) and converted to a graph of quantise/dequantise pairs around the float ops.

- **Scoring** runs that converted graph eagerly: the quantised values are exactly those of
  the scheme; the arithmetic between them is fp32.
- **Timing** (``int8`` only) lowers the same graph with inductor (weights frozen), which
  replaces each pattern by oneDNN int8 kernels (``onednn.qconv2d_pointwise``,
  ``onednn.qlinear_pointwise``); :func:`lower_to_kernels` names the kernels it found.

Per-tensor weights are quantised with one scale shared by every output channel: the same
values as per-tensor quantisation, in the per-channel form the int8 kernels take. Widths
other than 8 bits use the same flow with narrower (or, above 8 bits, int16) integer ranges
and are simulated.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdbench.quantization.footprint import activation_peak_bytes, graph_weight_bytes
from kdbench.quantization.precisions import Precision

CALIBRATION_BATCH = 64
OBSERVER_EPS = 2**-12
"""The smallest scale an observer returns (torchao's x86 default)."""


class QuantizationUnavailable(RuntimeError):
    """The PT2E flow cannot run here (torchao missing, or the model does not export)."""


def torchao_version() -> str | None:
    """The installed torchao's version, or ``None``."""
    try:
        import torchao
    except ImportError:
        return None
    return str(getattr(torchao, "__version__", "unknown"))


@contextmanager
def _quiet() -> Iterator[None]:
    """torchao's import and export emit notices that are not about kdbench's use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _shared_scale_observer() -> Any:
    """A per-channel min/max observer that gives every channel the layer's range: per-tensor
    weights in the per-channel form oneDNN's int8 kernels take."""
    from torchao.quantization.pt2e import PerChannelMinMaxObserver

    class SharedScaleObserver(PerChannelMinMaxObserver):
        def calculate_qparams(self):  # type: ignore[override]
            if self.min_val.numel():
                self.min_val.fill_(float(self.min_val.min()))
                self.max_val.fill_(float(self.max_val.max()))
            return super().calculate_qparams()

    return SharedScaleObserver


def quantizer_for(precision: Precision) -> Any:
    """The x86 inductor quantiser set up for ``precision``."""
    assert precision.bits is not None
    with _quiet():
        from torchao.quantization.pt2e import HistogramObserver, PerChannelMinMaxObserver
        from torchao.quantization.pt2e.quantizer import QuantizationSpec
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            QuantizationConfig,
            X86InductorQuantizer,
        )
    bits = precision.bits
    narrow = bits <= 8
    act = QuantizationSpec(
        dtype=torch.uint8 if narrow else torch.int16,
        quant_min=0 if narrow else -(2 ** (bits - 1)),
        quant_max=2**bits - 1 if narrow else 2 ** (bits - 1) - 1,
        qscheme=torch.per_tensor_affine,
        is_dynamic=False,
        observer_or_fake_quant_ctr=HistogramObserver.with_args(eps=OBSERVER_EPS),
    )
    observer = PerChannelMinMaxObserver if precision.per_channel else _shared_scale_observer()
    weight = QuantizationSpec(
        dtype=torch.int8 if narrow else torch.int16,
        quant_min=-(2 ** (bits - 1)),
        quant_max=2 ** (bits - 1) - 1,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        is_dynamic=False,
        observer_or_fake_quant_ctr=observer.with_args(eps=OBSERVER_EPS),
    )
    quantizer = X86InductorQuantizer()
    quantizer.set_global(QuantizationConfig(act, act, weight, None, False))
    return quantizer


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1] (what the exported graph takes); floats unchanged."""
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


@dataclass
class QuantizedModel:
    """A backbone after static quantisation: callable on images, with what to record."""

    graph: nn.Module
    """The converted PT2E graph (quantise/dequantise pairs around fp32 ops)."""
    precision: Precision
    calibration_images: int
    weight_bytes: int
    fp32_weight_bytes: int
    quantised_weights: int
    """Weight tensors stored quantised."""
    weight_tensors: int
    """Weight tensors of conv and linear layers in the graph."""
    input_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.graph(as_float_images(images))

    def describe(self) -> dict[str, Any]:
        """The record's account of the quantised model."""
        return {
            **self.precision.bit_config(),
            "flow": "torch.export + torchao PT2E (X86InductorQuantizer), static, "
            "converted to quantise/dequantise pairs",
            "torchao": torchao_version(),
            "calibration_images": self.calibration_images,
            "weight_bytes": self.weight_bytes,
            "fp32_weight_bytes": self.fp32_weight_bytes,
            "quantised_weight_tensors": self.quantised_weights,
            "conv_linear_weight_tensors": self.weight_tensors,
        }

    def activation_peak_bytes(self) -> int:
        """Peak live activation bytes of a batch-1 forward at the quantised widths."""
        example = torch.zeros(1, *self.input_shape[1:])
        return activation_peak_bytes(self.graph, example)


def export_backbone(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``model`` exported for float images shaped like ``example`` (batch dimension free)."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    with _quiet():
        try:
            exported = torch.export.export(
                model, (example,), dynamic_shapes=({0: batch},), strict=False
            )
        except Exception as error:
            raise QuantizationUnavailable(
                f"the model does not export with torch.export ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:300]}), so PT2E cannot quantise it"
            ) from None
    return exported.module()


def quantize(
    model: nn.Module,
    precision: Precision,
    calibration: torch.Tensor,
    *,
    progress: Callable[..., Any] | None = None,
) -> QuantizedModel:
    """``model`` (images in, pooled features out) statically quantised at ``precision``,
    calibrated on the images ``calibration``."""
    if precision.is_fp32:
        raise ValueError("fp32 is the model itself: nothing to quantise")
    if torchao_version() is None:
        raise QuantizationUnavailable(
            "static quantisation needs torchao (pip install 'kdbench[quant]')"
        )
    with _quiet():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = model.float().cpu().eval()
    images = as_float_images(calibration)
    example = images[: min(2, len(images))]
    if example.shape[0] < 2:
        example = torch.cat([example, example])
    fp32_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    graph = export_backbone(model, example)
    with _quiet():
        prepared = prepare_pt2e(graph, quantizer_for(precision))
        starts = range(0, len(images), CALIBRATION_BATCH)
        if progress is not None:
            starts = progress(starts, desc="calibration")
        with torch.no_grad():
            for start in starts:
                prepared(images[start : start + CALIBRATION_BATCH])
        converted = convert_pt2e(prepared)
    assert precision.bits is not None
    weights = graph_weight_bytes(converted, precision.bits)
    notes = []
    if weights.quantised < weights.tensors:
        notes.append(
            f"{precision.name}: {weights.quantised} of {weights.tensors} conv/linear weight "
            "tensors are quantised; the others (and every op the quantiser does not annotate, "
            "e.g. attention's matrix products and normalisations) run in fp32"
        )
    return QuantizedModel(
        graph=converted,
        precision=precision,
        calibration_images=len(images),
        weight_bytes=weights.total,
        fp32_weight_bytes=fp32_bytes,
        quantised_weights=weights.quantised,
        weight_tensors=weights.tensors,
        input_shape=tuple(images.shape),
        notes=notes,
    )


INT8_KERNELS = re.compile(r"torch\.ops\.(onednn\.q\w+)")


def lower_to_kernels(
    quantized: QuantizedModel, example: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[str]]:
    """The quantised graph compiled by inductor with frozen weights, and the int8 kernels
    its generated code calls (empty: nothing was lowered to int8 kernels)."""
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    with _quiet(), inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(quantized.graph)
        _, code = run_and_get_code(compiled, as_float_images(example))
    kernels = sorted(set(INT8_KERNELS.findall("\n".join(code))))
    return compiled, kernels


def compile_fp32(model: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fp32 model through the same export and inductor path (weights frozen): the
    reference an int8 latency is compared with."""
    import torch._inductor.config as inductor_config

    graph = export_backbone(
        model.float().cpu().eval(), as_float_images(example).expand(2, -1, -1, -1)
    )
    with _quiet(), inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(graph)
        compiled(as_float_images(example))
    return compiled
