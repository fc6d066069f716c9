"""Runtime questions: only a device this machine has is accepted, before any work, and an
absent one never reaches a record."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from kdbench import plugins, runner, runtime
from kdbench.cli import app
from kdbench.errors import ConfigError
from tests.helpers import TestPlugin


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_and_auto_on_a_cpu_only_machine(cpu_only):
    assert runtime.resolve_device("cpu") == "cpu"
    assert runtime.resolve_device("auto") == "cpu"
    assert runtime.resolve_device(" CPU ") == "cpu"


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ("gpu", "not a device name"),
        ("cuda", "CUDA is not available"),
        ("cuda:0", "CUDA is not available"),
        ("mps", "MPS (Apple GPU) is not available"),
        ("cuda:x", "not a device name"),
    ],
)
def test_a_device_this_machine_lacks_is_refused(cpu_only, device, problem):
    with pytest.raises(ConfigError) as caught:
        runtime.resolve_device(device)
    message = str(caught.value)
    assert message.startswith(f"--device {device!r}: {problem}")
    assert message.endswith("use one of: auto, cpu") and "\n" not in message


def test_cuda_devices_are_checked_against_the_count(one_gpu):
    assert runtime.resolve_device("auto") == "cuda"
    assert runtime.resolve_device("cuda") == "cuda"
    assert runtime.resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(
        ConfigError, match=r"has 1 CUDA device\(s\); use one of: auto, cpu, cuda, cuda:0$"
    ):
        runtime.resolve_device("cuda:1")


def test_the_runner_asks_the_runtime_module():
    assert runner.resolve_device is runtime.resolve_device
    assert runner.make_progress is runtime.make_progress


@pytest.fixture
def coin_registry():
    with plugins.temporary_plugin(TestPlugin(), distribution="tests", version="1") as registry:
        yield registry


def test_run_units_refuses_an_absent_device_before_writing(cpu_only, coin_registry, tmp_path):
    units, _ = runner.plan(coin_registry, protocols=["coin"], methods=["heads"], smoke=True)
    with pytest.raises(ConfigError, match="--device 'cuda'"):
        runner.run_units(units, registry=coin_registry, out=tmp_path, device="cuda", progress=False)
    assert not any(tmp_path.rglob("*.json"))


def test_cli_refuses_an_absent_device_before_any_work(cpu_only, coin_registry, tmp_path):
    args = ["run", "-p", "coin", "-m", "heads", "--smoke", "-o", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--device", "gpu"])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line == "error: --device 'gpu': not a device name; use one of: auto, cpu"
    assert not any(tmp_path.iterdir())
    ok = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    record = next(tmp_path.rglob("*.json")).read_text()
    assert '"device": "cpu"' in record
