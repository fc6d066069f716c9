"""A run survives what users and disks do to it: a damaged checkpoint in the work folder, an
output or cache folder that cannot be used, a full disk, and Ctrl-C."""

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import kdbench.atomic
from kdbench import cli, interrupts, plugins, reporting, runner
from kdbench.cli import app
from kdbench.errors import CheckpointError, OutputError
from kdbench.hookspecs import hookimpl
from kdbench.interrupts import RunInterrupted
from kdbench.protocols.base import MetricSpec, Protocol, UnitContext, UnitResult
from kdbench.record_files import load_record
from kdbench.results import DatasetIdentity
from kdbench.train import TrainConfig, fit
from tests.helpers import CoinProtocol, Method, TestPlugin, make_dist

TRAIN = TrainConfig(epochs=3, batch_size=8, lr=0.05, checkpoint_seconds=0, seed=0)


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, y):
        return torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)


def _data():
    x = torch.linspace(-1, 1, 96).reshape(24, 4)
    return x, x.sum(1) * 0.5


class TrainProtocol(Protocol):
    """Fits a small regression with a checkpoint in the unit's work folder."""

    name = "fitcheck"
    version = 1
    metrics = (MetricSpec("weight", higher_is_better=True, headline=True),)
    calls = 0

    def default_config(self, suite, smoke):
        return {"always_bad": False}

    def run(self, context: UnitContext) -> UnitResult:
        type(self).calls += 1
        if context.config["always_bad"]:
            raise CheckpointError("the training checkpoint x.pt cannot be read")
        model = Regression()
        fit(model, _data(), TRAIN, checkpoint=context.work_dir / "model.pt")
        return UnitResult(
            metrics=[self.metric("weight")(float(model.linear.weight.detach().sum()), n=1)],
            dataset=DatasetIdentity(name="line", version="1"),
        )


class TrainPlugin:
    @hookimpl
    def kdbench_register_protocols(self, register):
        register(TrainProtocol(), name="fitcheck")

    @hookimpl
    def kdbench_register_methods(self, register):
        register(Method("plain"), description="nothing special")


@pytest.fixture
def trainer():
    TrainProtocol.calls = 0
    with plugins.temporary_plugin(TrainPlugin(), distribution="tests", version="1") as reg:
        yield reg


def _run_fitcheck(registry, out, overrides=None, log=None):
    units, _ = runner.plan(
        registry, protocols=["fitcheck"], methods=["plain"], smoke=True, overrides=overrides
    )
    report = runner.run_units(units, registry=registry, out=out, progress=False, log=log)
    return units[0], report


def _real_checkpoint(path, config=TRAIN):
    """A checkpoint as fit writes it (after its first epoch)."""
    fit(Regression(), _data(), TrainConfig(**{**config.as_dict(), "epochs": 1}), checkpoint=path)
    state = torch.load(path, weights_only=True)
    state["config"] = config.as_dict()
    torch.save(state, path)


def _truncate(path):
    _real_checkpoint(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_model(path):
    _real_checkpoint(path)
    state = torch.load(path, weights_only=True)
    state["model"] = {"linear.weight": torch.ones(7, 7)}
    torch.save(state, path)


def _other_config(path):
    _real_checkpoint(path, TrainConfig(**{**TRAIN.as_dict(), "lr": 0.5}))
    state = torch.load(path, weights_only=True)
    state["model"]["linear.weight"] += 100.0  # would show in the result if it were used
    torch.save(state, path)


CORRUPT = {
    "garbage": lambda path: path.write_bytes(os.urandom(512)),
    "empty": lambda path: path.write_bytes(b""),
    "truncated": _truncate,
    "wrong model": _wrong_model,
    "not a dict": lambda path: torch.save([1, 2, 3], path),
    "another config": _other_config,
}


@pytest.mark.parametrize("damage", sorted(CORRUPT))
def test_fit_refuses_a_checkpoint_it_cannot_use(tmp_path, damage):
    CORRUPT[damage](tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match=r"ck\.pt"):
        fit(Regression(), _data(), TRAIN, checkpoint=tmp_path / "ck.pt")


@pytest.mark.parametrize("damage", sorted(CORRUPT))
def test_a_corrupt_checkpoint_is_discarded_and_the_unit_starts_over(trainer, tmp_path, damage):
    clean_unit, _ = _run_fitcheck(trainer, tmp_path / "clean")
    clean = load_record(clean_unit.record_path(tmp_path / "clean")).metric("weight").value

    out = tmp_path / "resumed"
    work = clean_unit.work_dir(out)
    work.mkdir(parents=True)
    CORRUPT[damage](work / "model.pt")
    logged = []
    unit, report = _run_fitcheck(trainer, out, log=logged.append)
    assert not report.failed, [o.message for o in report.failed]
    assert load_record(unit.record_path(out)).metric("weight").value == clean
    assert any("model.pt" in m and "starts over" in m for m in logged), logged
    assert not work.exists()


def test_a_unit_starts_over_only_once(trainer, tmp_path):
    _, report = _run_fitcheck(trainer, tmp_path, overrides={"fitcheck.always_bad": True})
    [failed] = report.failed
    assert "cannot be read" in failed.message and TrainProtocol.calls == 2


# -- folders that cannot be used, and a full disk --------------------------------------


@pytest.fixture
def registry():
    CoinProtocol.calls = []
    with plugins.temporary_plugin(TestPlugin(), distribution="tests", version="1") as reg:
        yield reg


def _cli_run(out, *extra):
    args = ["run", "-p", "coin", "-m", "heads", "-m", "tails", "--smoke", "-o", str(out), *extra]
    return CliRunner().invoke(app, args)


def _one_error_line(result, *fragments):
    assert result.exit_code == 2, result.output
    # without a terminal each unit logs "[i/n] LABEL started"; the error is one line after them
    lines = [
        line
        for line in result.stderr.strip().splitlines()
        if not re.match(r"\[\d+/\d+\] \S+ started$", line)
    ]
    assert len(lines) == 2 and lines[1].startswith("error: "), result.stderr  # 1: "N unit(s)"
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[1]


def test_out_pointing_at_a_file_is_one_clear_line(registry, tmp_path):
    target = tmp_path / "records.txt"
    target.write_text("not a folder")
    _one_error_line(_cli_run(target), str(target), "is a file")
    _one_error_line(_cli_run(target / "below"), str(target / "below"))
    assert CoinProtocol.calls == []


def test_out_in_a_read_only_folder_is_one_clear_line(registry, tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(runner.tempfile, "mkstemp", refused)  # root ignores folder modes
    _one_error_line(_cli_run(tmp_path / "out"), "cannot write records", "Permission denied")
    assert CoinProtocol.calls == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores modes")
def test_out_in_a_read_only_folder_for_real(registry, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _one_error_line(_cli_run(locked / "out"), "cannot write records")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_cache_is_one_clear_line(registry, tmp_path, monkeypatch, where):
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    monkeypatch.setenv("KDBENCH_CACHE", str(blocker if where == "a file" else blocker / "sub"))
    _one_error_line(_cli_run(tmp_path / "out"), "KDBENCH_CACHE")
    assert CoinProtocol.calls == []


def test_a_full_disk_while_writing_a_record_is_one_clear_line(registry, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kdbench.atomic.os, "fsync", full)
    out = tmp_path / "out"
    _one_error_line(_cli_run(out), "coin/heads/seed0", "No space left on device", "run the same")
    assert CoinProtocol.calls == ["heads/0"]  # the run stops: the next record would fail too
    assert [p for p in out.rglob("*") if p.is_file()] == []  # nothing half-written
    with pytest.raises(OutputError):
        units, _ = runner.plan(registry, protocols=["coin"], methods=["heads"], smoke=True)
        runner.run_units(units, registry=registry, out=out, progress=False)


@pytest.mark.parametrize("content", [b"not safetensors at all", b"\x80\x02garbage"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_device_with_weights_that_are_not_weights_is_one_clear_line(tmp_path, content, suffix):
    weights = tmp_path / f"w{suffix}"
    weights.write_bytes(content)
    args = ["device", "shapes-student", "--weights", str(weights), "--smoke", "--precision"]
    result = CliRunner().invoke(app, [*args, "fp32"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert str(weights) in line


def test_damaged_world_weights_are_an_error_not_a_different_model(tmp_path, monkeypatch):
    import shutil

    from kdbench.errors import WeightsError
    from kdbench.world.models import PACKAGED, shapes_teacher

    shutil.copytree(PACKAGED, tmp_path / "w")
    teacher = tmp_path / "w" / "teacher.safetensors"
    data = bytearray(teacher.read_bytes())
    data[-1] ^= 0x40  # one weight changes; the file still parses
    teacher.write_bytes(bytes(data))
    monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(tmp_path / "w"))
    with pytest.raises(WeightsError, match="does not match the sha256"):
        shapes_teacher()


# -- Ctrl-C ------------------------------------------------------------------------------


class Interrupting(CoinProtocol):
    """A coin protocol where Ctrl-C "arrives" during one method's unit."""

    name = "coin"

    def run(self, context):
        if context.method.name == "tails":
            type(self).calls.append("interrupted")
            raise KeyboardInterrupt
        return super().run(context)


class InterruptingPlugin(TestPlugin):
    @hookimpl
    def kdbench_register_protocols(self, register):
        register(Interrupting(), name="coin")


@pytest.fixture
def interrupting():
    CoinProtocol.calls = []
    with plugins.temporary_plugin(InterruptingPlugin(), distribution="tests", version="1") as reg:
        yield reg


def test_ctrl_c_names_the_unit_and_keeps_finished_records(interrupting, tmp_path):
    units, _ = runner.plan(interrupting, protocols=["coin"], methods=["heads", "tails"], smoke=True)
    with pytest.raises(RunInterrupted) as info:
        runner.run_units(units, registry=interrupting, out=tmp_path, progress=False)
    stop = info.value
    assert (stop.unit, stop.position, stop.total, stop.written) == ("coin/tails/seed0", 2, 2, 1)
    assert isinstance(stop, KeyboardInterrupt)
    assert "run the same command again" in str(stop)
    assert load_record(tmp_path / "embedded/coin/heads-seed0.smoke.json").status == "ok"
    assert not list(tmp_path.rglob("tails-seed0*.json"))


def test_cli_ctrl_c_says_what_stopped_and_how_to_resume(interrupting, tmp_path):
    result = _cli_run(tmp_path)
    assert result.exit_code == 130
    assert "Traceback" not in result.output
    assert "interrupted while running coin/tails/seed0 (unit 2 of 2)" in result.stderr
    assert "run the same command again" in result.stderr
    never = _cli_run(tmp_path, "--resume", "never")
    assert "--resume only-missing" in never.stderr


def test_cli_ctrl_c_before_the_run_is_one_line(registry, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from kdbench import planning

    monkeypatch.setattr(planning, "plan", interrupted)
    result = _cli_run(tmp_path)
    assert result.exit_code == 130 and result.stderr.strip() == "kdbench: interrupted"


def test_main_exits_at_once_after_ctrl_c(monkeypatch, capsys):
    exits = []

    def exit_now(code):
        exits.append(code)
        raise SystemExit(code)

    def app_interrupted(**kwargs):
        raise SystemExit(130)  # what typer does with a KeyboardInterrupt

    monkeypatch.setattr(cli, "exit_now", exit_now)
    monkeypatch.setattr(cli, "app", app_interrupted)
    monkeypatch.setattr(reporting, "_interrupt_reported", False)
    with pytest.raises(SystemExit):
        cli.main()
    assert exits == [130] and "kdbench: interrupted" in capsys.readouterr().err


def test_an_uncaught_ctrl_c_at_start_up_is_one_line(monkeypatch, capsys):
    exits, passed_on = [], []
    monkeypatch.setattr(interrupts, "exit_now", exits.append)
    hook = interrupts._quiet_excepthook(lambda *args: passed_on.append(args[0]))
    hook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert exits == [130] and capsys.readouterr().err.strip() == "kdbench: interrupted"
    hook(ValueError, ValueError("x"), None)
    assert passed_on == [ValueError]


SLEEPY = """
import time
from pathlib import Path

from kdbench.hookspecs import hookimpl
from kdbench.protocols.base import MetricSpec, Protocol


class Sleepy(Protocol):
    name = "sleepy"
    version = 1
    metrics = (MetricSpec("score", higher_is_better=True, headline=True),)

    def default_config(self, suite, smoke):
        return {"started": ""}

    def run(self, context):
        Path(context.config["started"]).write_text("started")
        time.sleep(120)


class Sleeper:
    name = "sleeper"
    reference = False
    protocols = None


@hookimpl
def kdbench_register_protocols(register):
    register(Sleepy(), name="sleepy")


@hookimpl
def kdbench_register_methods(register):
    register(Sleeper())
"""


def test_ctrl_c_in_a_real_process_is_quick_and_quiet(tmp_path):
    """A real SIGINT to `kdbench run`: exit 130 within a second, the message, no traceback."""
    make_dist(tmp_path, "kdbench-sleepy", "sleepy_plugin", SLEEPY)
    started = tmp_path / "started"
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), str(tmp_path)]),
        "KDBENCH_LOAD_PLUGINS": "kdbench-sleepy",
    }
    args = ["run", "-p", "sleepy", "-m", "sleeper", "--smoke", "-o", str(tmp_path / "out")]
    args += ["--set", f"sleepy.started={started}", "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "kdbench", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the unit never started"
            time.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted while running sleepy/sleeper/seed0 (unit 1 of 1)" in err
    assert took < 1.0, f"took {took:.2f} s to stop"
