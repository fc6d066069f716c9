"""The subject resolver and the one gate: Protocol.supports, never a method's name."""

from kdbench import plugins, runner
from kdbench.hookspecs import hookimpl
from kdbench.methods import CE, LossTerm, Method, Recipe
from kdbench.models.adapters import LinearProbe
from kdbench.protocols.base import Protocol
from kdbench.record_files import load_record
from kdbench.subjects import Subject, subject_of
from kdbench.testing import TINY_DISTILL


def test_builtin_methods_resolve_from_what_they_are():
    registry = plugins.get_registry()
    expected = {
        "supervised": Subject.RECIPE,
        "kd": Subject.RECIPE,
        "fitnets": Subject.RECIPE,
        "scratch": Subject.SCRATCH,
        "teacher": Subject.TEACHER,
        "student": Subject.STUDENT,
    }
    for name, subject in expected.items():
        assert subject_of(registry.get("methods", name).load()) == subject
    assert subject_of(Method("own", fit=lambda ctx: ctx)) == Subject.FIT
    # renaming a method does not change what is scored
    renamed = Method("anything", recipe=Recipe(losses=(CE,), teacher_mode=None))
    assert subject_of(renamed) == Subject.RECIPE


class Echo(Protocol):
    """A protocol registered after the fact: it declares nothing about methods."""

    name = "echo"
    version = 1

    def default_config(self, suite, smoke):
        return {}

    def run(self, context):  # pragma: no cover - only planned here
        return None


class Late:
    @hookimpl
    def kdbench_register_protocols(self, register):
        register(Echo(), name="echo")

    @hookimpl
    def kdbench_register_methods(self, register):
        register(
            Method(
                "picky",
                "refuses protocols whose teacher space is joint",
                recipe=Recipe(losses=(CE,), teacher_mode=None),
                supports=lambda p: "no joint spaces" if p.teacher_space == "joint" else None,
            )
        )


def test_a_new_protocol_gets_every_method_it_can_score_plugins_included():
    with plugins.temporary_plugin(Late(), distribution="tests") as registry:
        methods = registry.names("methods")
        units, skipped = runner.plan(registry, protocols=["echo"], methods=methods, smoke=True)
    assert {u.method.name for u in units} == set(methods)
    assert not skipped


def test_protocols_refuse_subjects_with_reasons_and_methods_may_refuse_protocols():
    with plugins.temporary_plugin(Late(), distribution="tests") as registry:
        methods = ["kd", "teacher", "scratch", "picky"]
        _, skipped = runner.plan(registry, methods=methods, smoke=True)
    reasons = {(p, m): why for p, m, why in skipped}
    assert "architectures" in reasons[("device", "kd")]
    assert "reference row" in reasons[("distill", "teacher")]
    assert "repeat the label-only recipe" in reasons[("fewshot", "scratch")]
    assert reasons[("oneclass", "picky")] == "no joint spaces"
    assert ("fewshot", "picky") not in reasons and ("distill", "kd") not in reasons


class ProbeTwice(LinearProbe):
    """A plugin adapter: a linear probe under another name."""

    name = "probe-twice"


class AdapterPlugin:
    @hookimpl
    def kdbench_register_adapters(self, register):
        register(ProbeTwice, name="probe-twice")

    @hookimpl
    def kdbench_register_methods(self, register):
        recipe = Recipe(losses=(CE, LossTerm("kd")), teacher_mode="probe-twice")
        register(Method("kd-probe-twice", "KD from a plugin-probed teacher", recipe=recipe))
        fine = Recipe(losses=(CE, LossTerm("kd")), teacher_mode="finetune")
        register(Method("kd-finetune", "KD from a fine-tuned teacher", recipe=fine))


def test_a_plugin_adapter_runs_in_distill_and_segmentation(world_weights, tmp_path):
    """One adapter registered in-process, no edit to the core: distill uses it as a teacher
    mode, segmentation scores a head with it; fewshot keeps the teacher frozen, so it takes
    the frozen plugin adapter's recipe and refuses the fine-tuning one."""
    overrides = {"distill." + k.split(".", 1)[1]: v for k, v in TINY_DISTILL.items()}
    overrides["segmentation.adapters"] = ["linear", "probe-twice"]
    with plugins.temporary_plugin(AdapterPlugin(), distribution="tests") as registry:
        units, skipped = runner.plan(
            registry,
            protocols=["distill", "fewshot", "segmentation"],
            methods=["kd-probe-twice", "kd-finetune"],
            smoke=True,
            overrides=overrides,
        )
        planned = {(u.protocol.name, u.method.name) for u in units}
        assert planned == {
            ("distill", "kd-probe-twice"),
            ("distill", "kd-finetune"),
            ("fewshot", "kd-probe-twice"),
            ("segmentation", "kd-probe-twice"),
        }
        assert sorted(p for p, m, _ in skipped if m == "kd-finetune") == ["fewshot", "segmentation"]
        chosen = [
            u for u in units if u.method.name == "kd-probe-twice" and u.protocol.name != "fewshot"
        ]
        report = runner.run_units(chosen, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    paths = {o.unit.protocol.name: o.path for o in report.outcomes}
    assert paths["distill"].parent.name.startswith("shapes-teacher-")  # random weights
    record = load_record(paths["distill"])
    adapter = record.components["teacher_adapter"]
    assert (adapter.name, adapter.distribution) == ("probe-twice", "tests")
    assert record.metric("teacher_top1").value is not None
    seg = load_record(paths["segmentation"])
    assert seg.metric("miou_probe-twice").value is not None
