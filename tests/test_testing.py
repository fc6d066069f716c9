"""kdbench.testing: the isolation plugin authors' tests rely on."""

import os

from kdbench import plugins
from kdbench.cache import cache_dir
from kdbench.testing import isolated_kdbench


def test_isolation_sets_and_restores_the_environment_and_the_plugin_host(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "nothing")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = plugins.get_registry()
    with isolated_kdbench(tmp_path / "c"):
        assert cache_dir() == tmp_path / "c"
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        assert "KDBENCH_LOAD_PLUGINS" not in os.environ
        inside = plugins.get_registry()
        assert inside is not before
        assert inside.get("methods", "kd").distribution == "kdbench"
    assert os.environ["KDBENCH_LOAD_PLUGINS"] == "nothing"
    assert "HF_HUB_OFFLINE" not in os.environ
    assert plugins.get_registry() is not inside
