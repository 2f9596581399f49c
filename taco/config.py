"""Config helpers: where things are (conf/, the project root, the MLflow store), the Hydra job
this process runs, and building config nodes with user errors kept readable.

Only OmegaConf and the standard library load here: every entry point imports this module, and
`--help` / `--cfg job` must stay fast.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from taco.errors import ConfigError, user_error

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# conf/hydra/launcher/joblib.yaml and ray.yaml replace the plugins' launchers under the same
# names, on purpose; Hydra warns that such a file is checked against the plugin's schema (it
# matches it)
warnings.filterwarnings(
    "ignore", message=r"\s*'hydra/launcher/(joblib|ray)' is validated against ConfigStore schema"
)


def project_root() -> Path:
    """The repository root for a source checkout (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file() and (here / "conf").is_dir():
        return here
    return Path.cwd()


def default_tracking_uri() -> str:
    """The one MLflow store every command uses: $MLFLOW_TRACKING_URI, else <root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root()}/mlflow.db"


def per_model(key: str, _root_: Any) -> Any:
    """`${per_model:image_size}`: the study's `study.<key>` entry for this job's model, else
    its `default`; a model the table does not cover is named with what to add."""
    table, name = _root_.study[key], str(_root_.model.name)
    if name in table:
        return table[name]
    if "default" in table:
        return table["default"]

    raise ConfigError(
        f"study.{key} has no entry for model {name!r} and no default: add "
        f"study.{key}.{name}=<value> (or study.{key}.default) to the experiment"
    )


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("per_model"):
        OmegaConf.register_new_resolver("per_model", per_model)
    if not OmegaConf.has_resolver("taco_root"):
        OmegaConf.register_new_resolver("taco_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("taco_tracking_uri"):
        OmegaConf.register_new_resolver("taco_tracking_uri", default_tracking_uri)
    if not OmegaConf.has_resolver("taco_pid"):  # cached: a sweep's jobs elsewhere keep it
        OmegaConf.register_new_resolver("taco_pid", os.getpid, use_cache=True)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": value}; lists are kept as values (MLflow params are strings)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def build(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, with a user error raised while building re-raised as itself
    (Hydra wraps it in "Error in call to target", which hides the message)."""
    try:
        return instantiate(node, **kwargs)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        raise error from None


# ---------------------------------------------------------------------- the Hydra job
def hydra_runtime() -> Any:
    """Hydra's runtime config, or None when composed without it (tests, notebooks)."""
    try:
        return HydraConfig.get()
    except Exception:
        return None


def in_multirun() -> bool:
    hydra = hydra_runtime()
    return hydra is not None and hydra.mode == RunMode.MULTIRUN


def job_overrides() -> str | None:
    """This job's command-line overrides, or None when composed without Hydra's runtime."""
    hydra = hydra_runtime()
    return " ".join(hydra.overrides.task) if hydra is not None else None


def run_reference(cfg: Any, key: str) -> str | None:
    """A run id (or its first characters) as the user typed it: Hydra reads `sweep=61641851`
    as a number (and `01234567` as 1234567), so a number is taken back from the override's
    own text."""
    value = cfg.get(key)
    if value is None or value == "" or isinstance(value, str):
        return value or None
    hydra = hydra_runtime()
    for override in hydra.overrides.task if hydra is not None else []:
        name, _, text = override.partition("=")
        if name.lstrip("+~") == key:
            return text.strip("'\"")
    return str(value)


def start_cores() -> list[int]:
    """The cores this process was started with: its affinity before a job pins its training
    to `trainer.cpu_threads` of them (captured when taco first loads; a joblib worker runs job
    after job in one process, and each job's share is counted from these)."""
    return list(_START_CORES)


def usable_cores() -> int:
    """How many cores this process may run on (its affinity when started, not the machine's
    count, and not a job's training pin)."""
    return len(_START_CORES)


def _affinity() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return tuple(range(os.cpu_count() or 1))


_START_CORES = _affinity()


SIDE_BY_SIDE_ENV = "TACO_JOBS_SIDE_BY_SIDE"  # set by a launcher that runs jobs side by side


def threads_per_job() -> int | None:
    """CPU threads for one job when its launcher runs several side by side on this machine (the
    joblib launcher says how many in SIDE_BY_SIDE_ENV), else None."""
    jobs = int(os.environ.get(SIDE_BY_SIDE_ENV) or 0)
    if jobs <= 1 or not in_multirun():
        return None
    return max(1, usable_cores() // jobs)


def job_number() -> int:
    """This job's number in its sweep (0 outside one)."""
    hydra = hydra_runtime()
    return int(hydra.job.get("num") or 0) if hydra is not None and in_multirun() else 0


def output_dir(cfg: DictConfig) -> Path | None:
    """This job's Hydra output folder, or None when composed without Hydra's runtime."""
    try:
        return Path(cfg.paths.output_dir)
    except Exception:
        return None


def resolved_config(cfg: DictConfig) -> dict:
    """The config with every interpolation resolved, once (Hydra-only ones left as written)."""
    cfg = cfg.copy()
    try:
        cfg.paths.output_dir = str(output_dir(cfg))
    except Exception:
        pass
    return OmegaConf.to_container(cfg, resolve=True)


def installed_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each package of `names` that is installed."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


register_resolvers()
