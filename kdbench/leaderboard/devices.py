"""Device fingerprints: the hardware that latency and energy figures are tied to.

Latency and energy are only comparable on one device, so every device record is filed under
the identity of its fingerprint: its ``"id"`` when it has one, else the sha256 of its
canonical JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from kdbench.results import canonical_json

#: The protocol whose records measure cost on a device; its tables are split per device.
DEVICE_PROTOCOL = "device"

#: Fingerprint keys shown in a summary, most telling first.
_SUMMARY_KEYS = (
    "gpu",
    "gpu_name",
    "gpu_model",
    "accelerator",
    "cpu",
    "cpu_model",
    "cpu_name",
    "processor",
    "device",
    "device_name",
    "name",
    "model",
    "driver",
    "driver_version",
    "cuda",
)


def fingerprint_id(fingerprint: Mapping[str, Any]) -> str:
    """The fingerprint's own ``"id"`` if it has one, else the sha256 of its canonical JSON."""
    if "id" in fingerprint and fingerprint["id"] not in (None, ""):
        return str(fingerprint["id"])
    return hashlib.sha256(canonical_json(dict(fingerprint)).encode()).hexdigest()


def short_id(identity: str) -> str:
    """A sha256 shortened to 12 characters; any other id as it is."""
    is_sha = len(identity) == 64 and all(c in "0123456789abcdef" for c in identity)
    return identity[:12] if is_sha else identity


def fingerprint_summary(fingerprint: Mapping[str, Any]) -> str:
    """A short human line such as ``NVIDIA H100 · driver 550.54``."""
    parts: list[str] = []
    for key in _SUMMARY_KEYS:
        value = fingerprint.get(key)
        if value in (None, "", [], {}):
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        if key.startswith(("driver", "cuda")):
            text = f"{key.split('_')[0]} {text}"
        if text not in parts:
            parts.append(text)
    if not parts:
        parts = [f"{k}={fingerprint[k]}" for k in sorted(fingerprint)[:3]]
    summary = " · ".join(parts[:3]) or "unknown device"
    return summary if len(summary) <= 120 else summary[:119] + "…"
