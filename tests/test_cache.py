"""Cache integrity: a damaged entry is reported and recomputed from scratch, never used."""

import errno
import json

import pytest
import torch

from kdbench import cache
from kdbench.cache import (
    cache_dir,
    cached_tensors,
    load_module_state,
    read_entry,
    save_module_state,
)
from kdbench.errors import CacheError


def _garble(path):
    """Same size, other bytes."""
    path.write_bytes(bytes((b + 101) % 256 for b in path.read_bytes()))


def _record_unreadable(path):
    path.unlink()
    path.mkdir()


DAMAGE = {
    "truncated payload": lambda payload, record: payload.write_bytes(payload.read_bytes()[:-7]),
    "same-size garbage payload": lambda payload, record: _garble(payload),
    "one flipped byte": lambda payload, record: payload.write_bytes(
        payload.read_bytes()[:-1] + bytes([payload.read_bytes()[-1] ^ 1])
    ),
    "payload missing": lambda payload, record: payload.unlink(),
    "metadata {}": lambda payload, record: record.write_text("{}"),
    "metadata not JSON": lambda payload, record: record.write_bytes(b"\xff\xfe{ not json"),
    "metadata unreadable": lambda payload, record: _record_unreadable(record),
    "metadata missing": lambda payload, record: record.unlink(),
    "metadata with another hash": lambda payload, record: record.write_text(
        json.dumps({**json.loads(record.read_text()), "sha256": "0" * 64})
    ),
}


def _compute_counter():
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(12, dtype=torch.float32).reshape(3, 4), "y": torch.ones(2)}

    return compute, calls


def test_an_entry_is_computed_once_and_then_read(tmp_path):
    compute, calls = _compute_counter()
    first, hit = cached_tensors("t", "key", compute, tmp_path)
    assert not hit
    again, hit = cached_tensors("t", "key", compute, tmp_path)
    assert hit and len(calls) == 1
    assert all(torch.equal(first[k], again[k]) for k in first)
    record = json.loads((tmp_path / "t" / "key.json").read_text())
    assert record["format"] == cache.ENTRY_FORMAT and len(record["sha256"]) == 64


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_tensor_entry_is_recomputed_and_rewritten(tmp_path, capsys, damage):
    compute, calls = _compute_counter()
    clean, _ = cached_tensors("t", "key", compute, tmp_path)
    DAMAGE[damage](tmp_path / "t" / "key.safetensors", tmp_path / "t" / "key.json")
    capsys.readouterr()
    again, hit = cached_tensors("t", "key", compute, tmp_path)
    assert not hit and len(calls) == 2
    assert all(torch.equal(clean[k], again[k]) for k in clean)
    err = capsys.readouterr().err
    assert "key.safetensors is damaged" in err and "recomputed" in err
    if damage == "metadata unreadable":  # a folder in the way cannot be replaced by a file
        return
    _, hit = cached_tensors("t", "key", compute, tmp_path)  # written back, and whole
    assert hit and len(calls) == 2 and capsys.readouterr().err == ""


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3, 2))


def _train_stage(folder):
    """The caller pattern protocols use: reuse the cached stage, or train and cache it.
    Training *continues from the module's current weights*, as fine-tuning does."""
    module = Tiny()
    meta = load_module_state(module, folder, "stage")
    if meta is not None:
        return module, meta["train_seconds"], True
    with torch.no_grad():
        module.weight += 1.0
    save_module_state(module, folder, "stage", {"train_seconds": 2.5})
    return module, 2.5, False


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_module_entry_is_retrained_from_fresh_weights(tmp_path, capsys, damage):
    clean, seconds, cached = _train_stage(tmp_path)
    assert not cached and _train_stage(tmp_path)[2]
    DAMAGE[damage](tmp_path / "stage.safetensors", tmp_path / "stage.json")
    again, seconds_again, cached = _train_stage(tmp_path)
    assert not cached and seconds_again == seconds
    assert torch.equal(again.weight, clean.weight)  # not trained on top of damaged weights
    assert "stage.safetensors is damaged" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["same-size garbage payload", "metadata not JSON"])
def test_a_damaged_entry_never_reaches_the_module(tmp_path, damage):
    _train_stage(tmp_path)
    DAMAGE[damage](tmp_path / "stage.safetensors", tmp_path / "stage.json")
    module = Tiny()
    assert load_module_state(module, tmp_path, "stage") is None
    assert torch.equal(module.weight, torch.zeros(3, 2))


def test_an_entry_that_does_not_fit_the_module_is_not_loaded(tmp_path, capsys):
    other = torch.nn.Linear(2, 3)
    save_module_state(other, tmp_path, "stage", {"train_seconds": 1.0})
    module = Tiny()
    assert load_module_state(module, tmp_path, "stage") is None
    assert torch.equal(module.weight, torch.zeros(3, 2))
    assert "does not fit" in capsys.readouterr().err


def test_metadata_round_trips_inside_the_hashed_payload(tmp_path):
    cache.write_entry(tmp_path, "k", {"a": torch.ones(1)}, {"skipped": {"root": 2}, "short": 1})
    tensors, meta = read_entry(tmp_path, "k")
    assert meta == {"skipped": {"root": 2}, "short": 1} and torch.equal(tensors["a"], torch.ones(1))


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "atomic_write_bytes", full)
    compute, _ = _compute_counter()
    tensors, hit = cached_tensors("t", "key", compute, tmp_path)
    assert not hit and tensors["y"].tolist() == [1.0, 1.0]
    assert "No space left on device" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_cache_folder_is_one_clear_error(tmp_path, monkeypatch, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    target = blocker if where == "a file" else blocker / "cache"
    monkeypatch.setenv("KDBENCH_CACHE", str(target))
    with pytest.raises(CacheError, match="KDBENCH_CACHE") as info:
        cache_dir()
    assert str(target) in str(info.value)


def test_a_damaged_teacher_gives_the_clean_results(world_weights, tmp_path, capsys):
    """The distill protocol end to end: with its cached teacher damaged, a unit retrains
    the teacher from fresh weights and scores exactly as a clean run."""
    from kdbench import plugins, runner
    from kdbench.record_files import load_record

    registry = plugins.get_registry()
    units, _ = runner.plan(registry, protocols=["distill"], methods=["kd"], smoke=True)

    def scores(out):
        report = runner.run_units(units, registry=registry, out=out, progress=False)
        assert not report.failed, [o.message for o in report.failed]
        record = load_record(out / "embedded/distill/kd-seed0.smoke.json")
        return {m.name: m.value for m in record.metrics if m.name != "train_seconds"}

    clean = scores(tmp_path / "clean")
    [teacher] = (cache_dir() / "distill-teachers").glob("*.safetensors")
    for damage in ("metadata not JSON", "same-size garbage payload"):
        DAMAGE[damage](teacher, teacher.with_suffix(".json"))
        capsys.readouterr()
        assert scores(tmp_path / damage.replace(" ", "-")) == clean, damage
        assert "is damaged" in capsys.readouterr().err
        assert read_entry(teacher.parent, teacher.stem) is not None  # written back


LOCKED_COMPUTE = """
import sys, time, torch
from pathlib import Path
from kdbench.cache import cached_tensors

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def compute():
    with log.open("a") as f:
        f.write("computed\\n")
    time.sleep(1.0)  # the other process asks for the entry meanwhile
    return {"x": torch.arange(4.0)}

tensors, cached = cached_tensors("stage", "same-key", compute, root)
assert torch.equal(tensors["x"], torch.arange(4.0))
print("cached" if cached else "computed")
"""


def test_processes_asking_for_one_entry_at_once_compute_it_once(tmp_path):
    """Jobs of `--executor local`/`slurm` share the cache: the second waits on the entry's
    lock, then reads the entry the first wrote (complete, never half-written)."""
    import subprocess
    import sys

    script = tmp_path / "compute.py"
    script.write_text(LOCKED_COMPUTE)
    log = tmp_path / "log.txt"
    import os
    from pathlib import Path

    here = str(Path(cache.__file__).resolve().parents[1])  # this kdbench, not another one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert log.read_text().splitlines() == ["computed"], [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["cached", "computed"]


def test_a_nested_request_for_a_held_entry_does_not_wait_on_itself(tmp_path):
    with cache.entry_lock(tmp_path, "k"), cache.entry_lock(tmp_path, "k"):
        pass
    assert (tmp_path / "k.lock").exists()


def test_numerics_name_what_a_models_results_depend_on():
    from kdbench.cache import numerics

    here = numerics("cpu")
    assert here == {"torch": torch.__version__, "device": "cpu", "threads": torch.get_num_threads()}
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before != 1 else 2)
    try:
        assert numerics("cpu") != here  # another thread count is another cache entry
    finally:
        torch.set_num_threads(before)
    assert "threads" not in numerics("meta")
