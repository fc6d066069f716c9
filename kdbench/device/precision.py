"""Precisions the device protocol measures, whether this device supports each one, and the
model prepared for it.

``fp32`` runs with TF32 off (and fp32 matmuls at full precision on CPUs). ``fp16`` and
``bf16`` cast weights and inputs (no autocast), on devices with native arithmetic for the
dtype. ``int8`` is PyTorch's dynamic quantization of the Linear layers (int8 weights,
activations quantized on the fly), a supported path on CPUs; elsewhere it is unsupported.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# torch.ao.quantization says it will move to torchao; it is still the supported eager path.
_QUANT_DEPRECATIONS = (
    r"torch\.ao\.quantization is deprecated",
    r".*quantized tensor creation functions.*deprecated",
)


def device_type(device: str) -> str:
    return device.partition(":")[0]


def _cpu_dtype_supported(precision: str) -> bool:
    """Whether PyTorch's oneDNN backend has native arithmetic for the dtype on this CPU."""
    check = {
        "bf16": "_is_mkldnn_bf16_supported",
        "fp16": "_is_mkldnn_fp16_supported",
    }[precision]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def support(precision: str, device: str) -> str | None:
    """``None`` if ``precision`` can be measured on ``device``, else why it is unsupported."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    kind = device_type(device)
    if kind not in ("cpu", "cuda"):
        return f"unsupported on {kind}: the device protocol measures cpu and cuda devices"
    if precision == "fp32":
        return None
    if kind == "cpu":
        if precision in ("bf16", "fp16"):
            if _cpu_dtype_supported(precision):
                return None
            need = (
                "AVX512-BF16, AVX512 or AMX" if precision == "bf16" else "AVX512-FP16 or AMX-FP16"
            )
            return (
                f"unsupported on cpu: this CPU has no native {precision} arithmetic in "
                f"PyTorch's oneDNN backend (needs {need}); an emulated figure would mislead"
            )
        engine = torch.backends.quantized.engine
        if engine in (None, "none") or engine not in torch.backends.quantized.supported_engines:
            return "unsupported on cpu: this PyTorch has no quantized engine (fbgemm, x86, qnnpack)"
        if _quantize_dynamic() is None:
            return "unsupported on cpu: this PyTorch has no torch.ao.quantization.quantize_dynamic"
        return None
    if precision == "int8":
        return (
            "unsupported on cuda: PyTorch's dynamic int8 quantization (quantize_dynamic) runs "
            "on CPUs only"
        )
    if precision == "bf16":
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch
            native = torch.cuda.is_bf16_supported()
        if not native:
            return "unsupported on cuda: this GPU has no native bf16 arithmetic (needs Ampere+)"
        return None
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if (major, minor) < (5, 3):
        return f"unsupported on cuda: compute capability {major}.{minor} has no fp16 arithmetic"
    return None


def _quantize_dynamic():
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        return None
    return quantize_dynamic


@contextmanager
def quiet_quantization() -> Iterator[None]:
    """Silence torch.ao's announcement that it will move to torchao (only that)."""
    with warnings.catch_warnings():
        for message in _QUANT_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message)
        yield


def prepare(model: nn.Module, precision: str, device: str) -> tuple[nn.Module, torch.dtype]:
    """A copy of ``model`` for ``precision`` on ``device`` and the input dtype it takes."""
    reason = support(precision, device)
    if reason is not None:
        raise ValueError(reason)
    if precision == "fp32":
        return model.to(device=device, dtype=torch.float32).eval(), torch.float32
    if precision in DTYPES:
        dtype = DTYPES[precision]
        return copy.deepcopy(model).to(device=device, dtype=dtype).eval(), dtype
    quantize_dynamic = _quantize_dynamic()
    assert quantize_dynamic is not None
    with quiet_quantization():
        quantized = quantize_dynamic(
            copy.deepcopy(model).float().cpu().eval(), {nn.Linear}, dtype=torch.qint8
        )
    return quantized, torch.float32


WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Embedding)
"""Layer types whose weights count towards quantisation coverage."""


def quantisation_coverage(model: nn.Module, quantized: nn.Module) -> dict[str, object]:
    """Which weighted layers of ``model`` the int8 copy ``quantized`` quantised: per layer
    (name, type, parameters, quantised or not) and in total. ``fraction`` (of the weighted
    layers' parameters) is null with a ``reason`` when nothing was quantised, so an "int8"
    figure of a model that stayed fp32 is never read as an int8 one."""
    after = dict(quantized.named_modules())
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, WEIGHTED):
            continue
        twin = after.get(name)
        done = twin is not None and type(twin).__module__.startswith(
            ("torch.ao.nn.quantized", "torch.nn.quantized")
        )
        params = sum(p.numel() for p in module.parameters(recurse=False))
        layers.append(
            {"name": name, "type": type(module).__name__, "params": params, "quantised": done}
        )
    total = sum(layer["params"] for layer in layers)
    done_params = sum(layer["params"] for layer in layers if layer["quantised"])
    done_layers = sum(bool(layer["quantised"]) for layer in layers)
    summary: dict[str, object] = {
        "scheme": "dynamic int8 (torch.ao quantize_dynamic, nn.Linear)",
        "quantised_layers": done_layers,
        "weighted_layers": len(layers),
        "quantised_params": done_params,
        "weighted_params": total,
        "fraction": round(done_params / total, 6) if total and done_params else None,
        "layers": layers,
    }
    if not done_params:
        kinds = sorted({str(layer["type"]) for layer in layers})
        summary["reason"] = (
            "nothing was quantised: dynamic int8 quantisation covers nn.Linear layers only, "
            f"and this model's weighted layers are {', '.join(kinds) or 'none'}; its int8 "
            "figures are fp32 arithmetic"
        )
    return summary


def coverage_note(coverage: dict[str, object]) -> str | None:
    """A record note when int8 quantised less than every weighted layer."""
    if coverage.get("reason"):
        return f"int8: {coverage['reason']}"
    fraction = coverage.get("fraction")
    if isinstance(fraction, float) and fraction < 1:
        return (
            f"int8: {coverage['quantised_layers']} of {coverage['weighted_layers']} weighted "
            f"layers ({100 * fraction:.1f}% of their parameters) were quantised; the rest "
            "ran in fp32"
        )
    return None


def _fp32_knobs() -> list[object]:
    """The backends with an ``fp32_precision`` setting (PyTorch 2.9 and newer)."""
    b = torch.backends
    candidates = (b, b.cuda.matmul, b.cudnn, b.cudnn.conv, b.cudnn.rnn,
                  b.mkldnn, b.mkldnn.matmul, b.mkldnn.conv, b.mkldnn.rnn)  # fmt: skip
    return [m for m in candidates if hasattr(m, "fp32_precision")]


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for matmuls and cuDNN, fp32 matmuls in full precision on CPUs too; the
    previous settings are restored afterwards.

    PyTorch 2.9+ refuses a mix of its old (``allow_tf32``) and new (``fp32_precision``)
    switches, so only the new ones are used where they exist.
    """
    knobs = _fp32_knobs() if hasattr(torch.backends.cuda.matmul, "fp32_precision") else []
    if knobs:
        saved = [k.fp32_precision for k in knobs]  # type: ignore[attr-defined]
        for k in knobs:
            k.fp32_precision = "ieee"  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for k, value in zip(knobs, saved):
                k.fp32_precision = value  # type: ignore[attr-defined]
        return
    matmul = torch.get_float32_matmul_precision()
    cuda_tf32 = torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cuda.matmul.allow_tf32 = cuda_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


def suffix(precision: str) -> str:
    """Metric name suffix: ``""`` for fp32 (the headline), ``"_bf16"`` etc. otherwise."""
    return "" if precision == "fp32" else f"_{precision}"


def parse_precisions(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"fp32,int8"`` or ``["fp32", "int8"]`` -> a checked list, fp32 first."""
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    items = [str(p).strip().lower() for p in items if str(p).strip()]
    unknown = [p for p in items if p not in PRECISIONS]
    if unknown:
        raise ValueError(
            f"unknown precision(s) {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}"
        )
    if not items:
        raise ValueError(f"name at least one precision ({', '.join(PRECISIONS)})")
    return sorted(dict.fromkeys(items), key=PRECISIONS.index)
