"""Small in-process components for tests: a protocol and methods that run in milliseconds."""

from __future__ import annotations

import json
import textwrap
from typing import ClassVar

import numpy as np

from kdbench.hookspecs import hookimpl
from kdbench.protocols.base import MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.results import DatasetIdentity
from kdbench.seeding import rng


class CoinProtocol(Protocol):
    """Estimates the mean of a seeded random draw; fails on demand."""

    name = "coin"
    version = 1
    metrics = (
        MetricSpec("score", higher_is_better=True, unit="%", headline=True),
        MetricSpec("energy", higher_is_better=False, unit="mJ/image"),
    )
    calls: ClassVar[list[str]] = []

    def default_config(self, suite, smoke):
        return {"flips": 10 if smoke else 100, "fail_for": ""}

    def run(self, context: UnitContext) -> UnitResult:
        type(self).calls.append(f"{context.method.name}/{context.seed}")
        if context.method.name == context.config["fail_for"]:
            raise FloatingPointError("loss became NaN at step 3")
        flips = rng(context.seed, "coin").random(context.config["flips"]) * 100
        checkpoint = context.work_dir / "progress.json"
        checkpoint.write_text(json.dumps({"done": True}))
        return UnitResult(
            metrics=[
                self.metric("score")(float(flips.mean()), ci95=1.0, n=flips.size),
                self.metric("energy")(None, reason="no energy sensor in tests"),
            ],
            dataset=DatasetIdentity(name="coin", version="1"),
            draws={"flips": str(hash(flips.tobytes()))},
            statistics={"flips": np.round(flips, 3).tolist()},
        )


class Method:
    def __init__(self, name, reference=False):
        self.name = name
        self.reference = reference
        self.protocols = None


class TestPlugin:
    @hookimpl
    def kdbench_register_protocols(self, register):
        register(CoinProtocol(), name="coin")

    @hookimpl
    def kdbench_register_methods(self, register):
        register(Method("heads"), description="always heads")
        register(Method("tails"), description="always tails")


def make_dist(root, dist, module, code, version="1.0", ep_name=None):
    """Write an installed-looking distribution: a module plus a dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[kdbench]\n{ep_name or module} = {module}\n")


GOOD_PLUGIN = """
from kdbench.hookspecs import hookimpl

class CosineLoss:
    '''Cosine distance between pooled features.'''
    name = "cosine-test"

@hookimpl
def kdbench_register_losses(register):
    register(CosineLoss)
"""
"""A plugin module that registers one loss, for tests that install plugin distributions."""


def lock_folder(monkeypatch, locked) -> None:
    """Make listing ``locked`` fail as a mode-000 folder does for a non-root user (root,
    which runs CI, ignores folder modes)."""
    import os

    from kdbench import record_files

    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(record_files.os, "scandir", scandir)
