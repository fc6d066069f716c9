"""Hostile and broken plugins: whatever one does, `kdbench plugins` and `kdbench ls` still
work, warn naming it, and every other component stays available."""

import json
import sys

import pytest
from typer.testing import CliRunner

from kdbench import plugins
from kdbench.cli import app
from kdbench.errors import ComponentCollisionError, PluginLoadError
from tests.helpers import GOOD_PLUGIN as GOOD
from tests.helpers import make_dist


def _hook(body, kind="losses"):
    return f"""
from kdbench.hookspecs import hookimpl

@hookimpl
def kdbench_register_{kind}(register):
    {body}
"""


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no")


HOSTILE = {
    "exit-at-import": ("import sys\nsys.exit('goodbye')", "SystemExit: goodbye"),
    "exit-code-at-import": ("raise SystemExit(3)", "SystemExit: 3"),
    "interrupt-at-import": ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    "interrupt-in-hook": (_hook("raise KeyboardInterrupt('from a hook')"), "from a hook"),
    "exit-in-hook": (_hook("raise SystemExit(0)"), "SystemExit: 0"),
    "generator-exit-in-hook": (_hook("raise GeneratorExit()"), "GeneratorExit"),
    "unprintable-error": (
        _hook("raise type('Unprintable', (Exception,), {'__str__': lambda self: 1/0})()"),
        "Unprintable: (its message cannot be shown)",
    ),
    "path-name": (_hook("register(object(), name='../../etc/x')"), "'../../etc/x'"),
    "absolute-name": (_hook("register(object(), name='/etc/passwd')", "methods"), "/etc/passwd"),
    "number-name": (_hook("register(object(), name=42)"), "42"),
    "object-description": (
        _hook("register(object(), name='ok-name', description=object())"),
        "description that is a object",
    ),
    "shadows-a-builtin": (_hook("register(object(), name='kd')", "methods"), "kdbench"),
}


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, module, code, ...)``: a plugin distribution in a throwaway folder on
    ``sys.path``. Only the distributions installed so are loaded, whatever else is."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def install(dist, module, code, **kwargs):
        make_dist(tmp_path, dist, module, code, **kwargs)
        names.append(dist)
        monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", ",".join(names))

    yield install
    for name in [m for m in sys.modules if m.startswith(("hostile_", "good_plugin", "twin_"))]:
        sys.modules.pop(name, None)


def _cli_still_works(expect_warning):
    """`kdbench plugins` and `kdbench ls` exit 0, list the good components and warn."""
    cli = CliRunner()
    listing = cli.invoke(app, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.stdout)
    assert any(r["distribution"] == "kdbench" and not r["error"] for r in rows)
    assert any(r["distribution"] == "kdbench-good" and not r["error"] for r in rows)
    assert expect_warning in listing.stderr
    plugins.reset()
    ls = cli.invoke(app, ["ls"])
    assert ls.exit_code == 0, ls.output
    assert "cosine-test" in ls.stdout and "supervised" in ls.stdout
    assert expect_warning in ls.stderr
    return rows


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_plugin_is_disabled_and_named(install, case):
    code, reason = HOSTILE[case]
    module = "hostile_" + case.replace("-", "_")
    install("kdbench-good", "good_plugin", GOOD)
    install(f"kdbench-{case}", module, code, version="6.6.6")
    rows = _cli_still_works(f"plugin {module!r} from kdbench-{case} 6.6.6 is disabled")
    [broken] = [r for r in rows if r["error"]]
    assert broken["distribution"] == f"kdbench-{case}"
    assert reason in broken["error"]


def test_a_hostile_plugin_is_an_error_in_strict_mode(install, monkeypatch):
    install("kdbench-exit", "hostile_exit", "raise SystemExit(3)")
    monkeypatch.setenv("KDBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="kdbench-exit"):
        plugins.get_registry()
    result = CliRunner().invoke(app, ["ls"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: plugin 'hostile_exit' from kdbench-exit")


def test_a_bad_name_adds_nothing_from_that_plugin(install):
    code = _hook("register(object(), name='fine-loss')\n    register(object(), name='a/b')")
    install("kdbench-half", "hostile_half", code)
    assert "fine-loss" not in plugins.get_registry().names("losses")


def test_colliding_component_names_name_both_providers(install):
    install("kdbench-good", "good_plugin", GOOD)
    code = _hook("register(object(), name='cosine-test')")
    install("kdbench-zz-copycat", "hostile_copycat", code, version="2.0")
    rows = _cli_still_works("'hostile_copycat' from kdbench-zz-copycat 2.0 is disabled")
    [broken] = [r for r in rows if r["error"]]
    assert "kdbench-good" in broken["error"] and "kdbench-zz-copycat" in broken["error"]
    assert plugins.get_registry().get("losses", "cosine-test").distribution == "kdbench-good"


def test_a_reused_entry_point_name_names_both_distributions(install):
    """Two distributions with one entry-point name (as two `rkd` would be): neither silently
    replaces the other; the second is disabled with a warning naming both."""
    install("kdbench-good", "good_plugin", GOOD)
    install("kdbench-rkd-a", "twin_a", GOOD.replace("cosine-test", "twin-a"), ep_name="twin")
    install("kdbench-rkd-b", "twin_b", GOOD.replace("cosine-test", "twin-b"), ep_name="twin")
    rows = _cli_still_works("plugin 'twin' from kdbench-rkd-b 1.0 is disabled")
    [broken] = [r for r in rows if r["error"]]
    assert broken["distribution"] == "kdbench-rkd-b"
    assert "kdbench-rkd-a" in broken["error"] and "kdbench-rkd-b" in broken["error"]
    names = plugins.get_registry().names("losses")
    assert "twin-a" in names and "twin-b" not in names


def test_a_reused_entry_point_name_is_an_error_in_strict_mode(install, monkeypatch):
    install("kdbench-rkd-a", "twin_a", GOOD, ep_name="twin")
    install("kdbench-rkd-b", "twin_b", GOOD, ep_name="twin")
    monkeypatch.setenv("KDBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(ComponentCollisionError, match=r"kdbench-rkd-a .*kdbench-rkd-b"):
        plugins.get_registry()


def test_the_users_own_ctrl_c_still_stops_loading(install):
    """A real SIGINT while a plugin imports is the user's: it is not taken for a broken
    plugin, and stops the command."""
    code = "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)"
    install("kdbench-slow", "hostile_slow_import", code)
    with pytest.raises(KeyboardInterrupt):
        plugins.get_registry()
