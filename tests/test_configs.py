"""Typed protocol configs: checked when a run is planned, one-line errors naming the key,
hashes of the defaults and of every committed record unchanged, and ``kdbench config``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal, get_args

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.errors import ConfigError
from kdbench.protocols.base import SUITES, load_protocol
from kdbench.protocols.configs import device, fewshot, oneclass, sections, segmentation
from kdbench.protocols.configs.listing import config_entries, config_text
from kdbench.protocols.configs.model import ConfigModel, check_config, describe_type
from kdbench.results import config_hash
from tests.helpers import CoinProtocol, TestPlugin

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"

# The config hashes of every built-in protocol's defaults before configs were typed, in the
# order (embedded, embedded smoke, standard, standard smoke): a change here orphans committed
# records (migrate them and say so in the changelog).
DEFAULT_HASHES = {
    "device": (
        "025e971af2823b2c70c12ff6fe986e783c4383d7c42777631b2e52d8d03fac88",
        "1e24513901b7b10ea369f63d2af1d43676fe859d337e281908d3a284aca77e5e",
        "dc3108f5a07e14ed9bd3b0786df52078be78801e05d4f4180aba3be902a493dd",
        "19ed17da2f06304a052cdacf6ab92595902479b1f006aae7c8236409b1aea5c9",
    ),
    "distill": (
        "29f91161a02d4cc44a113aaa86175d4c07c2062361dc123561ccf5320981cb42",
        "8b7b88dc86c61410a2fa4d822913ca197d617edfd9aff1f6f592ec9d914f055f",
        "0a72fb31c05a364e46c0390abff41c126728ea615d17316a55cea33ac7f37983",
        "edfabc278f3adc20da4a1100c837d58542865f506f38275101f6f01b476144ee",
    ),
    "fewshot": (
        "2b8e294e2e6c148f23f8d63e87d8cc78871cbd537476c2f0a62eef4e194d4a79",
        "b67a848ced5fb50a798ba9d424984eeeafdc3cf42f2ae181f79714a15b79a1ca",
        "dd8ddc42c2d05df32efccd3d5682228d32ee843e6aa404567be280160a598e3e",
        "fc093d42df1b8cf6550c1a859e35e97c1b8d38faf682e28782fb827223c55902",
    ),
    "oneclass": (
        "848d173a2dbe4e36cf69c236bc4919e4e42628842df94742b6b3f1d041c713f0",
        "e4d36606b3fc732606cdb0bfc9fbb658f343831cef46ccd9bb3492cd1a58fc1e",
        "80ffaaa4ea515474ca12dd9c2660de26ee5ea50e7782cd1b9581fba0978790df",
        "c985aa131e56de9ebc13c9414bc4b9082e7a151fa27df500847d9325e933e32c",
    ),
    "segmentation": (
        "91b46041be3011d233ed89c84f7aa2f00462d176ca3e0a0aecc411904d0a8443",
        "e437a943325e83cd9ce293bb82993a4c14fad9accdb45611fb5aa5cd32564d2b",
        "9419bc90f124fd1ff093a9bd488952cfeac66f369d650ea4db2002fb47b123b4",
        "d67ab1a8bffa15522ac40f30c2c5c82311df48d7339e4dd304b1522880112092",
    ),
}
CASES = {
    (name, suite, smoke): digest
    for name, digests in DEFAULT_HASHES.items()
    for (suite, smoke), digest in zip(
        [("embedded", False), ("embedded", True), ("standard", False), ("standard", True)],
        digests,
        strict=True,
    )
}


def _builtin_protocols():
    registry = plugins.get_registry()
    return [
        load_protocol(c) for c in registry.components("protocols") if c.distribution == "kdbench"
    ]


def _plan(overrides, protocol=None, suite="embedded"):
    protocol = protocol or next(iter(overrides)).split(".")[0]
    return runner.plan(
        plugins.get_registry(),
        protocols=[protocol],
        methods=["teacher"],
        suite=suite,
        smoke=True,
        overrides=overrides,
    )


# -- hashes: the defaults and the committed records --------------------------------------


def test_every_builtin_protocol_has_a_model_per_suite():
    protocols = _builtin_protocols()
    assert {p.name for p in protocols} == set(DEFAULT_HASHES)
    for proto in protocols:
        assert set(proto.config_models) == set(proto.suites), proto.name


@pytest.mark.parametrize(("name", "suite", "smoke"), sorted(CASES))
def test_the_validated_defaults_are_the_default_dict(name, suite, smoke):
    proto = load_protocol(plugins.get_registry().get("protocols", name))
    default = proto.default_config(suite, smoke)
    checked = proto.config(suite, smoke)
    # same keys, same values and the same JSON types (an int stays an int, 1e-3 a float)
    assert json.dumps(checked, sort_keys=True) == json.dumps(default, sort_keys=True)
    assert config_hash(checked) == config_hash(default) == CASES[(name, suite, smoke)]


def test_every_committed_record_revalidates_to_its_own_config():
    registry = plugins.get_registry()
    paths = sorted(LEADERBOARDS.rglob("*.json"))
    assert len(paths) > 50
    for path in paths:
        record = json.loads(path.read_text())
        info, suite = record["protocol"], record["suite"]
        proto = load_protocol(registry.get("protocols", info["name"]))
        model = proto.config_models[suite]
        again = check_config(model, info["config"], key=info["name"], where=str(path))
        assert json.dumps(again, sort_keys=True) == json.dumps(info["config"], sort_keys=True)
        assert config_hash(again) == info["config_hash"], path


def test_a_float_field_keeps_an_int_default_only_where_typed_so():
    class Rates(ConfigModel):
        """Rates."""

        lr: float
        """A rate."""
        alpha: int | float
        """A scale."""

    dumped = check_config(Rates, {"lr": 1, "alpha": 16}, key="x", where="test")
    assert json.dumps(dumped) == '{"lr": 1.0, "alpha": 16}'  # why alpha is int | float


# -- errors: one line naming the key, the expected type, the allowed values ---------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fewshot.episodes": "abc"}, 'fewshot.episodes: expected an integer > 0, got "abc"'),
        ({"fewshot.episodes": 2.5}, "fewshot.episodes: expected an integer > 0, got 2.5"),
        ({"fewshot.ways": True}, "fewshot.ways: expected an integer >= 2, got true"),
        (
            {"fewshot.base.epochs": "two"},
            'fewshot.base.epochs: expected an integer >= 0, got "two"',
        ),
        ({"distill.lr.lp": "fast"}, 'distill.lr.lp: expected a number > 0, got "fast"'),
        ({"distill.lora.dropout": 1.5}, "distill.lora.dropout: expected a number >= 0 and < 1"),
        ({"distill.data.domain": "night"}, 'distill.data.domain: expected one of "base", "shift"'),
        (
            {"oneclass.score": "mean"},
            'oneclass.score: expected one of "margin", "target", got "mean"',
        ),
        ({"oneclass.zero_shot_top1": "yes"}, "oneclass.zero_shot_top1: expected true or false"),
        ({"fewshot.shots": [1, 3]}, "fewshot.shots[1]: expected one of 1, 5, got 3"),
        ({"fewshot.shots": []}, "fewshot.shots: expected a non-empty list of values from 1, 5"),
        (
            {"device.precisions": "fp32,fp64"},
            'device.precisions[1]: expected one of "fp32", "bf16"',
        ),
        ({"device.threads": 0}, "device.threads: expected an integer > 0 or null, got 0"),
        (
            {"fewshot.base.teacher": "big"},
            "fewshot.base.teacher: expected a section with keys name, options",
        ),
        (
            {"fewshot.base.teacher.options": [1]},
            "fewshot.base.teacher.options: expected a JSON object",
        ),
        (
            {"fewshot.estimate": {"draws": 4, "n": 1}},
            "fewshot.estimate.n: no such key; keys here: draws",
        ),
        ({"fewshot.estimate": {}}, "fewshot.estimate.draws: missing (expected an integer > 0)"),
        ({"segmentation.lora.alpha": "x"}, 'segmentation.lora.alpha: expected a number, got "x"'),
    ],
)
def test_a_bad_value_is_refused_when_planned(overrides, message):
    with pytest.raises(ConfigError) as caught:
        _plan(overrides)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith(f"protocol {next(iter(overrides)).split('.')[0]!r} (embedded): ")


def test_an_unknown_key_lists_the_keys_there():
    with pytest.raises(
        ConfigError, match=r"no config key 'fewshot\.estimate\.n'; keys here: draws"
    ):
        _plan({"fewshot.estimate.n": 3})


def test_an_unknown_key_inside_a_list_entry_names_that_entry_and_its_keys():
    adapters = [{"name": "lora", "lrr": 0.001}]
    with pytest.raises(ConfigError) as caught:
        _plan({"segmentation.adapters": adapters})
    assert "segmentation.adapters[0].lrr: no such key; keys here: name, options, lr" in str(
        caught.value
    )


def test_every_problem_is_named_on_one_line():
    with pytest.raises(ConfigError) as caught:
        _plan({"fewshot.episodes": "many", "fewshot.queries": -1})
    text = str(caught.value)
    assert "fewshot.queries: expected an integer > 0, got -1; fewshot.episodes: expected" in text
    assert "\n" not in text


def test_the_standard_suite_is_checked_through_its_own_model():
    with pytest.raises(ConfigError, match=r"protocol 'fewshot' \(standard\): fewshot.base.root"):
        _plan({"fewshot.base.root": 3}, suite="standard")
    [unit], _ = _plan({"fewshot.base.root": "/data/mini"}, suite="standard")
    assert unit.config["base"]["root"] == "/data/mini"


def test_precisions_are_normalised_so_one_choice_has_one_hash():
    [a], _ = _plan({"device.precisions": "int8, FP32"})
    [b], _ = _plan({"device.precisions": ["fp32", "int8", "int8"]})
    assert a.config["precisions"] == b.config["precisions"] == ["fp32", "int8"]
    assert config_hash(a.config) == config_hash(b.config)


def test_a_float_override_given_as_an_integer_is_recorded_as_a_float():
    [a], _ = _plan({"fewshot.base.lr": 1})
    [b], _ = _plan({"fewshot.base.lr": 1.0})
    assert a.config["base"]["lr"] == 1.0 and isinstance(a.config["base"]["lr"], float)
    assert config_hash(a.config) == config_hash(b.config)


def test_cli_refuses_a_bad_value_before_any_work(tmp_path):
    result = CliRunner().invoke(
        app,
        ["run", "-p", "fewshot", "-m", "supervised", "--smoke", "-o", str(tmp_path),
         "--set", "fewshot.episodes=abc"],
    )  # fmt: skip
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ") and "fewshot.episodes" in line and "integer" in line
    assert not any(tmp_path.iterdir())


class TypedCoin(CoinProtocol):
    """A plugin protocol that declares a config model."""

    class Config(ConfigModel):
        """The coin's config."""

        flips: int
        """Draws per unit."""
        fail_for: str
        """A method to fail."""

    config_models: ClassVar = {"embedded": Config}


def test_a_protocol_without_a_model_keeps_its_untyped_config():
    with plugins.temporary_plugin(TestPlugin(), distribution="tests", version="1") as registry:
        [unit], _ = runner.plan(
            registry, protocols=["coin"], methods=["heads"], overrides={"coin.flips": "abc"}
        )
    assert unit.config["flips"] == "abc"
    typed = TypedCoin()
    assert typed.config("embedded", True) == {"flips": 10, "fail_for": ""}
    with pytest.raises(ConfigError, match=r'coin.flips: expected an integer, got "abc"'):
        typed.config("embedded", True, {"flips": "abc"})


# -- the models themselves -----------------------------------------------------------------


def _models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                walk(info.annotation)

    for proto in _builtin_protocols():
        for model in proto.config_models.values():
            walk(model)
    return seen


def test_every_section_and_field_says_what_it_is():
    models = _models()
    assert len(models) > 25
    for model in models:
        assert model.__doc__ and model.model_config.get("extra") == "forbid", model
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no docstring"


def test_closed_sets_match_the_code_that_reads_them():
    from kdbench import oneclass as oneclass_protocol
    from kdbench.device.precision import PRECISIONS
    from kdbench.protocols import fewshot as fewshot_protocol
    from kdbench.protocols import segmentation as segmentation_protocol
    from kdbench.world.render import DOMAINS
    from kdbench.world.taxonomy import LEVELS
    from kdbench.world.world import SPLITS

    assert get_args(sections.Suite) == SUITES
    assert get_args(sections.ShapesSplit) == SPLITS
    assert get_args(sections.ShapesDomain) == DOMAINS
    assert get_args(fewshot.Shot) == fewshot_protocol.SHOTS
    assert get_args(segmentation.Shot) == segmentation_protocol.SHOTS
    assert get_args(oneclass.Score) == oneclass_protocol.SCORES
    assert get_args(device.Precision) == PRECISIONS
    shapes_distances = {oneclass_protocol.UNIFORM, oneclass_protocol.ROOT, *LEVELS[:-1]}
    assert set(get_args(oneclass.ShapesDistance)) == shapes_distances


def test_types_are_described_in_words():
    assert describe_type(int) == "an integer"
    assert describe_type(Literal["a", "b"] | None) == 'one of "a", "b" or null'
    assert describe_type(list[int | float]) == "a list of numbers"
    assert describe_type(sections.ModelSpec) == "a section with keys name, options"


# -- kdbench config ------------------------------------------------------------------------


def test_config_lists_every_key_with_its_value_type_and_meaning():
    result = CliRunner().invoke(app, ["config", "fewshot"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("fewshot.episodes = 10000")
    assert lines[at + 1].strip() == "Episodes per shot setting. [an integer > 0]"
    assert "[fewshot.base]  The base stage that trains the scored student" in result.stdout
    assert 'fewshot.novel.domain = "base"' in result.stdout
    smoke = CliRunner().invoke(app, ["config", "fewshot", "--smoke", "--suite", "standard"])
    assert "fewshot.episodes = 100\n" in smoke.stdout and "fewshot.base.root = null" in smoke.stdout


def test_config_json_is_the_config_a_run_records():
    result = CliRunner().invoke(app, ["config", "oneclass", "--json"])
    assert result.exit_code == 0, result.output
    assert config_hash(json.loads(result.stdout)) == CASES[("oneclass", "embedded", False)]


def test_config_refuses_an_unknown_protocol_or_suite():
    result = CliRunner().invoke(app, ["config", "fewshots"])
    assert result.exit_code == 2 and "unknown protocol 'fewshots'" in result.output
    result = CliRunner().invoke(app, ["config", "fewshot", "--suite", "large"])
    assert result.exit_code == 2 and "no 'large' suite" in result.output


@pytest.mark.parametrize("suite", SUITES)
def test_every_listed_key_can_be_set_as_listed(suite):
    for proto in _builtin_protocols():
        entries = config_entries(proto, suite)
        assert all(e.description for e in entries), proto.name
        for entry in entries:
            if not entry.section:
                key = entry.key.removeprefix(f"{proto.name}.")
                assert proto.config(suite, False, {key: entry.value}) == proto.config(suite, False)


def test_config_of_a_protocol_without_a_model_lists_its_keys():
    with plugins.temporary_plugin(TestPlugin(), distribution="tests", version="1") as registry:
        text = config_text(registry, "coin", smoke=True)
    assert "coin.flips = 10" in text and "declares no config model" in text
