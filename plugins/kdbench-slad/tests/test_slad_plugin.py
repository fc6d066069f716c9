"""The installed distributions: entry points, and one broken package leaving the others
working (an import failure simulated by blocking the package's module)."""

import json
import sys
from importlib import metadata

import pytest
from typer.testing import CliRunner

from kdbench import plugins
from kdbench.cli import app

PACKAGES = {"kdbench-slad": ("kdbench_slad", "slad"), "kdbench-losses": ("kdbench_losses", "dkd")}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv("KDBENCH_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("KDBENCH_STRICT_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


def installed(dist):
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_methods_appear_with_the_distribution_and_version():
    registry = plugins.get_registry()
    for name in ("slad", "slad-first", "slad-last", "kd-ft", "kd-lora"):
        component = registry.get("methods", name)
        assert (component.distribution, component.version) == ("kdbench-slad", "0.1.0")
    result = CliRunner().invoke(app, ["ls", "methods", "--json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["slad"]["distribution"] == "kdbench-slad" and rows["slad"]["version"] == "0.1.0"


@pytest.mark.parametrize("broken", sorted(PACKAGES))
def test_a_broken_package_leaves_the_others_working(broken, monkeypatch):
    others = [d for d in PACKAGES if d != broken and installed(d)]
    if not installed(broken) or not others:
        pytest.skip("needs kdbench-slad and kdbench-losses installed")
    module, _ = PACKAGES[broken]
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    registry = plugins.get_registry()
    for other in others:
        assert registry.get("methods", PACKAGES[other][1]).distribution == other
    assert PACKAGES[broken][1] not in [
        c.name for c in registry.components("methods") if c.distribution == broken
    ]
    plugins.reset()
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["distribution"]: r for r in json.loads(result.stdout)}
    assert module in rows[broken]["error"]  # the import failure, named
    assert all(rows[other]["error"] is None for other in others)
