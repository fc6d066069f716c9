"""Shared fixtures: every test gets its own cache folder and a fresh plugin host."""

from __future__ import annotations

import pytest

from kdbench import plugins


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("KDBENCH_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("KDBENCH_LOAD_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()
