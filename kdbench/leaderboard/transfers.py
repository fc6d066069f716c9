"""Which transfer set a record's row distilled on, so the site keeps (method, transfer set)
pairs apart and comparisons between methods can hold the transfer set fixed.

A record names its transfer set as the component ``transfer_set``; a run that chose one for
every method also says so in its config (``transfer``, with the set's options), which then
names the row. Records from before transfer sets were components name none: for a protocol
that has transfer sets (``Protocol.transfer_key``), the one the registered method's recipe
names is implied (``task`` for a recipe that used the unlabelled images, ``none`` for one
that did not).
"""

from __future__ import annotations

from kdbench.results import Record


def row_transfer(record: Record) -> str | None:
    """The transfer set of ``record``'s row (``retrieved``, ``retrieved:by=student``), or
    None when the protocol has none or it cannot be told."""
    chosen = record.protocol.config.get("transfer")
    if isinstance(chosen, str) and chosen:
        return chosen
    ref = record.components.get("transfer_set")
    if ref is not None:
        return ref.name
    return implied_transfer(record.protocol.name, record.method.name)


def implied_transfer(protocol: str, method: str) -> str | None:
    """The transfer set a registered method's recipe names on ``protocol``, when the
    protocol has transfer sets; None otherwise (a ``fit`` method, an unknown name)."""
    from kdbench.plugins import get_registry
    from kdbench.transfer import transfer_name

    registry = get_registry()
    if protocol not in registry.names("protocols") or method not in registry.names("methods"):
        return None  # not installed here: nothing can be implied (and no near names sought)
    try:
        proto = registry.get("protocols", protocol).load()
        obj = registry.get("methods", method).load()
    except Exception:  # installed but broken: nothing can be implied
        return None
    if getattr(proto, "transfer_key", None) is None:
        return None
    recipe = getattr(obj, "recipe", None)
    return transfer_name(recipe.transfer_set) if recipe is not None else None


def recorded_transfer(record: Record) -> bool:
    """Whether ``record`` itself names its transfer set (a component or the config)."""
    return "transfer_set" in record.components or bool(record.protocol.config.get("transfer"))
