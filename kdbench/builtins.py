"""kdbench's own components, registered through the same hooks as any plugin."""

from __future__ import annotations

from kdbench.hookspecs import hookimpl
from kdbench.registry import Register


@hookimpl
def kdbench_register_protocols(register: Register) -> None:
    pass
