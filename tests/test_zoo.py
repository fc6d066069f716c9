"""The embedded student zoo: every student gives the whole feature API at the Shapes input
size, trains, spans the FLOPs range, loads weights, and every registered distillation loss
runs with it against the Shapes teacher."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kdbench import plugins
from kdbench.device.flops import count_flops, count_params
from kdbench.distillation import Classifier, RecipeStep, build_losses, needs_of
from kdbench.errors import WeightsError
from kdbench.methods import LossTerm, Recipe
from kdbench.models.backbone import resample_backbone
from kdbench.models.segmenter import token_maps
from kdbench.models.zoo.thriftynet import ThriftyNet
from kdbench.student_stage import FrozenTeacher, loss_shapes

ZOO = (
    "shapes-vit-xs",
    "shapes-student",
    "shapes-vit-m",
    "shapes-mobilevit",
    "shapes-resnet12",
    "shapes-thriftynet",
)
VITS = ("shapes-vit-xs", "shapes-student", "shapes-vit-m")
CLASSES = 3
DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def build(name, **options):
    factory = plugins.get_registry().get("students", name).load()
    torch.manual_seed(0)
    return factory(**{"pretrained": False, **options})


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    backbone = plugins.get_registry().get("teachers", "shapes-teacher").load()(pretrained=False)
    return Classifier(backbone, CLASSES).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("name", ZOO)
def test_every_student_gives_the_feature_api_at_32_px(name, images):
    b = build(name).eval()
    f = b.features(images, tokens=True, layers=[0, -1])
    assert f.pooled.shape == (6, b.embed_dim)
    assert torch.allclose(f.pooled, b(images), atol=1e-5)
    assert f.tokens.ndim == 4 and f.tokens.shape[:2] == (6, b.embed_dim)
    assert min(f.tokens.shape[-2:]) >= 4  # a 2-D map segmentation can read
    dims = b.layer_dims
    assert len(dims) == b.num_layers >= 2 and dims[-1] == b.embed_dim
    assert [tuple(t.shape[:2]) for t in f.layers] == [(6, dims[0]), (6, dims[-1])]
    assert all(t.ndim == 4 for t in f.layers)
    info = b.describe()
    assert info["name"] == name.replace("shapes-student", "shapes-vit-student")
    assert info["grid_size"] == list(f.tokens.shape[-2:]) and info["input_size"] == [32, 32]
    assert b(images.float() / 255).shape == (6, b.embed_dim)  # [0, 1] floats too


@pytest.mark.parametrize("name", ZOO)
def test_every_student_trains_every_parameter(name, images):
    model = Classifier(build(name), CLASSES).train()
    loss = torch.nn.functional.cross_entropy(model(images), torch.arange(6) % CLASSES)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert torch.isfinite(loss) and not missing


def test_layer_dims_probe_leaves_batchnorm_statistics_and_modes_alone():
    b = build("shapes-resnet12").train()
    b.model.stages[0].body[1].eval()  # a module deliberately in another mode stays so
    before = {k: v.clone() for k, v in b.state_dict().items()}
    assert b.layer_dims == (16, 32, 64, 128)
    assert all(torch.equal(v, before[k]) for k, v in b.state_dict().items())
    assert b.training and not b.model.stages[0].body[1].training


def test_the_zoo_spans_ten_times_in_flops_at_32_px_as_its_docs_say():
    flops = {n: count_flops(build(n).eval(), torch.rand(1, 3, 32, 32)).flops for n in ZOO}
    assert max(flops.values()) >= 10 * min(flops.values())
    params = {n: count_params(build(n)) for n in ZOO}
    table = {
        row[0]: (int(row[-2].replace(",", "")), float(row[-1]))
        for row in (
            [cell.strip(" `") for cell in line.strip("|").split("|")]
            for line in DOCS.read_text().splitlines()
            if line.startswith("| `shapes-")
        )
    }
    assert {n: table[n] for n in ZOO} == {n: (params[n], round(flops[n] / 1e6, 1)) for n in ZOO}
    assert params["shapes-thriftynet"] < 20_000  # one shared convolution: a tiny budget
    assert params["shapes-mobilevit"] < params["shapes-resnet12"]
    assert flops["shapes-mobilevit"] < flops["shapes-resnet12"]


@pytest.mark.parametrize("name", ZOO)
def test_resampling_to_another_size_keeps_the_weights(name):
    small = build(name).eval()
    big = resample_backbone(small, plugins.get_registry(), "students", {"name": name}, 48)
    big = big.eval()
    assert big.input_size == (48, 48)
    x = torch.rand(2, 3, 48, 48)
    if name in VITS:  # position embeddings resampled to the 12x12 token grid
        assert big.grid_size == (12, 12) and big.patch_size == 4
        same = {k: v for k, v in small.state_dict().items() if "pos_embed" not in k}
        assert all(torch.equal(big.state_dict()[k], v) for k, v in same.items())
    else:  # a CNN takes any size with the same weights
        assert torch.allclose(big(x), small.model(big.normalise(x)), atol=1e-5)
    assert build(name, img_size=48).input_size == (48, 48)


@pytest.mark.parametrize("name", ZOO)
def test_weights_load_from_a_world_file_and_their_absence_is_explained(name, tmp_path, monkeypatch):
    made = build(name).eval()
    path = tmp_path / "weights.safetensors"
    save_file({f"backbone.{k}": v.contiguous() for k, v in made.model.state_dict().items()}, path)
    torch.manual_seed(5)
    loaded = plugins.get_registry().get("students", name).load()(weights=path).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded(x), made(x), atol=1e-6)
    if name != "shapes-student":  # the world's own student has a weights file of its role
        empty = tmp_path / "no-weights"
        empty.mkdir()
        monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(empty))
        with pytest.raises(WeightsError, match=name):
            plugins.get_registry().get("students", name).load()()


def test_the_shipped_zoo_weights_load_and_match_their_manifest(monkeypatch):
    """Every zoo student whose weights ship with the package loads them (sha256 checked)."""
    from kdbench.world.models import PACKAGED

    shipped = [
        n for n in json.loads((PACKAGED / "manifest.json").read_text())["models"] if n in ZOO
    ]
    assert shipped  # shapes-vit-xs ships, for distill with a second student
    monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(PACKAGED))
    for name in shipped:
        assert plugins.get_registry().get("students", name).load()().name == name


def _loss_variants():
    registry = plugins.get_registry()
    variants = [(n, {}) for n in registry.names("losses")]
    plugins.reset()
    return [*variants, ("fitnets", {"on": "tokens"}), ("cka", {"on": "tokens"})]


@pytest.mark.parametrize(
    "loss,options",
    _loss_variants(),
    ids=lambda v: "-".join(map(str, v.values())) or "default" if isinstance(v, dict) else v,
)
@pytest.mark.parametrize("name", ZOO)
def test_every_registered_loss_runs_a_step_with_every_student(name, loss, options, teacher):
    registry = plugins.get_registry()
    student = Classifier(build(name), CLASSES).train()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(6) % CLASSES
    source = FrozenTeacher(teacher, teacher.backbone.embed_dim, teacher.backbone.num_layers, "cpu")
    recipe = Recipe(losses=(LossTerm(loss, 1.0, options),))
    terms = build_losses(registry, recipe, loss_shapes(student.backbone, source, CLASSES))
    needs = needs_of(terms)
    outputs = source.outputs(images, needs) if needs.uses_teacher else []
    value = RecipeStep(student, terms, needs)(images, labels, *outputs)
    value.backward()
    assert torch.isfinite(value)
    grads = [p.grad for p in student.backbone.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)


def test_multilayer_token_maps_of_different_grids_are_concatenated_at_the_finest():
    b = build("shapes-resnet12").eval()
    maps = token_maps(b, torch.rand(2, 3, 32, 32), layers=(-4, -3, -2, -1))
    assert maps.shape == (2, 16 + 32 + 64 + 128, 16, 16)
    vit = build("shapes-vit-xs").eval()
    x = torch.rand(2, 3, 32, 32)
    f = vit.features(x, layers=(-2, -1))
    assert torch.equal(token_maps(vit, x, layers=(-2, -1)), torch.cat(f.layers, dim=1))


def test_thriftynet_shares_one_convolution_and_pools_at_fixed_steps():
    net = ThriftyNet(filters=8, steps=5, history=2, pool_after=(2, 4)).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(c.kernel_size) for c in convs] == [(1, 1), (3, 3)]  # projection + shared
    _, states = net.forward_intermediates(torch.rand(1, 3, 16, 16))
    assert [s.shape[-1] for s in states] == [16, 8, 8, 4, 4]
    with torch.no_grad():  # alpha weighs the activation and the history: zero -> zero state
        for step in net.blocks:
            step.alpha.zero_()
    assert net(torch.rand(1, 3, 16, 16)).abs().sum() == 0
    with pytest.raises(ValueError, match="pool_after"):
        ThriftyNet(steps=3, pool_after=(4,))
