"""Every hook: documented with its exact signature, and exercised by a test."""

import inspect
from pathlib import Path

import pytest

from kdbench import hookspecs, plugins
from kdbench.hookspecs import hookimpl
from kdbench.registry import KINDS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def hookspec_names():
    return sorted(n for n in dir(hookspecs) if n.startswith("kdbench_register_"))


def test_every_kind_has_exactly_one_hook():
    assert hookspec_names() == sorted(f"kdbench_register_{kind}" for kind in KINDS)


@pytest.mark.parametrize("name", hookspec_names())
def test_every_hook_is_documented_with_its_exact_signature(name):
    params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    assert f"### `{name}({params})`" in DOCS.read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_every_hook_registers_components_with_their_provider(kind):
    class Plugin:
        pass

    def hook(register):
        register(object(), name=f"test-{kind}", description="registered by a test")

    setattr(Plugin, f"kdbench_register_{kind}", staticmethod(hookimpl(hook)))
    with plugins.temporary_plugin(Plugin(), distribution="hook-tests", version="3.1") as reg:
        component = reg.get(kind, f"test-{kind}")
        assert (component.distribution, component.version) == ("hook-tests", "3.1")
        assert component.description == "registered by a test"
        info = {p.distribution: p for p in plugins.get_host().infos()}
        assert info["hook-tests"].hooks == [f"kdbench_register_{kind}"]


def test_the_module_paths_the_plugin_guide_names_exist():
    import re

    root = DOCS.parents[1]
    paths = set(re.findall(r"`(kdbench/[\w/]+\.py)`", DOCS.read_text()))
    assert len(paths) > 10
    missing = sorted(p for p in paths if not (root / p).is_file())
    assert not missing, missing
