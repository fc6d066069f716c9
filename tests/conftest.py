"""Shared fixtures: every test gets its own cache folder and a fresh plugin host."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads in tests

from kdbench import plugins


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("KDBENCH_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("KDBENCH_LOAD_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture(scope="session")
def _smoke_world_weights(tmp_path_factory):
    from kdbench.plugins import get_registry
    from kdbench.world.pretrain import PretrainConfig, pretrain, pretrain_students

    out = tmp_path_factory.mktemp("world-weights")
    pretrain(out, PretrainConfig.smoke(), log=lambda _: None)
    pretrain_students(ZOO, get_registry(), out, PretrainConfig.smoke(), log=lambda _: None)
    return out


ZOO = [
    "shapes-vit-xs",
    "shapes-vit-m",
    "shapes-mobilevit",
    "shapes-resnet12",
    "shapes-thriftynet",
]
"""The embedded student zoo besides ``shapes-student`` (weights made by the fixture)."""


@pytest.fixture
def world_weights(_smoke_world_weights, monkeypatch):
    """Shapes world weights trained for seconds (enough to exercise every code path)."""
    monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(_smoke_world_weights))
    return _smoke_world_weights
