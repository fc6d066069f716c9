"""``kdbench export``: ranked records in Every Eval Ever's and lm-evaluation-harness's formats."""

import json

import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.errors import ConfigError
from kdbench.export import EEE_SCHEMA_VERSION, Z95, export_records, path_part
from kdbench.protocols.fewshot import FewShot
from tests.leaderboard.records import CPU, GPU, make_record, metric

EEE_TOP = {
    "schema_version",
    "evaluation_id",
    "dedupe_identity",
    "evaluation_timestamp",
    "retrieved_timestamp",
    "source_metadata",
    "eval_library",
    "model_info",
    "evaluation_results",
    "detailed_evaluation_results",
}


def _strings_only(details):
    assert all(isinstance(v, str) for v in details.values()), details


def check_eee(log):
    """The constraints of Every Eval Ever's eval.schema.json (0.2.1) that an export can
    break: required fields, the closed top level, enums, string-only details, and a
    continuous score's bounds."""
    assert set(log) <= EEE_TOP
    for key in ("schema_version", "evaluation_id", "retrieved_timestamp", "source_metadata"):
        assert key in log
    source = log["source_metadata"]
    assert source["source_type"] in {"documentation", "evaluation_run"}
    assert source["evaluator_relationship"] in {
        "first_party",
        "third_party",
        "collaborative",
        "other",
    }
    assert isinstance(source["source_organization_name"], str)
    _strings_only(source.get("additional_details", {}))
    assert {"name", "version"} <= set(log["eval_library"])
    assert {"name", "id"} <= set(log["model_info"])
    _strings_only(log["model_info"].get("additional_details", {}))
    identity = log["dedupe_identity"]
    assert identity["hash_algorithm"] == "sha256"
    assert all(c in "0123456789abcdef" for c in identity["run_fingerprint"])
    assert log["evaluation_results"], "at least one result"
    for result in log["evaluation_results"]:
        assert {"evaluation_name", "source_data", "metric_config", "score_details"} <= set(result)
        data = result["source_data"]
        assert data["source_type"] == "other" and isinstance(data["dataset_name"], str)
        _strings_only(data.get("additional_details", {}))
        config = result["metric_config"]
        assert isinstance(config["lower_is_better"], bool)
        if config.get("score_type") == "continuous":
            assert {"min_score", "max_score"} <= set(config)
        _strings_only(config.get("additional_details", {}))
        score = result["score_details"]
        assert isinstance(score["score"], float)
        interval = score.get("uncertainty", {}).get("confidence_interval")
        if interval is not None:
            assert interval["lower"] <= score["score"] <= interval["upper"]
            assert 0 <= interval["confidence_level"] <= 1


def _fewshot(method, seed, acc1, *, smoke=False, null=False):
    metrics = [
        metric("acc_1shot", acc1, headline=True, ci95=0.4),
        metric("acc_5shot", None if null else acc1 + 5, reason="not scored" if null else None),
    ]
    return make_record(
        method=method,
        seed=seed,
        smoke=smoke,
        version=FewShot.version,  # the installed protocol's: older versions are not exported
        subject="shapes-vit-tiny",
        run_id=f"fs-{method}-{seed}-{int(smoke)}",
        metrics=metrics,
    )


def _device(fingerprint, run_id, latency):
    return make_record(
        protocol="device",
        method="student",
        reference=True,
        subject="shapes-vit-tiny",
        run_id=run_id,
        fingerprint=fingerprint,
        metrics=[
            metric(
                "latency_p50_ms",
                latency,
                higher_is_better=False,
                unit="ms",
                headline=True,
                ci95=None,
            ),
            metric("energy_mj_per_image", None, unit="mJ/image", reason="no counter"),
        ],
    )


@pytest.fixture
def records(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    items = {
        "kd0.json": _fewshot("kd", 0, 80.0),
        "kd1.json": _fewshot("kd", 1, 82.0, null=True),
        "smoke.json": _fewshot("kd", 2, 10.0, smoke=True),
        "cpu.json": _device(CPU, "dev-cpu", 1.5),
        "gpu.json": _device(GPU, "dev-gpu", 0.2),
    }
    for name, record in items.items():
        (folder / name).write_text(json.dumps(record))
    return folder


def _describe(protocol, name):
    return f"about {protocol} {name}".strip()


def test_every_eval_ever_logs_follow_the_schema(records, tmp_path):
    out = tmp_path / "eee"
    report = export_records(records, out, "every-eval-ever", describe=_describe)
    assert report.records == 4 and len(report.files) == 4
    assert report.skipped == {"smoke": 1}
    logs = [json.loads(p.read_text()) for p in report.files]
    for log in logs:
        check_eee(log)
        assert log["schema_version"] == EEE_SCHEMA_VERSION
    kd1 = next(
        log for log in logs if log["dedupe_identity"]["additional_details"]["run_id"] == "fs-kd-1-0"
    )
    assert [r["evaluation_name"] for r in kd1["evaluation_results"]] == [
        "kdbench_embedded_fewshot/acc_1shot"
    ]
    assert kd1["source_metadata"]["additional_details"]["null_metrics"] == "acc_5shot: not scored"
    result = kd1["evaluation_results"][0]
    assert result["score_details"]["score"] == 82.0
    interval = result["score_details"]["uncertainty"]["confidence_interval"]
    assert (interval["lower"], interval["upper"]) == pytest.approx((81.6, 82.4))
    assert result["metric_config"]["evaluation_description"] == "about fewshot acc_1shot"
    assert kd1["model_info"]["name"] == "kd@shapes-vit-tiny"
    # the repository's layout: data/{benchmark}/{developer}/{model}/
    assert sorted(p.relative_to(out).parts[:4] for p in report.files)[0] == (
        "data",
        "kdbench-embedded-device",
        "kdbench",
        "student@shapes-vit-tiny",
    )


def test_lm_eval_results_group_protocols_per_row_and_seed(records, tmp_path):
    report = export_records(records, tmp_path / "lm", "lm-eval", describe=_describe)
    names = sorted(str(p.relative_to(tmp_path / "lm")) for p in report.files)
    assert names == [
        "embedded/kd@shapes-vit-tiny/results_seed0.json",
        "embedded/kd@shapes-vit-tiny/results_seed1.json",
        "embedded/student@shapes-vit-tiny/results_seed0.json",
    ]
    kd0 = json.loads((tmp_path / "lm" / names[0]).read_text())
    task = kd0["results"]["kdbench_embedded_fewshot"]
    assert task["acc_1shot,none"] == 80.0
    assert task["acc_1shot_stderr,none"] == pytest.approx(0.4 / Z95)
    assert kd0["higher_is_better"]["kdbench_embedded_fewshot"]["acc_1shot"] is True
    assert kd0["versions"] == {"kdbench_embedded_fewshot": FewShot.version}
    assert kd0["n-samples"]["kdbench_embedded_fewshot"] == {"original": 100, "effective": 100}
    # two machines' device records of one row and seed stay two tasks
    device = json.loads((tmp_path / "lm" / names[2]).read_text())
    assert len(device["results"]) == 2
    assert all(t.startswith("kdbench_embedded_device_") for t in device["results"])
    assert sorted(t["latency_p50_ms,none"] for t in device["results"].values()) == [0.2, 1.5]
    assert all(t["latency_p50_ms_stderr,none"] == "N/A" for t in device["results"].values())


def test_export_is_deterministic(records, tmp_path):
    for fmt in ("every-eval-ever", "lm-eval"):
        first = export_records(records, tmp_path / f"a-{fmt}", fmt, describe=_describe)
        second = export_records(records, tmp_path / f"b-{fmt}", fmt, describe=_describe)
        assert [p.read_bytes() for p in first.files] == [p.read_bytes() for p in second.files]


def test_untrusted_names_stay_inside_the_output_folder():
    assert path_part("../../etc/passwd") == "etc_passwd"
    assert path_part("a/b\\c\x00d") == "a_b_c_d"
    assert path_part("..") == "_"
    assert path_part("kd@shapes-vit-tiny") == "kd@shapes-vit-tiny"


def test_bad_format_and_missing_folder_are_clear(records, tmp_path):
    with pytest.raises(ConfigError, match="every-eval-ever, lm-eval"):
        export_records(records, tmp_path / "x", "helm")
    with pytest.raises(ConfigError, match="--records"):
        export_records(tmp_path / "nope", tmp_path / "x", "lm-eval")


def test_cli_exports_the_committed_leaderboard(tmp_path):
    result = CliRunner().invoke(
        app, ["export", "-f", "every-eval-ever", "-r", "leaderboards", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.rglob("*.json"))
    assert files and f"-> {len(files)} every-eval-ever file(s)" in result.output
    for path in files[:: max(1, len(files) // 10)]:
        check_eee(json.loads(path.read_text()))
