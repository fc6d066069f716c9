"""Helpers for testing kdbench plugins with pytest.

A plugin's test should not read the user's cache, see other installed plugins' state or
download anything, and an end-to-end run should take seconds::

    import pytest
    from kdbench import plugins, runner
    from kdbench.testing import TINY_DISTILL, isolated_kdbench

    @pytest.fixture(autouse=True)
    def _isolated(tmp_path):
        with isolated_kdbench(tmp_path / "cache"):
            yield

    def test_my_method_runs(tmp_path):
        registry = plugins.get_registry()
        units, _ = runner.plan(registry, protocols=["distill"], methods=["mine"],
                               smoke=True, overrides=TINY_DISTILL)
        report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
        assert not report.failed
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kdbench import plugins

TINY_DISTILL: dict[str, object] = {
    "distill.teacher.options": {"pretrained": False},
    "distill.student.options": {"pretrained": False},
    "distill.teacher_epochs": 1,
    "distill.student_epochs": 1,
}
"""``distill`` overrides for a run of seconds: random-weight backbones, one epoch each. The
teacher is not the suite's default, so records go under a folder named by it: read them
from ``report.outcomes[i].path``."""

_ENV = {"HF_HUB_OFFLINE": "1", "KDBENCH_STRICT_PLUGINS": None, "KDBENCH_LOAD_PLUGINS": None}


@contextmanager
def isolated_kdbench(cache_dir: str | Path) -> Iterator[None]:
    """Within the block: kdbench caches into ``cache_dir``, nothing is downloaded from the
    Hugging Face hub, every installed plugin loads (non-strict) into a fresh plugin host.
    The environment and the host are restored afterwards."""
    changes: dict[str, str | None] = {"KDBENCH_CACHE": str(cache_dir), **_ENV}
    saved = {name: os.environ.get(name) for name in changes}
    _apply(changes)
    plugins.reset()
    try:
        yield
    finally:
        _apply(saved)
        plugins.reset()


def _apply(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
