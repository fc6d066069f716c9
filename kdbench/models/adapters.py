"""Adapters: how a backbone is fitted to a task.

``linear`` and ``multilayer`` freeze the backbone (its outputs can be cached), ``finetune``
trains everything, ``lora`` adds low-rank updates to chosen linear layers, ``svf`` trains only
the singular values of the backbone's linear layers. Each adapter changes the backbone in
place and says which intermediate layers a head should read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import ConfigError, UnknownComponentError
from kdbench.methods import TEACHER_MODES
from kdbench.models.backbone import Backbone

if TYPE_CHECKING:
    from kdbench.registry import Component, Registry


class LoRALinear(nn.Module):
    """``base(x) + dropout(x) A^T B^T · alpha / r`` with ``base`` frozen; ``B`` starts at zero
    so the adapted layer starts equal to the original."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"lora: r must be positive, got {r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)
        return self.base(x) + update * self.scaling


class SVFLinear(nn.Module):
    """A linear layer re-parametrised as ``U diag(s) V^T``; only ``s`` trains."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        u, s, vh = torch.linalg.svd(base.weight.detach().float(), full_matrices=False)
        self.register_buffer("u", u)
        self.register_buffer("vh", vh)
        self.singular = nn.Parameter(s)
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, (self.u * self.singular) @ self.vh, self.bias)


def replace_linear(
    module: nn.Module,
    select: Callable[[str], bool],
    make: Callable[[nn.Linear], nn.Module],
) -> list[str]:
    """Swap every ``nn.Linear`` whose qualified name passes ``select``; returns the names."""
    replaced = []
    for name, child in list(module.named_modules()):
        for child_name, leaf in list(child.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(leaf, nn.Linear) and select(full):
                setattr(child, child_name, make(leaf))
                replaced.append(full)
    return replaced


class Adapter:
    """Base class. ``frozen`` adapters leave the backbone's outputs fixed (cacheable)."""

    name: ClassVar[str]
    frozen: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"adapter {self.name!r} takes no options, got {sorted(options)}")

    def options(self) -> dict[str, Any]:
        return {}

    @property
    def layers(self) -> tuple[int, ...]:
        """Intermediate layers a head reads (empty: the final features)."""
        return ()

    def apply(self, backbone: Backbone) -> Backbone:
        """Set which parameters train (and inject modules); returns ``backbone``."""
        raise NotImplementedError


class LinearProbe(Adapter):
    """Frozen backbone; only the head trains (``lp``)."""

    name = "linear"
    frozen = True

    def apply(self, backbone: Backbone) -> Backbone:
        backbone.requires_grad_(False)
        return backbone


class MultiLayer(LinearProbe):
    """Frozen backbone; the head reads the last ``n`` layers concatenated."""

    name = "multilayer"

    def __init__(self, n: int = 4) -> None:
        self.n = n

    def options(self) -> dict[str, Any]:
        return {"n": self.n}

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(range(-self.n, 0))


class FineTune(Adapter):
    """Every backbone parameter trains (``ft``)."""

    name = "finetune"

    def apply(self, backbone: Backbone) -> Backbone:
        backbone.requires_grad_(True)
        return backbone


class LoRA(Adapter):
    """Low-rank updates on linear layers whose names end with one of ``targets``
    (default the attention ``qkv`` projections); the rest is frozen."""

    name = "lora"

    def __init__(
        self,
        r: int = 16,
        alpha: float = 16.0,
        dropout: float = 0.1,
        targets: Sequence[str] = ("qkv",),
    ) -> None:
        self.r, self.alpha, self.dropout, self.targets = r, alpha, dropout, tuple(targets)

    def options(self) -> dict[str, Any]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
        }

    def apply(self, backbone: Backbone) -> Backbone:
        backbone.requires_grad_(False)
        replaced = replace_linear(
            backbone.model,
            lambda name: name.split(".")[-1] in self.targets,
            lambda base: LoRALinear(base, self.r, self.alpha, self.dropout),
        )
        if not replaced:
            raise ValueError(
                f"lora: no linear layer of {backbone.name} is named {list(self.targets)}; "
                "set targets to names such as 'qkv', 'proj', 'fc1'"
            )
        return backbone


class SVF(Adapter):
    """Only the singular values of the linear layers inside the blocks train."""

    name = "svf"

    def __init__(self, scope: str = "blocks") -> None:
        self.scope = scope

    def options(self) -> dict[str, Any]:
        return {"scope": self.scope}

    def apply(self, backbone: Backbone) -> Backbone:
        backbone.requires_grad_(False)
        replaced = replace_linear(backbone.model, lambda n: n.startswith(self.scope), SVFLinear)
        if not replaced:
            raise ValueError(f"svf: {backbone.name} has no linear layers under {self.scope!r}")
        return backbone


ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls for cls in (LinearProbe, MultiLayer, FineTune, LoRA, SVF)
}


def teacher_adapter(registry: Registry, mode: str) -> Component:
    """The registered adapter a recipe's ``teacher_mode`` names: one of the short names in
    :data:`kdbench.methods.TEACHER_MODES` or any adapter name, a plugin's included."""
    return registry.get("adapters", TEACHER_MODES.get(mode, mode))


@dataclass
class AdapterChoice:
    """An adapter a protocol config names: the registered component, the adapter built with
    its options, and the learning rate it trains with (None when it is frozen)."""

    name: str
    component: Component
    adapter: Adapter
    lr: float | None

    def ref(self) -> dict[str, Any]:
        """The record's component reference: name, distribution, version and options."""
        return {**self.component.ref(), "options": self.adapter.options()}


def choose_adapter(
    registry: Registry,
    entry: str | Mapping[str, Any],
    *,
    options: Callable[[str], Mapping[str, Any]],
    lr: Callable[[str], float | None],
    where: str,
) -> AdapterChoice:
    """The registered adapter (built-in or a plugin's) a config entry names.

    ``entry`` is a name or a mapping ``{"name", "options", "lr"}`` (both optional). Options
    the mapping does not give come from ``options(name)``; an adapter that is not ``frozen``
    trains with the mapping's ``lr``, else ``lr(name)``, and without one is refused.
    """
    spec = dict(entry) if isinstance(entry, Mapping) else {"name": entry}
    name, given, rate = spec.pop("name", None), spec.pop("options", None), spec.pop("lr", None)
    if not isinstance(name, str) or spec:
        raise ConfigError(
            f"{where}: adapter entry {entry!r} must be a name or a mapping with 'name' and "
            "optional 'options' and 'lr'"
        )
    try:
        component = registry.get("adapters", name)
    except UnknownComponentError as error:
        raise ConfigError(f"{where}: {error}") from None
    try:
        adapter: Adapter = component.load()(**dict(options(name) if given is None else given))
    except TypeError as error:
        raise ConfigError(f"{where}: adapter {name!r}: {error}") from None
    if adapter.frozen:
        if rate is not None:
            raise ConfigError(
                f"{where}: adapter {name!r} is frozen (it trains no backbone weights), so an "
                "'lr' in its entry would be ignored: drop it"
            )
        return AdapterChoice(name, component, adapter, None)
    rate = rate if rate is not None else lr(name)
    if rate is None:
        raise ConfigError(
            f"{where}: adapter {name!r} trains the backbone and needs a learning rate: give "
            f'the entry one, {{"name": "{name}", "lr": 1e-3}}'
        )
    return AdapterChoice(name, component, adapter, rate)
