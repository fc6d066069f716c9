"""Transfer sets: query-balanced retrieval, equal sizes, determinism, the embeddings cache,
generic pools on disk, the distill protocol's choice of set, and the contact sheet."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.data.downstream import load_task
from kdbench.errors import ConfigError
from kdbench.methods import KD, SUPERVISED
from kdbench.protocols.base import load_protocol
from kdbench.record_files import load_record
from kdbench.transfer import distill_transfer, parse_transfer, transfer_name
from kdbench.transfer.pool import POOL_CHUNK, FolderPool, ShapesPool
from kdbench.transfer.retrieval import balanced_pick, query_balanced, top_k


class ArrayPool:
    """A pool held in memory, in chunks of POOL_CHUNK like the real ones."""

    name = "array"

    def __init__(self, images, version="v1"):
        self.images = images
        self.version = version
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def chunk_count(self):
        return -(-len(self) // POOL_CHUNK)

    def chunk(self, index):
        self.reads += 1
        return self.images[index * POOL_CHUNK : (index + 1) * POOL_CHUNK]

    def load(self, indices):
        return self.images[torch.as_tensor(indices)]

    def image_ids(self, indices):
        return [f"array/{int(i)}" for i in indices]

    def describe(self, indices):
        return None


class MeanColour(torch.nn.Module):
    """An embedding: each channel's mean, through a linear map (its weights are the
    'teacher' whose change must invalidate the cache)."""

    def __init__(self, seed=0):
        super().__init__()
        self.proj = torch.nn.Linear(3, 3)
        torch.nn.init.eye_(self.proj.weight)
        with torch.no_grad():
            self.proj.bias.fill_(float(seed))
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return self.proj(images.float().mean(dim=(2, 3)))


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=g)


def test_balanced_pick_gives_every_query_its_share_of_distinct_images():
    ranked = torch.tensor([[0, 1, 2, 3], [0, 1, 4, 5], [0, 6, 7, 8]])
    picked, owner = balanced_pick(ranked, 7)
    assert len(picked) == len(set(picked.tolist())) == 7
    assert np.bincount(owner, minlength=3).tolist() == [3, 2, 2]  # 7 = 2 each + 1 for the first
    assert picked[:3].tolist() == [0, 1, 6]  # in turns: an image two queries share goes once
    assert balanced_pick(ranked[:, :2], 6) is None  # too few neighbours: ask for more


def test_chunked_top_k_equals_a_full_sort():
    g = torch.Generator().manual_seed(1)
    queries = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    pool = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=1)
    chunks = [(s, pool[s : s + 7]) for s in range(0, 50, 7)]
    scores, index = top_k(queries, chunks, 6)
    full = (queries @ pool.T).topk(6, dim=1)
    assert torch.equal(index, full.indices) and torch.allclose(scores, full.values)


def test_retrieval_is_query_balanced_deterministic_and_of_the_asked_size(tmp_path):
    pool = ArrayPool(_images(300, 0))
    queries = _images(7, 1)
    first = query_balanced(queries, pool, MeanColour(), 40, "cpu", cache_root=tmp_path)
    again = query_balanced(queries, pool, MeanColour(), 40, "cpu", cache_root=tmp_path)
    assert len(first.indices) == len(set(first.indices.tolist())) == 40
    counts = np.bincount(first.owner, minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 40
    assert np.array_equal(first.indices, again.indices)


def test_pool_embeddings_are_cached_per_model_weights(tmp_path):
    pool = ArrayPool(_images(100, 0))
    queries = _images(3, 1)
    teacher = MeanColour(seed=0)
    query_balanced(queries, pool, teacher, 9, "cpu", cache_root=tmp_path)
    reads = pool.reads
    query_balanced(queries, pool, MeanColour(seed=0), 9, "cpu", cache_root=tmp_path)
    assert pool.reads == reads  # same weights: the pool is not embedded again
    changed = MeanColour(seed=5)
    query_balanced(queries, pool, changed, 9, "cpu", cache_root=tmp_path)
    assert pool.reads > reads and changed.calls > 1  # another teacher: recomputed
    pool.version = "v2"
    reads = pool.reads
    query_balanced(queries, pool, MeanColour(seed=0), 9, "cpu", cache_root=tmp_path)
    assert pool.reads > reads  # another pool version: recomputed too


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_a_pool_that_is_not_an_image_folder_is_a_clear_error(tmp_path, kind):
    path = tmp_path / "pool"
    if kind == "file":
        path.write_text("not a folder")
    elif kind == "empty":
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match="is not an image folder"):
        FolderPool(path, size=8)


def test_a_folder_pool_reads_images_at_any_depth(tmp_path):
    from PIL import Image

    for i, where in enumerate(["a/x.png", "a/b/y.png", "z.jpg"]):
        path = tmp_path / "pool" / where
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(path)
    pool = FolderPool(tmp_path / "pool", size=8)
    assert len(pool) == 3 and pool.image_ids(np.arange(3)) == ["a/b/y.png", "a/x.png", "z.jpg"]
    assert pool.chunk(0).shape == (3, 3, 8, 8) and pool.chunk(0).dtype == torch.uint8


def test_the_shapes_pool_is_deterministic_and_covers_classes_domains_and_scenery(tmp_path):
    pool = ShapesPool(per_class=1, scenery=30, cache_root=tmp_path)
    assert len(pool) == 2 * (240 + 30)
    info = pool.describe(np.arange(len(pool)))
    assert set(info["domain"]) == {"base", "shift"}
    assert (info["class"] == "").sum() == 60 and len(set(info["class"])) == 241
    fresh = ShapesPool(per_class=1, scenery=30, cache_root=tmp_path / "other")
    assert torch.equal(pool.chunk(0), fresh.chunk(0))
    assert ShapesPool(per_class=2, scenery=30).version != pool.version


def test_recipes_name_transfer_sets_and_runs_override_them():
    assert transfer_name(True) == "task" and transfer_name(False) == "none"
    assert transfer_name("retrieved") == "retrieved"
    assert parse_transfer("retrieved:by=student,size=10") == (
        "retrieved",
        {"by": "student", "size": 10},
    )
    registry = plugins.get_registry()
    assert set(registry.names("transfer_sets")) >= {"task", "generic", "retrieved", "none"}
    proto = load_protocol(registry.get("protocols", "distill"))
    default = proto.config("embedded", False)
    assert "transfer" not in default  # the default config (and its hash) is unchanged
    chosen = proto.config("embedded", False, {"transfer": "generic"})
    assert chosen["transfer"] == "generic"


def test_the_default_config_hash_is_the_one_the_committed_records_have():
    from pathlib import Path

    from kdbench.results import config_hash

    record = Path(__file__).resolve().parents[1] / "leaderboards/embedded/distill/kd-seed0.json"
    if not record.exists():
        pytest.skip("no committed records")
    proto = load_protocol(plugins.get_registry().get("protocols", "distill"))
    committed = json.loads(record.read_text())["protocol"]["config_hash"]
    assert config_hash(proto.config("embedded", False)) == committed


@pytest.fixture
def smoke_task(world_weights):
    registry = plugins.get_registry()
    proto = load_protocol(registry.get("protocols", "distill"))
    config = proto.config("embedded", True)
    return config, load_task(config["data"], 0, registry, None), registry


def test_pool_sets_have_the_task_sets_size_and_are_deterministic(smoke_task):
    config, data, registry = smoke_task

    def build(name, seed=0):
        return distill_transfer(config, data, seed, name, registry, "cpu", smoke=True)

    task, generic, retrieved = build("task"), build("generic"), build("retrieved")
    assert task.images is data.transfer_images  # `task` trains on exactly what it did before
    assert len(task) == len(generic) == len(retrieved) == config["data"]["transfer_images"]
    assert len(build("none")) == 0
    assert build("retrieved").images_sha256 == retrieved.images_sha256
    assert build("generic").images_sha256 == generic.images_sha256
    assert build("generic", seed=1).images_sha256 != generic.images_sha256
    assert retrieved.images_sha256 != generic.images_sha256
    queries = len(data.train_labels)
    counts = np.bincount(retrieved.retrieval.owner, minlength=queries)
    assert counts.max() - counts.min() <= 1
    stats = retrieved.statistics
    assert 0 <= stats["task_class_fraction"] <= 1 and stats["pool_size"] == 1000
    student = distill_transfer(
        {**config, "transfer": "retrieved:by=student"}, data, 0, "task", registry, "cpu", smoke=True
    )
    assert student.options["by"] == "student" and len(student) == len(retrieved)


def test_a_run_records_its_transfer_set_and_keeps_the_default_path(world_weights, tmp_path):
    registry = plugins.get_registry()
    units, _ = runner.plan(registry, protocols=["distill"], methods=["kd"], smoke=True)
    chosen, _ = runner.plan(
        registry,
        protocols=["distill"],
        methods=["kd", "agnostic"],
        smoke=True,
        overrides={"distill.transfer": "retrieved"},
    )
    report = runner.run_units([*units, *chosen], registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    own = load_record(tmp_path / "embedded/distill/kd-seed0.smoke.json")
    ref = own.components["transfer_set"]
    assert ref.name == "task" and ref.options["size"] == 40
    assert len(ref.options["images_sha256"]) == 64
    assert "transfer" not in own.protocol.config
    retrieved = load_record(tmp_path / "embedded/distill/transfer-retrieved/kd-seed0.smoke.json")
    assert retrieved.components["transfer_set"].name == "retrieved"
    assert retrieved.components["transfer_set"].options["size"] == 40
    assert "task_class_fraction" in retrieved.statistics["transfer"]
    agnostic = load_record(
        tmp_path / "embedded/distill/transfer-retrieved/agnostic-seed0.smoke.json"
    )
    assert agnostic.components["transfer_set"].name == "retrieved"
    assert agnostic.metric("teacher_top1").value is None
    assert any("task-agnostic" in note for note in agnostic.notes)


def test_the_task_agnostic_baseline_distils_on_the_generic_pool(world_weights, tmp_path):
    registry = plugins.get_registry()
    units, _ = runner.plan(registry, protocols=["distill"], methods=["agnostic"], smoke=True)
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / "embedded/distill/agnostic-seed0.smoke.json")
    assert record.components["transfer_set"].name == "generic"
    assert {"stage1:loss:fitnets", "stage2:loss:ce"} <= set(record.components)


def test_the_agnostic_baseline_is_run_only_when_named():
    registry = plugins.get_registry()
    assert "agnostic" not in runner.default_methods(registry)
    assert {"kd", "supervised"} <= set(runner.default_methods(registry))


def test_building_the_transfer_set_is_not_training_time(world_weights, tmp_path, monkeypatch):
    """A fit method asks for its transfer set while it trains; the time spent building it
    (rendering, embedding, retrieval) is data, as it is for recipes."""
    import time

    from kdbench.protocols.distill import Distill

    build = Distill._transfer

    def slow(self, *args, **kwargs):
        time.sleep(3.0)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(Distill, "_transfer", slow)
    registry = plugins.get_registry()
    units, _ = runner.plan(registry, protocols=["distill"], methods=["agnostic"], smoke=True)
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / "embedded/distill/agnostic-seed0.smoke.json")
    train = record.metric("train_seconds").value
    assert train < record.cost.total_seconds - 2.9, (train, record.cost.total_seconds)


def test_other_protocols_refuse_the_agnostic_method():
    registry = plugins.get_registry()
    _, refused = runner.plan(
        registry, protocols=["fewshot", "device"], methods=["agnostic"], smoke=True
    )
    assert {p for p, _, _ in refused} == {"fewshot", "device"}


def test_the_contact_sheet_command_writes_a_png(world_weights, tmp_path):
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(
        app,
        [
            "transfer",
            "contact-sheet",
            "--smoke",
            "--out",
            str(out),
            "--rows",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads(result.output[: result.output.rindex("}") + 1])
    assert stats["size"] == 40 and 0 <= stats["task_class_fraction"] <= 1


def test_recipes_keep_their_transfer_flag_for_plugins():
    assert KD.recipe.transfer_set is True and SUPERVISED.recipe.transfer_set is False


def _distill(method, seed, top1, transfer=None, component=True):
    from tests.leaderboard.records import make_record, metric

    config = {"episodes": 1} if transfer is None else {"episodes": 1, "transfer": transfer}
    record = make_record(
        protocol="distill",
        version=load_protocol(plugins.get_registry().get("protocols", "distill")).version,
        method=method,
        seed=seed,
        config=config,
        run_id=f"{method}-{transfer}-{seed}",
        metrics=[metric("student_top1", top1, headline=True)],
    )
    if component:
        name = transfer or ("none" if method == "supervised" else "task")
        record["components"]["transfer_set"] = {
            "name": name,
            "distribution": "kdbench",
            "version": "0.1.0",
            "options": {"size": 6000, "images_sha256": "0" * 64},
        }
    return record


def _write(folder, records):
    for i, record in enumerate(records):
        (folder / f"r{i}.json").write_text(json.dumps(record))


def test_the_leaderboard_keeps_transfer_sets_apart_and_implies_old_records_sets(tmp_path):
    from kdbench.leaderboard.aggregate import build_tables
    from kdbench.leaderboard.intake import read_and_screen, registered_protocol_versions

    records = []
    for seed in range(3):
        records += [
            _distill("kd", seed, 60 + seed, component=False),  # before transfer sets
            _distill("kd", seed, 50 + seed, transfer="retrieved"),
            _distill("supervised", seed, 40 + seed, component=False),
        ]
    _write(tmp_path, records)
    intake = read_and_screen(tmp_path, registered_protocol_versions())
    assert not intake.unranked, [u.detail for u in intake.unranked]  # no "duplicate" kd
    (table,) = build_tables(intake.ranked)
    rows = {(r.method, r.transfer): r for r in table.rows}
    assert set(rows) == {("kd", "task"), ("kd", "retrieved"), ("supervised", "none")}
    assert rows[("kd", "retrieved")].transfer_chosen
    assert rows[("kd", "retrieved")].deltas["student_top1"].mean == pytest.approx(10.0)
    from kdbench.summarize import markdown_table

    text = markdown_table(table)  # kdbench summarize keeps the two kd rows apart too
    assert "| transfer set |" in text
    assert "| kd | shapes-vit-tiny | retrieved |" in text
    assert "| kd | shapes-vit-tiny | task |" in text


def test_the_distill_page_has_a_transfer_set_column_and_filter(tmp_path):
    from kdbench.leaderboard.build import build_site

    records = tmp_path / "records"
    records.mkdir()
    _write(
        records, [_distill("kd", s, 60, transfer=t) for s in range(3) for t in (None, "generic")]
    )
    build_site(records, tmp_path / "site")
    page = (tmp_path / "site/protocols/embedded/distill.html").read_text()
    assert ">Transfer set</th>" in page and 'class="transfer-filter"' in page
    assert 'data-transfer="generic"' in page and 'data-transfer="task"' in page


def test_compare_names_a_transfer_set_after_a_plus(tmp_path):
    from kdbench.compare import compare

    _write(
        tmp_path,
        [_distill("kd", s, 60 + s - 5 * bool(t), t) for s in range(3) for t in (None, "retrieved")],
    )
    result = compare(tmp_path, "distill", "kd+retrieved", "kd")
    assert result.metrics[0].diff == pytest.approx(-5.0)
    assert result.metrics[0].seeds == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"kd@shapes-vit-tiny\+retrieved"):
        compare(tmp_path, "distill", "kd+generic", "kd")
