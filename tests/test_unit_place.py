"""A unit's data, models and device are part of its identity: record paths, resume, the
leaderboard's unit key and its tables keep two datasets (or teachers, or machines) apart.
Loader options reach the loaders, and everything missing is reported before any unit runs.
Standard-suite units run on fixture datasets in the real layouts with a locally saved
checkpoint (nothing downloads)."""

from __future__ import annotations

import pytest

from kdbench import plugins, runner
from kdbench.errors import ConfigError, UnknownComponentError
from kdbench.leaderboard.aggregate import build_tables
from kdbench.leaderboard.intake import read_and_screen
from kdbench.record_files import load_record
from kdbench.unit_place import PlanError, parse_model_spec
from tests.data.fixtures import make_cub, make_dtd


def _tiny_vit(path):
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return {"name": "timm:vit_tiny_patch16_224", "options": {"img_size": 32, "weights": str(path)}}


def _distill(tmp_path, dataset, root, extra=None):
    spec = _tiny_vit(tmp_path / "vit.safetensors")
    return {
        "distill.teacher": spec,
        "distill.student": spec,
        "distill.data.dataset": dataset,
        "distill.data.root": str(root),
        "distill.data.image_size": 32,
        "distill.data.resize": 36,
        "distill.teacher_epochs": 0,
        "distill.student_epochs": 1,
        "distill.batch_size": 8,
        "distill.cka_images": 4,
        **(extra or {}),
    }


def _run(out, overrides, methods=("supervised",), protocols=("distill",)):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=list(protocols),
        methods=list(methods),
        suite="standard",
        overrides=overrides,
    )
    return runner.run_units(units, registry=registry, out=out, progress=False)


def test_two_datasets_into_one_out_are_two_records_and_two_tables(tmp_path):
    cub = make_cub(tmp_path / "cub")
    dtd = make_dtd(tmp_path / "dtd")
    out = tmp_path / "out"
    first = _run(out, _distill(tmp_path, "cub", cub))
    second = _run(out, _distill(tmp_path, "dtd", dtd, {"distill.data.train_split": "train"}))
    assert not first.failed and not second.failed, [o.message for o in second.failed]
    [a], [b] = first.outcomes, second.outcomes
    assert a.path != b.path and a.path.exists() and b.path.exists()
    assert a.path.parent.parent.name.startswith("cub-")
    assert b.path.parent.parent.name.startswith("dtd-")
    assert load_record(a.path).dataset.name == "cub"
    assert load_record(b.path).dataset.name == "dtd"
    # the same command again finds both finished: nothing runs
    again = _run(out, _distill(tmp_path, "cub", cub))
    assert [o.status for o in again.outcomes] == ["skipped"]
    # both are ranked (neither is a "duplicate" of the other), in two tables
    from kdbench.protocols.distill import Distill

    intake = read_and_screen(out, {"distill": Distill.version})
    assert len(intake.ranked) == 2 and not intake.unranked
    tables = build_tables(intake.ranked)
    assert sorted(t.dataset.split(":")[0] for t in tables) == ["cub", "dtd"]
    assert all(len(t.rows) == 1 for t in tables)


def test_a_dtd_fold_other_than_1_reaches_the_loader(tmp_path):
    dtd = make_dtd(tmp_path / "dtd")
    out = tmp_path / "out"
    fold1 = _run(out, _distill(tmp_path, "dtd", dtd))
    fold2 = _run(out, _distill(tmp_path, "dtd", dtd, {"distill.data.options.fold": 2}))
    assert not fold1.failed and not fold2.failed, [o.message for o in fold2.failed]
    one, two = load_record(fold1.outcomes[0].path), load_record(fold2.outcomes[0].path)
    assert two.protocol.config["data"]["options"] == {"fold": 2}
    assert "options" not in one.protocol.config["data"]  # the default config is unchanged
    assert one.dataset.manifest_sha256 != two.dataset.manifest_sha256
    assert fold1.outcomes[0].path != fold2.outcomes[0].path
    # a fold that does not exist, or an option the loader lacks, stops the run before it starts
    with pytest.raises(PlanError, match="folds are 1 to 10"):
        _run(tmp_path / "x", _distill(tmp_path, "dtd", dtd, {"distill.data.options.fold": 11}))
    with pytest.raises(PlanError, match=r"dtd takes fold; not flod"):
        _run(tmp_path / "x", _distill(tmp_path, "dtd", dtd, {"distill.data.options.flod": 2}))


def test_a_loader_option_set_as_a_section_key_says_where_it_goes():
    with pytest.raises(ConfigError, match=r"--set distill\.data\.options\.fold=VALUE"):
        runner.plan(
            plugins.get_registry(),
            protocols=["distill"],
            methods=["kd"],
            suite="standard",
            overrides={"distill.data.fold": 2},
        )


def test_everything_missing_is_reported_once_before_any_unit_runs(tmp_path):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=["distill", "fewshot", "segmentation"],
        methods=["kd", "supervised"],
        suite="standard",
        overrides={"distill.teacher.options.weights": str(tmp_path / "nowhere.safetensors")},
    )
    with pytest.raises(PlanError) as caught:
        runner.run_units(units, registry=registry, out=tmp_path / "out", progress=False)
    problems = caught.value.problems
    assert "distill.data.root: set the cub folder: --set distill.data.root=PATH" in problems
    assert "fewshot.base.root: set the miniimagenet folder: --set fewshot.base.root=PATH" in (
        problems
    )
    assert any(p.startswith("segmentation.data.root: set the cityscapes folder") for p in problems)
    # each protocol's base stage is named by that protocol, never by another one
    assert (
        "segmentation.base.root: set the miniimagenet folder: --set segmentation.base.root=PATH"
        in problems
    )
    assert any("nowhere.safetensors does not exist" in p for p in problems)
    assert len(problems) == len(set(problems))  # each once, not once per unit
    assert not list((tmp_path / "out").rglob("*.json"))  # nothing ran


def test_model_specs_parse_names_with_colons_and_json_values():
    assert parse_model_spec("timm:vit_small_patch14_dinov2.lvd142m:weights=w.pt,img_size=518") == {
        "name": "timm:vit_small_patch14_dinov2.lvd142m",
        "options": {"weights": "w.pt", "img_size": 518},
    }
    assert parse_model_spec("open_clip:ViT-B-32") == {"name": "open_clip:ViT-B-32", "options": {}}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_model_spec("timm:resnet18:weights=a,oops")


def test_offline_without_weights_fails_in_under_a_second_with_the_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from kdbench.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cub = make_cub(tmp_path / "cub")
    args = ["run", "--suite", "standard", "-p", "distill", "-m", "supervised", "--no-progress"]
    args += ["--out", str(tmp_path / "out"), "--set", f"distill.data.root={cub}"]
    args += ["--teacher", "timm:vit_tiny_patch16_224:img_size=32"]
    args += ["--set", "distill.student.options.pretrained=false", "--fail-fast"]
    import time

    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    elapsed = time.perf_counter() - started
    # found before any unit starts: one line naming the option that passes a local file
    assert result.exit_code == 2, result.output
    assert "distill.teacher: timm:vit_tiny_patch16_224 needs its pretrained weights" in (
        result.output
    )
    assert "add --teacher timm:vit_tiny_patch16_224:weights=PATH to the kdbench run" in (
        result.output
    )
    assert not list((tmp_path / "out").rglob("*.json"))
    assert elapsed < 10  # the whole command; the model itself fails at once (below)
    from kdbench.distillation import init_backbone

    started = time.perf_counter()
    with pytest.raises(Exception, match="--student timm:resnet18:weights=PATH"):
        init_backbone(plugins.get_registry(), "students", {"name": "timm:resnet18", "options": {}})
    assert time.perf_counter() - started < 1.0


def test_the_teacher_option_reaches_every_protocol_and_set_reaches_its_options(tmp_path):
    registry = plugins.get_registry()
    weights = tmp_path / "w.safetensors"
    units, _ = runner.plan(
        registry,
        protocols=["distill", "fewshot", "segmentation", "device"],
        methods=["teacher"],
        suite="standard",
        teacher=f"timm:vit_tiny_patch16_224:weights={weights},img_size=32",
        overrides={"distill.teacher.options.img_size": 64},
    )
    teachers = {u.protocol.name: runner.load_protocol(u.protocol) for u in units}
    spec = {"name": "timm:vit_tiny_patch16_224", "options": {"weights": str(weights)}}
    for unit in units:
        found = teachers[unit.protocol.name].teacher_key
        node = unit.config
        for part in found.split("."):
            node = node[part]
        size = 64 if unit.protocol.name == "distill" else 32
        assert node == {**spec, "options": {**spec["options"], "img_size": size}}
    with pytest.raises(UnknownComponentError, match="unknown teacher 'timm-vit:x'"):
        runner.plan(registry, protocols=["distill"], methods=["kd"], teacher="timm-vit:x")


def _teacher(record, **fields):
    record["components"]["teacher"].update(fields)
    return record


def test_the_leaderboard_refuses_a_teacher_with_random_weights_and_says_why(tmp_path):
    from tests.leaderboard.records import make_record, write_records

    random_options = _teacher(
        make_record(method="randomised"), options={"pretrained": False}
    )  # a record written before weights were recorded says it in its options
    random_weights = _teacher(
        make_record(method="unweighted", suite="standard"), weights={"source": "random"}
    )
    other_sha = _teacher(
        make_record(method="other"),
        name="shapes-teacher",
        weights={"source": "file", "sha256": "ab" * 32, "path": "t.safetensors"},
    )
    device = _teacher(
        make_record(method="student", protocol="device", reference=True),
        options={"pretrained": False},
    )  # latency does not depend on weights
    good = make_record(method="kd")
    write_records(tmp_path, [random_options, random_weights, other_sha, device, good])
    intake = read_and_screen(tmp_path, {})
    assert sorted(f.record.method.name for f in intake.ranked) == ["kd", "student"]
    why = {u.file.record.method.name: (u.reason, u.detail) for u in intake.unranked}
    assert why["randomised"][0] == why["unweighted"][0] == why["other"][0] == "weights"
    assert "random weights" in why["randomised"][1] and "random weights" in why["unweighted"][1]
    assert "not the embedded suite's" in why["other"][1]


def test_records_fingerprint_the_weights_of_their_models(tmp_path):
    from kdbench.models.weights_identity import file_sha256, weights_of

    dtd = make_dtd(tmp_path / "dtd")
    report = _run(tmp_path / "out", _distill(tmp_path, "dtd", dtd))
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(report.outcomes[0].path)
    teacher = record.components["teacher"]
    assert teacher.weights.source == "file"
    assert teacher.weights.path == str(tmp_path / "vit.safetensors")
    assert teacher.weights.sha256 == file_sha256(tmp_path / "vit.safetensors")
    assert record.components["student"].weights.sha256 == teacher.weights.sha256
    # another checkpoint of the same architecture has another fingerprint
    import timm
    from safetensors.torch import save_file

    other = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    save_file(other.state_dict(), str(tmp_path / "other.safetensors"))
    assert file_sha256(tmp_path / "other.safetensors") != teacher.weights.sha256
    assert weights_of("timm:resnet18", {"pretrained": False}).source == "random"


def test_weight_digests_are_cached_per_path_and_mtime(tmp_path, monkeypatch):
    import os

    import torch
    from safetensors.torch import save_file

    from kdbench.cache import tensor_digest
    from kdbench.models import weights_identity

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3)}, str(path))
    first = weights_identity.file_sha256(path)
    assert first == tensor_digest({"a": torch.zeros(3)})
    weights_identity._memo.clear()
    calls = []
    monkeypatch.setattr(weights_identity, "tensor_digest", lambda s: calls.append(s) or "x")
    assert weights_identity.file_sha256(path) == first and not calls  # from the cache file
    save_file({"a": torch.ones(3)}, str(path))
    os.utime(path, ns=(1, 10**18))
    assert weights_identity.file_sha256(path) == "x" and len(calls) == 1  # changed: hashed


def test_teacher_and_student_options_add_to_the_protocols_own_for_the_same_model():
    registry = plugins.get_registry()
    teacher = "timm:vit_base_patch14_dinov2.lvd142m:weights=b.safetensors"
    student = "timm:vit_small_patch14_dinov2.lvd142m:weights=s.safetensors"
    [unit], _ = runner.plan(
        registry,
        protocols=["distill"],
        methods=["kd"],
        suite="standard",
        teacher=teacher,
        students=[student],
    )
    assert unit.config["teacher"]["options"] == {"img_size": 224, "weights": "b.safetensors"}
    assert unit.config["student"]["options"] == {"img_size": 224, "weights": "s.safetensors"}
    assert unit.student is None  # the default student, with a weights file: not a new row


def test_only_unset_loader_options_are_left_out_of_a_config():
    registry = plugins.get_registry()
    [unit], _ = runner.plan(
        registry,
        protocols=["segmentation"],
        methods=["teacher"],
        smoke=True,
        overrides={"segmentation.adapters": [{"name": "linear"}]},
    )
    # keys with defaults elsewhere are recorded as before (config hashes unchanged)
    assert unit.config["adapters"] == [{"name": "linear", "options": None, "lr": None}]
    [unit], _ = runner.plan(
        registry, protocols=["segmentation"], methods=["teacher"], suite="standard"
    )
    assert "options" not in unit.config["data"] and "options" not in unit.config["base"]


def test_example_keys_in_messages_are_real_keys():
    import re

    from kdbench.protocols.base import parse_overrides

    registry = plugins.get_registry()
    for protocol in ("distill", "fewshot", "segmentation", "oneclass", "device"):
        with pytest.raises(ConfigError) as caught:
            runner.plan(registry, protocols=[protocol], methods=["teacher"], overrides={"x": 1})
        example = re.search(r"e\.g\. --set (\S+)", str(caught.value)).group(1)
        runner.plan(
            registry,
            protocols=[protocol],
            methods=["teacher"],
            overrides=parse_overrides([example]),
        )
    with pytest.raises(ConfigError) as caught:
        parse_overrides(["oops"])
    example = re.search(r"e\.g\. --set (\S+)", str(caught.value)).group(1)
    runner.plan(
        registry, protocols=["distill"], methods=["kd"], overrides=parse_overrides([example])
    )
