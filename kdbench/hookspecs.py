"""The plugin hooks: one per component kind.

Every hook has the same shape, ``kdbench_register_<kind>(register)``. A plugin calls
``register`` once per component it provides::

    register(obj, name="my-loss", description="One line on what it is.", url="https://...")

``obj`` is the component itself or an import path ``"package.module:attribute"`` that is
imported on first use (keeps ``kdbench --help`` fast). ``name`` defaults to ``obj.name`` or
the attribute's name; ``description`` to the first line of the docstring. A name ending in
``:*`` registers a *family*: ``register(factory, name="timm:*")`` makes every name
``timm:<anything>`` resolve to ``factory("<anything>", **options)``.

Hooks are called once per plugin when the registry is first built; none of them is
``firstresult`` or ``historic``, and their return value is ignored. A hook that raises
anything, or registers a bad name or one another plugin already registered, disables its
plugin with a warning (all its components are left out). The contract each kind's ``obj``
must meet is in ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kdbench.registry import Register

PROJECT = "kdbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kdbench_register_teachers(register: Register) -> None:
    """Register teacher backbone factories: ``factory(**options) -> Backbone``."""


@hookspec
def kdbench_register_students(register: Register) -> None:
    """Register student backbone factories: ``factory(**options) -> Backbone``."""


@hookspec
def kdbench_register_adapters(register: Register) -> None:
    """Register adapters, ways to fit a backbone to a task: ``Adapter`` classes."""


@hookspec
def kdbench_register_losses(register: Register) -> None:
    """Register distillation losses: ``DistillationLoss`` subclasses declaring ``requires``."""


@hookspec
def kdbench_register_methods(register: Register) -> None:
    """Register methods (submissions): ``Method`` objects with a ``Recipe`` or a ``fit``."""


@hookspec
def kdbench_register_datasets(register: Register) -> None:
    """Register split-aware dataset loaders: ``factory(root, split, **options) -> Dataset``."""


@hookspec
def kdbench_register_confusers(register: Register) -> None:
    """Register confuser sources for zero-shot one-class: ``ConfuserSource`` factories."""


@hookspec
def kdbench_register_sensors(register: Register) -> None:
    """Register energy sensors for the device protocol: ``EnergySensor`` classes."""


@hookspec
def kdbench_register_protocols(register: Register) -> None:
    """Register evaluation protocols: ``Protocol`` objects with ``name`` and ``version``."""


@hookspec
def kdbench_register_executors(register: Register) -> None:
    """Register executors, which run a run's units: ``factory(**options) -> Executor``."""


@hookspec
def kdbench_register_transfer_sets(register: Register) -> None:
    """Register transfer sets, unlabelled images for distillation: ``build(request)`` objects."""
