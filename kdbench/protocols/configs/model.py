"""The base of every protocol config model, and the check that turns pydantic's errors into
one line naming the dotted key, the expected type and, for a closed set, the allowed values.
"""

from __future__ import annotations

import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from kdbench.errors import ConfigError


class ConfigModel(BaseModel):
    """A protocol config section: unknown keys are refused, values keep their JSON type (an
    integer is not silently a float, a string not a number) and every field says what it
    means in its docstring."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


def check_config(
    model: type[BaseModel], config: dict[str, Any], *, key: str, where: str
) -> dict[str, Any]:
    """``config`` validated through ``model`` and dumped back to a dict.

    ``key`` prefixes the dotted keys in messages (the protocol's name, as in ``--set``);
    ``where`` says whose config it is. Raises :class:`ConfigError` with one line.
    """
    try:
        dumped = model.model_validate(config).model_dump()
        for name, info in model.model_fields.items():  # keys added after records existed
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("omit_if_unset") and name not in config:
                dumped.pop(name, None)
        if dumped.get("precision", 0) is None:  # fp32 configs (and their hashes) name none
            del dumped["precision"]
        return _without_unset_loader_options(dumped, config)
    except ValidationError as error:
        problems = list(dict.fromkeys(_problem(model, e, key) for e in error.errors()))
        raise ConfigError(f"{where}: {'; '.join(problems)}") from None


def _without_unset_loader_options(dumped: Any, given: Any) -> Any:
    """``dumped`` without the empty ``options`` of dataset sections whose ``given`` config
    did not name them, so configs (and their hashes) from before loader options stay as
    they were."""
    if not isinstance(dumped, dict) or not isinstance(given, dict):
        return dumped
    out = {k: _without_unset_loader_options(v, given.get(k)) for k, v in dumped.items()}
    if "dataset" in out and out.get("options") == {} and "options" not in given:
        del out["options"]
    return out


def _problem(model: type[BaseModel], error: Any, prefix: str) -> str:
    """One error of pydantic's as ``KEY: expected TYPE, got VALUE``."""
    key, node, info, parent = _locate(model, error["loc"], prefix)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = ", ".join(parent.model_fields) if parent is not None else ""
        return f"{key}: no such key; keys here: {known}"
    expected = describe_type(node, info)
    if kind == "missing":
        return f"{key}: missing (expected {expected})"
    if kind in ("value_error", "assertion_error"):
        return f"{key}: {error['msg'].split(', ', 1)[-1]}"
    return f"{key}: expected {expected}, got {_shown(error.get('input'))}"


def _locate(
    model: type[BaseModel], loc: tuple[Any, ...], prefix: str
) -> tuple[str, Any, FieldInfo | None, type[BaseModel] | None]:
    """The dotted key of an error location, the annotation found there, its field and the
    model that holds it. Union branch tags in ``loc`` are skipped."""
    key, node, info, parent = prefix, model, None, None
    for item in loc:
        inner = _strip_optional(node)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            parent = inner
            key = f"{key}.{item}" if key else str(item)
            info = inner.model_fields.get(str(item))
            if info is None:  # an unknown key: nothing below it to describe
                return key, None, None, parent
            node = info.annotation
        elif isinstance(item, int) and get_origin(inner) is list:
            key, node, info = f"{key}[{item}]", get_args(inner)[0], None
        elif get_origin(inner) in (Union, types.UnionType):
            # a union branch tag: follow it into a section, or (``int``, ``float``) stay put
            branch = [m for m in get_args(inner) if getattr(m, "__name__", None) == item]
            if branch and isinstance(branch[0], type) and issubclass(branch[0], BaseModel):
                node = branch[0]
    return key, node, info, parent


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) is Annotated:
        return _strip_optional(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    return annotation


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def describe_type(annotation: Any, info: FieldInfo | None = None) -> str:
    """A config value's type in words: ``an integer > 0``, ``one of "margin", "target"``,
    ``a list of integers or null``."""
    metadata = list(info.metadata) if info is not None else []
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata += extra
    return _with_bounds(_describe(annotation), metadata)


def _describe(annotation: Any, plural: bool = False) -> str:
    if annotation is None or annotation is type(None):
        return "null"
    if annotation is Any:
        return "any values" if plural else "any value"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "sections" if plural else f"a section with keys {', '.join(annotation.model_fields)}"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _with_bounds(_describe(args[0], plural), args[1:])
    if origin is Literal:
        values = ", ".join(json.dumps(a) for a in args)
        return f"values from {values}" if plural else f"one of {values}"
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        text = (
            ("numbers" if plural else "a number")
            if set(members) == {int, float}
            else " or ".join(_describe(m, plural) for m in members)
        )
        return f"{text} or null" if len(members) < len(args) else text
    if origin is list:
        return "lists" if plural else f"a list of {_describe(args[0], plural=True)}"
    if origin is dict:
        return "JSON objects" if plural else "a JSON object"
    table = _PLURALS if plural else _NAMES
    return table.get(annotation, getattr(annotation, "__name__", str(annotation)))


_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)


def _with_bounds(text: str, metadata: Any) -> str:
    """``text`` with the numeric bounds and minimum lengths in ``metadata`` added."""
    bounds = []
    for item in metadata:
        if isinstance(item, annotated_types.MinLen) and item.min_length == 1:
            text = text.replace("a list", "a non-empty list", 1)
        bounds += [
            f"{sign} {getattr(item, attr)}" for cls, attr, sign in _BOUNDS if isinstance(item, cls)
        ]
    return " ".join([text, " and ".join(bounds)]) if bounds else text
