"""Plugin loading rules, exercised through real entry points in throwaway dist-infos."""

import json
import sys

import pytest
from typer.testing import CliRunner

from kdbench import plugins
from kdbench.cli import app
from kdbench.hookspecs import hookimpl
from kdbench.registry import ComponentCollisionError
from tests.helpers import GOOD_PLUGIN as GOOD
from tests.helpers import make_dist

BROKEN_IMPORT = """
raise ImportError("missing dependency frobnicate")
"""

BROKEN_HOOK = """
from kdbench.hookspecs import hookimpl

@hookimpl
def kdbench_register_losses(register):
    register(object(), name="half-way")
    raise RuntimeError("hook exploded")
"""

COLLIDING = """
from kdbench.hookspecs import hookimpl

@hookimpl
def kdbench_register_losses(register):
    register(object(), name="cosine-test")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("good_plugin", "broken_import", "broken_hook", "colliding_plugin", "other_plugin"):
        sys.modules.pop(name, None)


def test_good_plugin_registers_with_its_distribution(site):
    make_dist(site, "kdbench-good", "good_plugin", GOOD, version="1.2.3")
    comp = plugins.get_registry().get("losses", "cosine-test")
    assert (comp.distribution, comp.version) == ("kdbench-good", "1.2.3")
    assert comp.description == "Cosine distance between pooled features."
    info = {p.distribution: p for p in plugins.get_host().infos()}
    assert info["kdbench-good"].hooks == ["kdbench_register_losses"]


def test_broken_import_warns_and_everything_else_works(site, capsys):
    make_dist(site, "kdbench-good", "good_plugin", GOOD)
    make_dist(site, "kdbench-broken", "broken_import", BROKEN_IMPORT)
    registry = plugins.get_registry()
    assert "cosine-test" in registry.names("losses")
    err = capsys.readouterr().err
    assert "kdbench-broken" in err and "missing dependency frobnicate" in err
    broken = [p for p in plugins.get_host().infos() if p.error]
    assert [p.distribution for p in broken] == ["kdbench-broken"]


def test_broken_hook_adds_nothing_and_is_reported(site, capsys):
    make_dist(site, "kdbench-hook", "broken_hook", BROKEN_HOOK)
    registry = plugins.get_registry()
    assert "half-way" not in registry.names("losses")
    assert "hook exploded" in capsys.readouterr().err


def test_strict_mode_raises(site, monkeypatch):
    make_dist(site, "kdbench-broken", "broken_import", BROKEN_IMPORT)
    monkeypatch.setenv("KDBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginLoadError, match="kdbench-broken"):
        plugins.get_registry()


def test_allowlist_loads_only_named_distributions(site, monkeypatch, capsys):
    make_dist(site, "kdbench-good", "good_plugin", GOOD)
    make_dist(site, "kdbench-broken", "broken_import", BROKEN_IMPORT)
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "kdbench_good")
    assert "cosine-test" in plugins.get_registry().names("losses")
    assert "kdbench-broken" not in capsys.readouterr().err
    plugins.reset()
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "")
    registry = plugins.get_registry()
    assert "cosine-test" not in registry.names("losses")
    assert [p.distribution for p in plugins.get_host().infos()] == ["kdbench"]


def test_collision_disables_the_later_plugin_naming_both(site, capsys, monkeypatch):
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "kdbench-good,kdbench-other")
    make_dist(site, "kdbench-good", "good_plugin", GOOD)
    make_dist(site, "kdbench-other", "other_plugin", COLLIDING, version="0.9")
    comp = plugins.get_registry().get("losses", "cosine-test")
    assert comp.distribution == "kdbench-good"
    err = capsys.readouterr().err
    assert "'other_plugin' from kdbench-other 0.9 is disabled" in err
    assert "kdbench-good" in err
    broken = {p.distribution: p.error for p in plugins.get_host().infos() if p.error}
    assert list(broken) == ["kdbench-other"] and "kdbench-good" in broken["kdbench-other"]


def test_strict_mode_makes_a_collision_an_error(site, monkeypatch):
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "kdbench-good,kdbench-other")
    make_dist(site, "kdbench-good", "good_plugin", GOOD)
    make_dist(site, "kdbench-other", "other_plugin", COLLIDING, version="0.9")
    monkeypatch.setenv("KDBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(ComponentCollisionError) as info:
        plugins.get_registry()
    assert "kdbench-good" in str(info.value) and "kdbench-other" in str(info.value)


def test_broken_plugin_does_not_stop_the_cli(site):
    make_dist(site, "kdbench-broken", "broken_import", BROKEN_IMPORT)
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    broken = next(r for r in rows if r["distribution"] == "kdbench-broken")
    assert "frobnicate" in broken["error"]
    assert any(r["distribution"] == "kdbench" for r in rows)


def test_in_process_plugin_registration():
    class Plugin:
        @hookimpl
        def kdbench_register_methods(self, register):
            register(object(), name="in-process-method", description="test")

    with plugins.temporary_plugin(Plugin(), distribution="tests", version="9") as registry:
        comp = registry.get("methods", "in-process-method")
        assert comp.ref() == {"name": "in-process-method", "distribution": "tests", "version": "9"}
    assert "in-process-method" not in plugins.get_registry().names("methods")
