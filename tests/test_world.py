import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.world import ShapesWorld
from kdbench.world.taxonomy import COLOURS, PATTERNS, SHAPES, Taxonomy


@pytest.fixture(scope="module")
def world():
    return ShapesWorld()


def test_classes_are_named_combinations_with_a_four_level_taxonomy():
    tax = Taxonomy()
    assert len(tax) == len(COLOURS) * len(SHAPES) * len(PATTERNS)
    names = [c.name for c in tax.classes]
    assert len(set(names)) == len(names) and "striped red star" in names
    assert tax.levels == ("tone", "colour", "shape", "pattern")
    a, b = tax.by_name("striped red star"), tax.by_name("dotted red star")
    assert tax.lca_depth(a.index, b.index) == 3  # same colour and shape
    assert tax.lca_depth(a.index, tax.by_name("striped red circle").index) == 2
    assert tax.lca_depth(a.index, tax.by_name("striped orange star").index) == 1
    assert tax.lca_depth(a.index, tax.by_name("striped blue star").index) == 0
    assert tax.lca_depth(a.index, a.index) == 4
    m = tax.lca_depth_matrix
    assert (m == m.T).all()


def test_splits_are_disjoint_and_base_has_every_word(world):
    splits = {s: set(world.classes(s).tolist()) for s in ("base", "novel", "downstream")}
    assert not splits["base"] & splits["novel"]
    assert not splits["base"] & splits["downstream"]
    assert not splits["novel"] & splits["downstream"]
    codes = world.taxonomy.attribute_codes()[sorted(splits["base"])]
    assert [len(set(codes[:, i])) for i in range(3)] == [len(COLOURS), len(SHAPES), len(PATTERNS)]
    with pytest.raises(ValueError, match="splits are base, novel, downstream"):
        world.classes("train")


def test_generation_is_deterministic_and_seeded(world):
    a = world.images("novel", 3, seed=7, stream="t")
    b = world.images("novel", 3, seed=7, stream="t")
    c = world.images("novel", 3, seed=8, stream="t")
    assert a.images.dtype == torch.uint8 and a.images.shape == (180, 3, 32, 32)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.names == world.names(world.classes("novel"))
    assert sorted(torch.bincount(a.labels).tolist()) == [3] * 60


def test_domains_differ(world):
    ids = world.classes("downstream")[:20]
    base = world.render(ids, 0, "d", "base").astype(np.float32)
    shift = world.render(ids, 0, "d", "shift").astype(np.float32)

    # the shifted domain has textured backgrounds: much more local variation
    def roughness(x):
        return np.abs(np.diff(x, axis=-1)).mean()

    assert roughness(shift) > 1.5 * roughness(base)
    with pytest.raises(ValueError, match="unknown domain"):
        world.render(ids, 0, "d", "night")


def test_scenes_have_masks_with_background_shapes_and_ignore(world):
    images, masks = world.scenes(16, seed=0, stream="t")
    assert images.shape == (16, 3, 64, 64) and masks.shape == (16, 64, 64)
    values = set(torch.unique(masks).tolist())
    assert 0 in values and 255 in values and values <= {0, 1, 2, 3, 4, 5, 6, 255}
    assert len(values - {0, 255}) >= 3
    again = world.scenes(16, seed=0, stream="t")
    assert torch.equal(images, again[0]) and torch.equal(masks, again[1])


def test_preview_and_info_commands(tmp_path, world_weights):
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, ["world", "preview", "--out", str(out)])
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 600 and im.size[1] > 300
    info = CliRunner().invoke(app, ["world", "info"])
    assert "Shapes world v1: 240 classes" in info.stdout
    assert str(world_weights) in info.stdout


def test_rendered_images_are_kept_for_the_next_unit_as_copies(monkeypatch):
    """A run renders a unit's images once per process: the same call gives the same bytes
    without rendering again, each caller gets its own copy, and the oldest go first."""
    from kdbench.world import world as module

    monkeypatch.setattr(module, "_rendered", module.OrderedDict())
    calls = []
    real = module.ShapesWorld._render

    def counted(self, *args):
        calls.append(args[1:])
        return real(self, *args)

    monkeypatch.setattr(module.ShapesWorld, "_render", counted)
    w = module.ShapesWorld()
    ids = np.array([0, 5, 7, 5])
    first = w.render(ids, 3, "s")
    first[:] = 0  # a caller changing its copy changes nothing else
    again = w.render(ids, 3, "s")
    assert len(calls) == 1
    np.testing.assert_array_equal(again, real(w, ids, 3, "s", "base"))
    assert again.any()
    w.render(ids, 4, "s")  # another seed is another entry
    assert len(calls) == 2
    one = again.nbytes
    monkeypatch.setattr(module, "RENDERED_BYTES", 4 * one)  # room for four such entries
    for seed in range(5, 9):
        w.render(ids, seed, "s")
    assert len(module._rendered) == 4 and len(calls) == 6
    w.render(ids, 3, "s")  # the oldest entry was dropped: rendered again
    assert len(calls) == 7
    scenes = w.scenes(3, 0, "t"), w.scenes(3, 0, "t")
    assert all(torch.equal(a, b) for a, b in zip(*scenes))
    assert scenes[0][0].data_ptr() != scenes[1][0].data_ptr()
