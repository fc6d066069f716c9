"""The oneclass protocol: confuser sources, task sampling at exact taxonomy distances,
vectorised scoring, the image–text teachers, and end-to-end runs on both suites."""

import json
import sys
import time

import numpy as np
import pytest
import torch

from kdbench import plugins, runner
from kdbench.confusers import (
    Candidates,
    ConfuserError,
    FrozenConfusers,
    LabelSet,
    MissingTargetError,
    RandomConfusers,
    TaxonomyConfusers,
    check_answer,
    read_confuser_file,
    write_confuser_file,
)
from kdbench.confusers import shapes as shapes_confusers
from kdbench.data.pool import Pool, taxonomy_codes
from kdbench.hookspecs import hookimpl
from kdbench.metrics import auroc, binary_macro_f1, fpr_at_tpr
from kdbench.models.backbone import WeightsError
from kdbench.oneclass import (
    cached_tasks,
    check_distances,
    draw_confusers,
    sample_tasks,
    score_tasks,
)
from kdbench.protocols.base import ConfigError
from kdbench.record_files import load_record
from kdbench.results import DatasetIdentity
from kdbench.world.taxonomy import LEVELS, Taxonomy
from tests.data.fixtures import make_imagefolder, make_imagenet_val, make_inat2021

TAXONOMY = Taxonomy()
SHAPES_LABELS = LabelSet(
    "shapes",
    tuple(c.name for c in TAXONOMY.classes),
    tuple(c.lineage for c in TAXONOMY.classes),
    LEVELS,
    "1",
)


def shapes_pool(class_ids, per_class=6):
    """A pool of Shapes classes with ``per_class`` (imaginary) images each."""
    class_ids = np.asarray(class_ids)
    labels = np.repeat(np.arange(len(class_ids)), per_class)
    labels = labels[np.random.default_rng(0).permutation(len(labels))]
    return Pool(
        names=[TAXONOMY.classes[i].name for i in class_ids],
        image_labels=labels,
        levels=LEVELS,
        codes=taxonomy_codes([TAXONOMY.classes[i].lineage for i in class_ids]),
        vocabulary=SHAPES_LABELS,
        text_index=class_ids,
        identity=DatasetIdentity(name="shapes", version="1"),
        digest="test",
    )


# -- confuser sources -----------------------------------------------------------------------


def test_the_shipped_shapes_file_is_what_the_rule_makes_and_names_only_real_classes():
    path = shapes_confusers.shipped_path()
    data = json.loads(path.read_text())
    assert data["confusers"] == shapes_confusers.attribute_neighbours(data["k"])
    frozen = read_confuser_file(path, SHAPES_LABELS)
    assert set(frozen.confusers) == set(SHAPES_LABELS.names)
    # the same object in the other four patterns come first
    assert frozen.confusers["striped red star"][:4] == (
        "plain red star",
        "dotted red star",
        "checkered red star",
        "hollow red star",
    )
    assert "plain red star" not in frozen.confusers["plain red star"]


def test_a_confuser_file_naming_unknown_classes_is_refused_with_the_names(tmp_path):
    path = write_confuser_file(
        tmp_path / "bad.json",
        {"plain red star": ["plain red moon", "plain red star"], "plain bleu star": ["x"]},
        name="bad",
        version="1",
        dataset="shapes",
    )
    with pytest.raises(ConfuserError, match="3 class") as error:
        read_confuser_file(path, SHAPES_LABELS)
    for name in ("plain red moon", "plain bleu star", "'x'"):
        assert name in str(error.value)
    with pytest.raises(ConfuserError, match="dataset 'imagenet-val', not 'shapes'"):
        read_confuser_file(
            write_confuser_file(
                tmp_path / "other.json", {}, name="o", version="1", dataset="imagenet-val"
            ),
            SHAPES_LABELS,
        )
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ConfuserError, match="not valid JSON"):
        read_confuser_file(tmp_path / "junk.json", SHAPES_LABELS)
    with pytest.raises(ConfuserError, match="does not exist"):
        read_confuser_file(tmp_path / "missing.json", SHAPES_LABELS)
    selfish = write_confuser_file(
        tmp_path / "self.json",
        {"plain red star": ["plain red star"]},
        name="s",
        version="1",
        dataset="shapes",
    )
    with pytest.raises(ConfuserError, match="include the class itself"):
        read_confuser_file(selfish, SHAPES_LABELS)


def test_frozen_needs_a_file_where_none_ships_and_reports_missing_targets(tmp_path):
    imagenet = LabelSet("imagenet-val", ("tench", "goldfish", "shark"))
    with pytest.raises(ConfuserError, match=r"ships no confuser file.*options.file=PATH"):
        FrozenConfusers(imagenet)
    path = write_confuser_file(
        tmp_path / "fish.json",
        {"tench": ["goldfish"]},
        name="fish",
        version="2",
        dataset="imagenet-val",
    )
    source = FrozenConfusers(imagenet, file=path)
    assert source.version == "fish@2"
    pool = Pool(
        names=list(imagenet.names),
        image_labels=np.array([0, 1, 2]),
        levels=None,
        codes=None,
        vocabulary=imagenet,
        text_index=np.arange(3),
        identity=DatasetIdentity(name="imagenet-val", version="x"),
        digest="t",
    )
    with pytest.raises(MissingTargetError, match=r"2 target.*'goldfish', 'shark'"):
        draw_confusers(source, "frozen", pool, np.arange(3), 5, 0)
    table = draw_confusers(source, "frozen", pool, np.array([0]), 3, 0)
    assert table.tolist() == [[1, -1, -1]]


def test_taxonomy_confusers_take_the_nearest_relatives_first():
    source = TaxonomyConfusers(SHAPES_LABELS)
    names = SHAPES_LABELS.names
    index = {n: i for i, n in enumerate(names)}
    target = "striped red star"
    answer = source.confusers(target, Candidates(names, target, index), 10, seed=0)
    assert len(answer) == 10 and target not in answer
    depth = [TAXONOMY.lca_depth(index[target], index[a]) for a in answer]
    assert depth[:4] == [3, 3, 3, 3]  # same colour and shape: the other patterns
    assert all(d == 2 for d in depth[4:])  # then the same colour, other shapes
    again = source.confusers(target, Candidates(names, target, index), 10, seed=0)
    other = source.confusers(target, Candidates(names, target, index), 10, seed=1)
    assert again == answer and other[:4] == answer[:4] and other != answer
    with pytest.raises(ConfuserError, match="has none"):
        TaxonomyConfusers(LabelSet("imagenet-val", ("a", "b")))


def test_random_confusers_are_seeded_and_never_the_target():
    source = RandomConfusers(SHAPES_LABELS)
    names = SHAPES_LABELS.names
    index = {n: i for i, n in enumerate(names)}
    first = source.confusers(names[5], Candidates(names, names[5], index), 10, seed=3)
    assert first == source.confusers(names[5], Candidates(names, names[5], index), 10, seed=3)
    assert first != source.confusers(names[5], Candidates(names, names[5], index), 10, seed=4)
    assert len(set(first)) == 10 and names[5] not in first


def test_candidates_view_leaves_out_the_target():
    names = ("a", "b", "c", "d")
    view = Candidates(names, "b", {n: i for i, n in enumerate(names)})
    assert list(view) == ["a", "c", "d"] and len(view) == 3
    assert view[-1] == "d" and view[1:] == ["c", "d"]
    assert "b" not in view and "c" in view and "z" not in view


def test_answers_from_a_source_are_checked():
    allowed = ["b", "c", "d"]
    assert check_answer("s", "a", ["c", "b", "d"], allowed, k=2) == ["c", "b"]
    with pytest.raises(ConfuserError, match="'zebra'"):
        check_answer("s", "a", ["b", "zebra"], allowed, k=2)
    with pytest.raises(ConfuserError, match="repeats"):
        check_answer("s", "a", ["b", "b"], allowed, k=2)
    with pytest.raises(ConfuserError, match="list of label names"):
        check_answer("s", "a", "b", allowed, k=2)


# -- tasks ----------------------------------------------------------------------------------


def test_tasks_draw_negatives_at_exactly_the_asked_distance_balanced_one_to_one():
    pool = shapes_pool(np.arange(0, 240, 4))  # every fourth class: some lack siblings
    targets = np.arange(len(pool.names))
    tasks = sample_tasks(pool, targets, [*LEVELS[:-1], "root", "uniform"], 4, 1, seed=0)
    world_of = pool.text_index
    depth_of = {"root": 0, "tone": 1, "colour": 2, "shape": 3}
    for row in range(tasks.count):
        t = tasks.target[row]
        distance = tasks.distances[tasks.distance[row]]
        idx, lab = tasks.index[row], tasks.labels[row]
        pos, neg = idx[lab == 1], idx[lab == 0]
        assert len(pos) == len(neg) == 4
        assert len(set(pos)) == 4 and len(set(neg)) == 4
        assert (pool.image_labels[pos] == t).all()
        for c in pool.image_labels[neg]:
            lca = TAXONOMY.lca_depth(world_of[t], world_of[c])
            assert (c != t) if distance == "uniform" else lca == depth_of[distance]
    # a target whose siblings are all outside the pool is skipped and counted, not drawn
    expected_skips = sum(
        not any(TAXONOMY.lca_depth(world_of[t], world_of[c]) == 3 for c in targets if c != t)
        for t in targets
    )
    assert expected_skips > 0 and tasks.skipped["shape"] == expected_skips
    assert (tasks.distance == tasks.distances.index("shape")).sum() == len(targets) - expected_skips
    assert tasks.skipped["root"] == tasks.skipped["uniform"] == 0


def test_task_draws_are_deterministic_and_independent_per_target():
    pool = shapes_pool(np.arange(0, 240, 3))
    targets = np.arange(len(pool.names))
    first = sample_tasks(pool, targets, ["colour", "shape"], 3, 2, seed=0)
    again = sample_tasks(pool, targets, ["colour", "shape"], 3, 2, seed=0)
    other = sample_tasks(pool, targets, ["colour", "shape"], 3, 2, seed=1)
    assert first.digest() == again.digest() and first.digest() != other.digest()
    assert (first.index == again.index).all()
    # dropping targets leaves the remaining targets' tasks unchanged
    fewer = sample_tasks(pool, targets[::2], ["colour", "shape"], 3, 2, seed=0)
    keep = np.isin(first.target, targets[::2])
    assert (fewer.index == first.index[keep]).all()


def test_tasks_are_drawn_once_per_key_and_saved_with_their_counts(tmp_path):
    pool = shapes_pool(np.arange(0, 240, 3))
    targets = np.arange(len(pool.names))
    distances = ["shape", "uniform"]
    calls = []

    def draw():
        calls.append(1)
        return sample_tasks(pool, targets, distances, 3, 1, seed=0)

    first = cached_tasks(draw, "key", distances, tmp_path)
    again = cached_tasks(draw, "key", distances, tmp_path)
    assert len(calls) == 1
    assert first.digest() == again.digest() == draw().digest()
    assert again.skipped == first.skipped and first.skipped["shape"] > 0
    assert (again.labels == first.labels).all() and again.short == first.short
    (tmp_path / "oneclass-tasks" / "key.json").unlink()  # counts lost: drawn again
    assert cached_tasks(draw, "key", distances, tmp_path).skipped == first.skipped
    assert len(calls) == 3


def test_tasks_on_inaturalist_match_the_taxonomy_index(tmp_path):
    from kdbench.data.inaturalist import load_inat2021
    from kdbench.data.taxonomy import TaxonomyIndex

    split = load_inat2021(make_inat2021(tmp_path / "inat", images_per_species=3), "val")
    pool = Pool(
        names=split.classes,
        image_labels=split.labels,
        levels=split.taxonomy_levels,
        codes=taxonomy_codes(split.taxonomy),
        vocabulary=LabelSet("inat2021", tuple(split.classes)),
        text_index=np.arange(len(split.classes)),
        identity=DatasetIdentity(name="inat2021", version="x"),
        digest="t",
    )
    index = TaxonomyIndex(split.taxonomy, split.taxonomy_levels)
    ranks = list(split.taxonomy_levels[:-1])
    tasks = sample_tasks(pool, np.arange(len(split.classes)), ranks, None, 1, seed=0)
    for row in range(tasks.count):
        rank = tasks.distances[tasks.distance[row]]
        negatives = tasks.index[row][tasks.labels[row] == 0]
        allowed = set(index.diverging_at(int(tasks.target[row]), rank).tolist())
        assert set(split.labels[negatives].tolist()) <= allowed
        assert (tasks.labels[row] == 1).sum() == 3  # positives=None: every image of the target
    rose = split.classes.index("Rosa canina")  # alone in its kingdom: skipped at every rank
    assert rose not in tasks.target.tolist()
    assert all(tasks.skipped[r] >= 1 for r in ranks)
    with pytest.raises(ConfigError, match=r"'species'.*kingdom, phylum"):
        check_distances(["species"], split.taxonomy_levels)


def test_vectorised_scores_equal_a_loop_over_tasks():
    pool = shapes_pool(np.arange(0, 240, 4), per_class=8)
    targets = np.arange(len(pool.names))
    tasks = sample_tasks(pool, targets, ["tone", "colour", "uniform"], 5, 2, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(len(pool.image_labels), 16, generator=g)
    text = torch.randn(240, 16, generator=g)
    confusers = np.stack(
        [np.r_[np.random.default_rng(t).choice(240, 4, replace=False), -1] for t in targets]
    )
    for score in ("margin", "target"):
        got = score_tasks(images, text, pool, targets, confusers, tasks, score=score, chunk=7)
        x = torch.nn.functional.normalize(images.double(), dim=-1)
        w = torch.nn.functional.normalize(text.double(), dim=-1)
        for row in range(tasks.count):
            t = tasks.target[row]
            keep = tasks.labels[row] >= 0
            idx, lab = tasks.index[row][keep], tasks.labels[row][keep]
            target_score = (x[idx] @ w[pool.text_index[t]]).numpy()
            conf = [c for c in confusers[t] if c >= 0]
            mean_conf = np.mean([(x[idx] @ w[c]).numpy() for c in conf], axis=0)
            margin = target_score - mean_conf
            ranking = margin if score == "margin" else target_score
            assert got.auroc[row] == pytest.approx(auroc(ranking, lab))
            assert got.fpr95[row] == pytest.approx(fpr_at_tpr(ranking, lab))
            assert got.f1[row] == pytest.approx(binary_macro_f1(margin > 0, lab))


# -- teachers -------------------------------------------------------------------------------

TINY_CLIP = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_file(tmp_path_factory):
    """A randomly initialised open_clip model of a tiny architecture, saved to a local file
    (loaded through the same open_clip path as the CLIP ViT-B/16 weights)."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip")
    (folder / "kdbench-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "kdbench-tiny-clip.json")
    model = open_clip.create_model("kdbench-tiny-clip")
    torch.save(model.state_dict(), folder / "tiny.pt")
    return folder / "tiny.pt"


def test_open_clip_loads_a_local_checkpoint_and_embeds_images_and_text(tiny_clip_file):
    import open_clip

    from kdbench.models.image_text import open_clip_model

    model = open_clip_model("kdbench-tiny-clip", pretrained=str(tiny_clip_file))
    reference = open_clip.create_model("kdbench-tiny-clip", pretrained=str(tiny_clip_file))
    assert model.embed_dim == 16 and model.input_size == (32, 32)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        emb = model.encode_image(images)
        normalised = (images.float() / 255 - model._mean) / model._std
        expected = torch.nn.functional.normalize(reference.encode_image(normalised), dim=-1)
    assert torch.allclose(emb, expected, atol=1e-5)
    text = model.encode_text(["a photo of a goldfish.", "a photo of a tench."])
    assert text.shape == (2, 16) and torch.allclose(text.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="joint-space embeddings only"):
        model.features(images, tokens=True)


def test_open_clip_weights_unavailable_offline_say_what_to_do(tmp_path, monkeypatch):
    from kdbench.models.image_text import open_clip_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("open_clip")  # imported before the clock starts
    started = time.perf_counter()
    with pytest.raises(WeightsError, match=r"--teacher open_clip:ViT-B-16-quickgelu:pretrained="):
        open_clip_model("ViT-B-16-quickgelu", pretrained="openai")
    assert time.perf_counter() - started < 1.0  # no download retries
    with pytest.raises(WeightsError, match="does not exist"):
        open_clip_model("ViT-B-16-quickgelu", pretrained=str(tmp_path / "clip.bin"))


def test_shapes_clip_scores_like_its_pretraining(world_weights):
    from kdbench.models.image_text import shapes_clip
    from kdbench.world.models import shapes_teacher, shapes_text_head

    model = shapes_clip()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    head, backbone = shapes_text_head(), shapes_teacher()
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images), head.encode_image(backbone(images)))
        assert model.features(images).pooled.shape == (4, model.embed_dim)
    text = model.encode_text(["a photo of a striped red star."])
    assert torch.allclose(text, head.encode_text(["a photo of a striped red star."]))


# -- end to end -----------------------------------------------------------------------------


def _run(tmp_path, methods, suite="embedded", overrides=None, registry=None, resume="never"):
    registry = registry or plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=["oneclass"],
        methods=methods,
        suite=suite,
        smoke=True,
        overrides=overrides,
    )
    return runner.run_units(units, registry=registry, out=tmp_path, progress=False, resume=resume)


def test_embedded_run_scores_teacher_student_and_a_recipe(world_weights, tmp_path):
    report = _run(tmp_path, ["teacher", "student", "kd"])
    assert not report.failed, [o.message for o in report.failed]
    folder = tmp_path / "embedded/oneclass"
    teacher = load_record(folder / "teacher-seed0.smoke.json")
    kd = load_record(folder / "kd-seed0.smoke.json")
    names = {m.name for m in teacher.metrics}
    for d in ("root", "tone", "colour", "shape"):
        assert {f"auroc_{d}", f"fpr95_{d}", f"f1_{d}"} <= names
    assert teacher.metric("auroc").headline and 0 <= teacher.metric("auroc").value <= 1
    per_task = teacher.statistics["per_task"]
    assert len(per_task["auroc"]) == teacher.metric("auroc").n
    assert teacher.metric("auroc").value == pytest.approx(np.mean(per_task["auroc"]))
    assert teacher.components["subject"].name == "shapes-clip"
    assert kd.components["subject"].name == "shapes-student"
    assert kd.components["confusers"].options["version"] == "shapes-attribute-neighbours@1"
    assert "loss:kd" in kd.components
    # every method of a seed is scored on the same tasks and confusers
    assert teacher.draws["tasks"] == kd.draws["tasks"]
    assert teacher.draws["confusers"] == kd.draws["confusers"]
    skipped = teacher.statistics["skipped_targets"]
    if skipped["shape"]:
        assert any("skipped" in note for note in teacher.notes)
    # a second run of the teacher gives identical numbers (cached embeddings and tasks)
    again = _run(tmp_path / "again", ["teacher"])
    second = load_record(again.outcomes[0].path)
    assert [m.value for m in second.metrics] == [m.value for m in teacher.metrics]


def test_bad_inputs_fail_the_unit_with_a_clear_message(world_weights, tmp_path):
    # a distance the Shapes taxonomy lacks is refused when the run is planned
    with pytest.raises(
        ConfigError, match=r'distances\[0\]: expected one of .*"uniform", got "species"'
    ):
        _run(tmp_path, ["teacher"], overrides={"oneclass.tasks.distances": ["species"]})
    bad = write_confuser_file(
        tmp_path / "bad.json",
        {"plain red star": ["plain red moon"]},
        name="b",
        version="1",
        dataset="shapes",
    )
    report = _run(
        tmp_path, ["teacher"], overrides={"oneclass.confusers.options": {"file": str(bad)}}
    )
    assert "plain red moon" in report.failed[0].message
    report = _run(tmp_path, ["teacher"], overrides={"oneclass.teacher.name": "shapes-teacher"})
    assert "not an image–text model" in report.failed[0].message


class LyingConfusers:
    """A plugin source that answers with names the dataset does not have."""

    @hookimpl
    def kdbench_register_confusers(self, register):
        class Source:
            name, version = "liar", "1"

            def __init__(self, labels, **options):
                pass

            def confusers(self, target, candidates, k, seed):
                return ["<script>unicorn</script>"]

        register(Source, name="liar")


def test_a_plugin_source_naming_unknown_labels_is_refused(world_weights, tmp_path):
    with plugins.temporary_plugin(LyingConfusers(), distribution="tests") as registry:
        report = _run(
            tmp_path,
            ["teacher"],
            overrides={"oneclass.confusers.source": "liar"},
            registry=registry,
        )
    assert "unicorn" in report.failed[0].message and "liar" in report.failed[0].message


def test_standard_suite_on_fixtures_with_a_local_clip(tiny_clip_file, tmp_path):
    inat = make_inat2021(tmp_path / "inat", images_per_species=2)
    base = make_imagefolder(tmp_path / "base", {"train": 3}, ("red fox", "raven", "rose"))
    overrides = {
        "oneclass.teacher": {
            "name": "open_clip:kdbench-tiny-clip",
            "options": {"pretrained": str(tiny_clip_file)},
        },
        "oneclass.student": {
            "name": "timm:vit_tiny_patch16_224",
            "options": {"img_size": 32, "pretrained": False},
        },
        "oneclass.data.root": str(inat),
        "oneclass.data.image_size": 32,
        "oneclass.data.resize": 32,
        "oneclass.student_stage.root": str(base),
        "oneclass.student_stage.image_size": 32,
        "oneclass.student_stage.resize": 32,
    }
    report = _run(tmp_path / "out", ["teacher", "student", "kd"], "standard", overrides)
    assert not report.failed, [o.message for o in report.failed]
    [path] = [o.path for o in report.outcomes if o.unit.method.name == "kd"]
    assert path.name == "kd@timm_vit_tiny_patch16_224-seed0.smoke.json"
    assert path.parent.parent.name.startswith("inat2021+imagefolder-")  # pool + student stage
    record = load_record(path)
    assert record.dataset.name == "inat2021" and record.dataset.manifest_sha256
    genus = record.metric("auroc_genus")
    assert genus.n and genus.n >= 1
    assert record.statistics["skipped_targets"]["kingdom"] >= 1  # the rose has no relatives
    assert record.components["teacher"].name == "open_clip:kdbench-tiny-clip"
    # ImageNet val: no taxonomy, so uniform negatives; the taxonomy source cannot work there
    imagenet = make_imagenet_val(tmp_path / "imagenet")
    overrides.update({"oneclass.data.dataset": "imagenet-val", "oneclass.data.root": str(imagenet)})
    report = _run(tmp_path / "out2", ["teacher"], "standard", overrides)
    assert "has none" in report.failed[0].message and "random" in report.failed[0].message
    overrides["oneclass.confusers.source"] = "random"
    report = _run(tmp_path / "out2", ["teacher"], "standard", overrides)
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(report.outcomes[0].path)
    assert record.metric("auroc_uniform").n == 3  # the fixture's three classes with images


def test_open_clip_missing_says_which_extra_to_install(monkeypatch):
    from kdbench.models.image_text import open_clip_model

    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match=r"pip install 'kdbench\[clip\]'"):
        open_clip_model("ViT-B-16", pretrained=None)
