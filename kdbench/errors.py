"""The errors a user can fix, in one place.

Every class here derives from :class:`UserError`: the command line prints its message as one
``error:`` line (exit code 2) instead of a traceback, so the message must name the file,
field or option at fault and say what to do. This module imports nothing from kdbench, so any
layer may raise these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UserError(Exception):
    """A problem the user can fix; the message says where and how."""


class ConfigError(UserError, ValueError):
    """A protocol configuration or override that cannot be used."""


class RegistryError(UserError):
    """Base class for registry problems; the message says what to do."""


class UnknownComponentError(RegistryError, KeyError):
    """A name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ComponentCollisionError(RegistryError):
    """Two plugins registered the same name for one kind."""


class PluginLoadError(UserError, RuntimeError):
    """A plugin could not be loaded and ``KDBENCH_STRICT_PLUGINS`` is set."""


class OutputError(UserError):
    """An output folder that cannot be used, or a record that could not be written there."""


class CacheError(UserError):
    """A cache folder that cannot be created or used."""


class CheckpointError(UserError, ValueError):
    """A training checkpoint that cannot be used: unreadable, damaged, or from another
    training config. The runner discards it and starts the unit over."""


class RecordError(UserError, ValueError):
    """A record that cannot be loaded; ``problems`` says where and what."""

    def __init__(self, path: Path, problems: list[Any]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SiteError(UserError, ValueError):
    """A problem with a leaderboard build (a missing records folder, an unsafe output folder)."""


class DatasetError(UserError, ValueError):
    """A dataset that is not in the expected layout or holds values it should not."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder or file that does not exist."""


class WeightsError(UserError, FileNotFoundError):
    """Weights that are missing, unreadable, or cannot be fetched (offline)."""


class ConfuserError(UserError, ValueError):
    """A confuser file or a source's answer that cannot be used; the message says why."""


class MissingTargetError(ConfuserError, KeyError):
    """A source has no confusers for a target."""

    def __str__(self) -> str:
        return str(self.args[0])
