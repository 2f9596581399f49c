"""A sweep planned and checked before its parent run opens: every job of a grid composed and
checked against the schema, the launcher's settings checked by its class, and the keys that vary
between jobs (they name the child runs).

Only Hydra, OmegaConf and the standard library load here: the sweep callback imports it for every
command, `--help` included.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

from taco.config import resolved_config
from taco.errors import ConfigError
from taco.schema import check_config
from taco.sweeps.hydra_core import grid_jobs, plans_grid, plugin_class

log = logging.getLogger(__name__)


def check_sweep(config: Any, limit: int = 500) -> list[list[str]]:
    """Every job of a grid sweep composed and checked against the schema before the first job
    starts: a typo in the tenth value of a sweep fails now, not hours later. Returns the jobs'
    overrides in job order. A sweeper that chooses values as it goes (taco_optuna) plans
    nothing; one with a `check` checks its own space here, before the parent run opens."""
    sweeper = plugin_class(config.hydra.sweeper)
    if not plans_grid(sweeper):
        if hasattr(sweeper, "check"):  # a sweeper that checks its own space (taco_optuna)
            sweeper.check(config, list(config.hydra.overrides.task))
        return []
    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(
        [*params, *config.hydra.overrides.task]
    )
    jobs = grid_jobs(parsed)
    for num, overrides in enumerate(jobs[:limit]):
        try:
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):
                del job["hydra"]  # as a job sees its config: Hydra's own node is not in it
            check_config(resolved_config(job))
        except ConfigError as exc:
            raise ConfigError(f"job #{num} [{' '.join(overrides)}]: {exc}") from None
        except Exception as exc:  # not a value the schema refuses: the job itself will say
            log.debug("sweep check skipped job #%d: %s", num, exc)
    return jobs


def check_launcher(launcher: Any) -> None:
    """The launcher's settings checked by its class before any job starts; a launcher whose
    plugin is not installed (`hydra_plugins/taco_launcher/_missing.py`) says what to install."""
    cls = plugin_class(launcher)
    if hasattr(cls, "check_settings"):
        cls.check_settings(launcher)


def varying_keys(config: Any, planned: list[list[str]]) -> list[str]:
    """The override keys whose value differs between the sweep's jobs (the planned grid's), or
    the sweeper's own parameters when it chooses values as it goes (Optuna)."""
    if not planned:
        return [str(k) for k in (config.hydra.sweeper.get("params") or {})]
    values: dict[str, set[str]] = defaultdict(set)
    for job in planned:
        for override in job:
            key, _, value = override.partition("=")
            values[key.lstrip("+~")].add(value)
    return [key for key, seen in values.items() if len(seen) > 1]
