"""``device`` (version 1): what the teacher and the student cost on this machine.

Reference rows only: ``teacher`` measures the configured teacher, ``student`` the student.
A distillation method does not change the architecture, so its cost is the ``student``
row's; other methods are not run here. Weights do not change the cost of these networks,
so when the configured weights are not available the backbone is measured with random
weights and the record says so.

Figures (see :mod:`kdbench.device.figures`): batch-1 latency p50/p90/p99 and IQR/median,
throughput at batch N, parameters, FLOPs and GMACs, peak tensor memory, energy per image
(and dynamic energy above idle power) where a hardware counter can be read, for fp32 (TF32
off; the headline) and bf16/fp16/int8 where the device supports them. Every record carries
the device fingerprint the figures are tied to.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch

from kdbench.device.defaults import default_device_config
from kdbench.device.figures import DEVICE_METRICS
from kdbench.device.measure import measure_on_pool
from kdbench.device.precision import parse_precisions
from kdbench.device.quantised import QUANT_METRICS, time_quantised
from kdbench.device.sensors import select_sensor
from kdbench.device.subject import load_backbone
from kdbench.protocols.base import ConfigError, Protocol, UnitContext, UnitResult
from kdbench.protocols.configs import device as device_config
from kdbench.results import ComponentRef
from kdbench.subjects import Subject, pretrained_role, subject_of

NOT_A_REFERENCE = (
    "device measures architectures, not training recipes (a distillation method does not "
    "change the student's cost); see the `student` row"
)


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


class Device(Protocol):
    name = "device"
    student_key = "student"
    teacher_key = "teacher"
    version = 1
    exclusive_machine = True
    config_models = device_config.MODELS
    description = "Latency, throughput, FLOPs, memory and energy of the teacher and student."
    explanation = """\
What a model costs on the machine that ran the protocol: latency of one image (median,
90th and 99th percentile), throughput in batches, parameters, FLOPs, peak memory and, where
a real energy counter can be read, energy per image; at fp32 and, where the device
supports them, at bf16, fp16 and int8.

Distillation changes a student's weights, not its architecture, so only the reference rows
run here: `teacher` and `student` (every student a run uses). A method's cost is that of
its student; the other protocols' "against cost" pages join each row to these figures.

Latency and energy depend on the hardware, so there is one table per device fingerprint,
never mixed. Parameters and FLOPs are exact counts, the same on every device and every
seed. A blank energy cell means no energy counter could be read there (the reason is
given); kdbench never estimates it.
"""
    metrics = DEVICE_METRICS + QUANT_METRICS
    quantisable = True
    unsupported: ClassVar[dict[Subject, str]] = {
        s: NOT_A_REFERENCE for s in (Subject.RECIPE, Subject.SCRATCH, Subject.FIT)
    }

    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        return default_device_config(suite, smoke)

    def machine(self, config: dict[str, Any], device: str) -> str | None:
        """The fingerprint id of ``device`` with the config's threads: records of two
        machines (or two software stacks) live in two folders."""
        from kdbench.device.fingerprint import DeviceFingerprint, default_threads

        return DeviceFingerprint(device, int(config.get("threads") or default_threads())).id

    def _check(self, config: dict[str, Any], smoke: bool) -> None:
        config["precisions"] = parse_precisions(config["precisions"])
        if "fp32" not in config["precisions"]:
            raise ConfigError("device: precisions must include fp32 (the headline figures)")
        if config["pool_images"] < 64:
            raise ConfigError("device: pool_images must be at least 64 distinct images")
        min_queries = config["latency"]["min_queries"]
        floor = 64 if smoke else 1000
        if min_queries < floor:
            raise ConfigError(
                f"device: latency.min_queries must be at least {floor} "
                f"({'smoke' if smoke else 'a ranked run'}), not {min_queries}"
            )
        if not smoke and config["latency"]["min_seconds"] < 10:
            raise ConfigError("device: latency.min_seconds must be at least 10 for a ranked run")

    @staticmethod
    def _time_quantised(
        backbone: Any, config: dict[str, Any], pool: torch.Tensor, threads: int, context: Any
    ) -> Any:
        """The ``--precision`` model timed as :func:`~kdbench.device.quantised.time_quantised`
        does, on the threads the other figures used (TF32 is a GPU matter: the int8 path
        runs on CPUs, whose fp32 matmuls are full precision by default)."""
        from kdbench.device.threads import pinned_threads
        from kdbench.device.timing import Tier

        latency = config["latency"]
        tier = Tier(
            warmup=int(latency["warmup"]),
            min_queries=int(latency["min_queries"]),
            min_seconds=float(latency["min_seconds"]),
        )
        with pinned_threads(threads):
            return time_quantised(
                backbone, config["precision"], pool, tier, device=context.device,
                seed=context.seed,
            )  # fmt: skip

    def run(self, context: UnitContext) -> UnitResult:
        config, registry, device = dict(context.config), context.registry, context.device
        self._check(config, context.smoke)
        method = context.method.load()
        role = pretrained_role(subject_of(method))
        backbone, options, notes = load_backbone(
            registry, f"{role}s", config[role], config["img_size"], config["random_if_missing"]
        )
        components = {
            "teacher": ComponentRef(
                **registry.get("teachers", config["teacher"]["name"]).ref(),
                options=config["teacher"]["options"],
            ),
            "student": ComponentRef(
                **registry.get("students", config["student"]["name"]).ref(),
                options=config["student"]["options"],
            ),
        }
        components["subject"] = ComponentRef(
            **registry.get(f"{role}s", config[role]["name"]).ref(), options=options
        )
        choice = select_sensor(registry, config["sensor"], device)
        if choice.component is not None and choice.sensor is not None:
            components["sensor"] = ComponentRef(**choice.component.ref())
        elif choice.reason:
            notes.append(f"energy: {choice.reason}")
        pool, report = measure_on_pool(
            backbone, config, seed=context.seed, device=device, choice=choice
        )
        from kdbench.world import ShapesWorld

        metrics = report.metrics()
        statistics = report.statistics()
        if config.get("precision"):
            timing = self._time_quantised(backbone, config, pool, report.threads, context)
            metrics += timing.metrics()
            statistics["quantised"] = timing.statistics()
            if timing.reason is not None:
                notes.append(f"{timing.precision}: {timing.reason}")
            else:
                notes.append(
                    f"{timing.precision}: statically quantised (torchao PT2E, x86 inductor "
                    f"quantiser) and calibrated on {timing.describe['calibration_images']} "
                    "pool images; timed on int8 kernels "
                    f"({', '.join(timing.kernels)}) against fp32 through the same compiler"
                )
        statistics["backbone"] = {"name": backbone.name, "input_size": list(backbone.input_size)}
        return UnitResult(
            metrics=metrics,
            dataset=ShapesWorld().identity(pool=len(pool)),
            components=components,
            draws={"pool": _digest(pool)},
            statistics=statistics,
            notes=notes + report.notes,
            eval_seconds=report.seconds,
            device_fingerprint=report.fingerprint,
        )
