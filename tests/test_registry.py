import pytest

from kdbench.registry import (
    Component,
    ComponentCollisionError,
    Provider,
    Register,
    Registry,
    RegistryError,
    UnknownComponentError,
)

A = Provider("plugin-a", "dist-a", "1.0")
B = Provider("plugin-b", "dist-b", "2.0")


def _component(name, provider=A, kind="losses", target=None):
    return Component(kind=kind, name=name, target=target or (lambda: name), provider=provider)


def test_collision_names_both_distributions():
    reg = Registry()
    reg.add(_component("kd", A))
    with pytest.raises(ComponentCollisionError) as info:
        reg.add(_component("kd", B))
    message = str(info.value)
    assert "dist-a 1.0" in message and "dist-b 2.0" in message


def test_unknown_name_suggests_close_ones():
    reg = Registry()
    for name in ("fitnets", "kd", "dkd"):
        reg.add(_component(name))
    with pytest.raises(UnknownComponentError) as info:
        reg.get("losses", "fitnet")
    assert "Did you mean 'fitnets'" in str(info.value)
    assert "dkd, fitnets, kd" in str(info.value)


def test_family_names_resolve_with_the_member():
    reg = Registry()
    reg.add(_component("timm:*", kind="students", target=lambda member, **kw: (member, kw)))
    comp = reg.get("students", "timm:vit_tiny_patch16_224")
    assert comp.name == "timm:vit_tiny_patch16_224"
    assert comp.distribution == "dist-a"
    assert comp.load()(img_size=32) == ("vit_tiny_patch16_224", {"img_size": 32})
    with pytest.raises(UnknownComponentError):
        reg.get("students", "timm:*")


def test_lazy_import_paths_load_on_first_use():
    reg = Registry()
    reg.add(_component("mean", target="statistics:mean"))
    assert reg.get("losses", "mean").load()([1, 3]) == 2


def test_register_defaults_name_and_description_and_checks_urls():
    class Thing:
        """A thing that does stuff.

        More text."""

        name = "thing"

    register = Register("losses", A)
    register(Thing)
    assert register.collected[0].name == "thing"
    assert register.collected[0].description == "A thing that does stuff."
    with pytest.raises(RegistryError, match="http"):
        register(Thing, name="other", url="javascript:alert(1)")


def test_bad_names_and_kinds_are_refused():
    reg = Registry()
    with pytest.raises(RegistryError, match="names are letters"):
        reg.add(_component("<script>"))
    with pytest.raises(RegistryError, match="unknown component kind"):
        reg.names("widgets")
