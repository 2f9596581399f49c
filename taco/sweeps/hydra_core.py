"""Hydra's own sweeper and launcher as classes, and the configured plugins' classes.

Hydra's basic sweeper and basic launcher have no public import path: this module is the one
place that names them, so the rest of taco asks by type (`isinstance`, `issubclass`), never by a
class name in a string. They are looked up when asked, not imported with this module: Hydra's
plugin scan executes its plugin modules again, so a class kept from import time can be another
object than the one Hydra builds (the sweep check then planned nothing).
"""

from __future__ import annotations

from typing import Any

from taco.schema import target_class

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def plugin_class(node: Any) -> Any:
    """The class a `_target_` node names (a sweeper, launcher or sampler; looked up, not built),
    or None when it names none or its plugin is missing (Hydra itself says so)."""
    target = node.get("_target_") if node is not None else None
    return target_class(str(target)) if target else None


def plans_grid(sweeper: Any) -> bool:
    """Hydra's basic sweeper (or a subclass): every job of the sweep is known before the first."""
    return isinstance(sweeper, type) and issubclass(sweeper, target_class(BASIC_SWEEPER))


def grid_jobs(overrides: list[Any]) -> list[list[str]]:
    """The basic sweeper's jobs for parsed overrides, in its order."""
    batches = target_class(BASIC_SWEEPER).split_arguments(overrides, None)
    return [list(job) for batch in batches for job in batch]


def runs_in_this_process(launcher: Any) -> bool:
    """Hydra's basic launcher: its jobs run one at a time on the calling (main) thread, since a
    job installs signal handlers and changes the working folder."""
    return isinstance(launcher, target_class(BASIC_LAUNCHER))
