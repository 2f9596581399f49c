"""Hydra's own sweeper and launcher as classes, and the configured plugins' classes.

Hydra's basic sweeper and basic launcher have no public import path: this module is the one
place that names them, so the rest of taco asks by type (`isinstance`, `issubclass`), never by a
class name in a string.
"""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.utils import get_class


def plugin_class(node: Any) -> Any:
    """The class a `_target_` node names (a sweeper, launcher or sampler; looked up, not built),
    or None when it names none or its plugin is missing (Hydra itself says so)."""
    target = node.get("_target_") if node is not None else None
    if not target:
        return None

    try:
        return get_class(str(target))
    except Exception:
        return None


def plans_grid(sweeper: Any) -> bool:
    """Hydra's basic sweeper (or a subclass): every job of the sweep is known before the first."""
    return isinstance(sweeper, type) and issubclass(sweeper, BasicSweeper)


def grid_jobs(overrides: list[Any]) -> list[list[str]]:
    """The basic sweeper's jobs for parsed overrides, in its order."""
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def runs_in_this_process(launcher: Any) -> bool:
    """Hydra's basic launcher: its jobs run one at a time on the calling (main) thread, since a
    job installs signal handlers and changes the working folder."""
    return isinstance(launcher, BasicLauncher)
