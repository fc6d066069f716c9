"""A planned unit as plain data, so a job in another process (or on another machine) runs
exactly the unit the driver planned: the same config, not one re-planned there."""

from __future__ import annotations

from typing import Any

from kdbench.planning import Unit
from kdbench.registry import Registry


def unit_spec(unit: Unit) -> dict[str, Any]:
    """The JSON-able description of ``unit``."""
    return {
        "protocol": unit.protocol.name,
        "method": unit.method.name,
        "seed": unit.seed,
        "suite": unit.suite,
        "smoke": unit.smoke,
        "config": unit.config,
        "student": unit.student,
    }


def unit_from_spec(spec: dict[str, Any], registry: Registry) -> Unit:
    """The unit ``spec`` describes, its components looked up in ``registry``."""
    return Unit(
        protocol=registry.get("protocols", spec["protocol"]),
        method=registry.get("methods", spec["method"]),
        seed=int(spec["seed"]),
        suite=spec["suite"],
        smoke=bool(spec["smoke"]),
        config=spec["config"],
        student=spec.get("student"),
    )
