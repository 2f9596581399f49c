"""Multirun sweeps: one parent run per sweep, every job a child of it.

`MLflowSweepParent` is a Hydra callback (registered in `conf/hydra/default.yaml`). When a
multirun starts it asks the configured logger for its sweep run (`BaseLogger.sweep_run`:
MLflow's is `taco.tracking.sweep_run`, which makes every MLflow write of a sweep; this module
imports no MLflow), opens it tagged with the sweep's overrides, and hands its id to every job
twice over: in the environment (inherited by the basic, joblib, Ray and submitit launchers'
workers, and by SLURM jobs) and in `<sweep dir>/mlflow_parent_run.json` (read by jobs on other
machines that share the sweep folder). When the multirun ends, or the process exits early, it
closes the parent FINISHED, or FAILED with the failed jobs named.

Only Hydra, OmegaConf and the standard library are imported here: Hydra instantiates this
callback for every command, `--help` included.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import open_dict

from taco.config import build, resolved_config
from taco.errors import ConfigError, cli_errors
from taco.schema import check_config
from taco.sweeps.hydra_core import grid_jobs, plans_grid, plugin_class
from taco.tracking.lineage import PARENT_ENV, PARENT_FILE
from taco.tracking.provenance import git_state
from taco.tracking.tags import Tag

log = logging.getLogger(__name__)

NOT_STARTED_FILE = "jobs_not_started.json"
_OPEN: list[MLflowSweepParent] = []  # this process's sweep parents, for fail_open_parents


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


def fail_open_parents(reason: str) -> None:
    """`taco-train -m` ended on an error: every parent run still open closes FAILED."""
    for parent in _OPEN:
        parent.fail(reason)


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


def record_not_started(sweep_dir: Path, jobs: list[tuple[int, list[str]]]) -> None:
    """Jobs an interrupted sweep never started: named in its parent run (`failed_jobs`)."""
    if jobs:
        entries = [{"num": n, "overrides": " ".join(o)} for n, o in jobs]
        (sweep_dir / NOT_STARTED_FILE).write_text(json.dumps(entries))


def not_started(sweep_dir: Path | None, planned: list[list[str]], children: list[Any]) -> list[str]:
    """Jobs of the sweep without a run: those the launcher reported, and those of the planned
    grid (any launcher) that no child run stands for."""
    path = (sweep_dir or Path(".")) / NOT_STARTED_FILE
    reported = json.loads(path.read_text()) if path.is_file() else []
    entries = {e["num"]: e["overrides"] for e in reported}
    have = {c.data.tags.get(Tag.SWEEP_JOB) for c in children}
    for num, overrides in enumerate(planned):
        if str(num) not in have:
            entries.setdefault(num, " ".join(overrides))
    return [f"job #{num} [{entries[num]}]: not started" for num in sorted(entries)]


LOCK_FILE = ".taco_sweep.lock"
_HELD: dict[Path, Any] = {}  # this process's sweep dir locks (one sweep at a time per folder)


def held_sweep_dir() -> Path | None:
    """The folder of the sweep this process started last, if any (its resume line names it)."""
    return next(reversed(_HELD), None)


def hold_sweep_dir(sweep_dir: Path) -> Any:
    """One sweep per sweep dir: an exclusive lock held until this process ends (the kernel
    drops it even on SIGKILL, so a dead sweep's folder can be re-run), naming its holder."""
    try:
        import fcntl
    except ImportError:  # Windows: no check
        return None
    sweep_dir.mkdir(parents=True, exist_ok=True)
    earlier = _HELD.pop(sweep_dir.resolve(), None)
    if earlier is not None:  # an earlier sweep of this same process that ended without closing
        earlier.close()
    handle = open(sweep_dir / LOCK_FILE, "a+")  # noqa: SIM115  (held for the sweep's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} is in use by another sweep ({holder}): wait for it, "
            "or give this sweep its own folder (hydra.sweep.dir=...)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}, since {time.ctime()}\n")
    handle.flush()
    _HELD[sweep_dir.resolve()] = handle
    return handle


class MLflowSweepParent(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock: Any = None  # the sweep dir's lock, held while the sweep runs
        self.sweep: Any = None  # the logger's sweep run (`BaseLogger.sweep_run`), or None
        self.sweep_dir: Path | None = None
        self.planned: list[list[str]] = []  # the grid's jobs, when the sweeper plans one

    @property
    def run_id(self) -> str | None:
        """The open parent run's id (None: none open, or closed already)."""
        return self.sweep.run_id if self.sweep is not None else None

    # ------------------------------------------------------------------ Hydra hooks
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        with cli_errors("taco-train"):  # one line, exit 2: before any job or run starts
            check_launcher(config.hydra.launcher)
            self.planned = check_sweep(config)
            self._lock = hold_sweep_dir(Path(str(config.hydra.sweep.dir)))
            # a re-run in the same folder: the jobs its first run never started may run now
            (Path(str(config.hydra.sweep.dir)) / NOT_STARTED_FILE).unlink(missing_ok=True)
            self._open_parent(config)

    def _open_parent(self, config: Any) -> None:
        logger = build(config.logger) if self.enabled and config.get("logger") else None
        self.sweep = logger.sweep_run() if logger is not None else None
        if self.sweep is None:
            if len(self.planned) > 1 and logger is not None and not logger.active:
                log.warning(
                    "%d jobs with logger=none: nothing is tracked, so taco-compare will have "
                    "nothing to read (drop logger=none to compare them)",
                    len(self.planned),
                )
            return
        overrides = " ".join(config.hydra.overrides.task)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        tags = {
            Tag.SWEEP: "parent",
            Tag.HYDRA_OVERRIDES: overrides[:5000] or "(none)",
            Tag.SWEEP_DIR: str(self.sweep_dir),
            "task": str(config.get("task_name", "")),
            "sweeper": str(config.hydra.sweeper.get("_target_", "")),
            "launcher": str(config.hydra.launcher.get("_target_", "")),
            **git_state(Path(str(config.paths.root_dir))),
            **{str(k): str(v) for k, v in (config.get("tags") or {}).items()},
        }
        study = config.hydra.runtime.choices.get("experiment")
        study = study or f"sweep-{config.get('task_name', 'train')}"
        run_name = f"{study} {time.strftime('%Y-%m-%d %H:%M:%S')}"  # the study and its start
        # a sweeper whose search outlives its sweep (an Optuna study) continues its parent run
        earlier = getattr(plugin_class(config.hydra.sweeper), "earlier_parent_run", None)
        os.environ[PARENT_ENV] = self.sweep.open(
            tags, run_name, earlier(config) if earlier else None
        )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / PARENT_FILE).write_text(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "tracking_uri": self.sweep.tracking_uri,
                    "experiment": self.sweep.experiment_name,
                    "varying": varying_keys(config, self.planned),  # names the children
                }
            )
        )
        atexit.register(self._close, "KILLED")
        _OPEN.append(self)
        log.info(
            "sweep parent run %s in %s (%s)",
            self.run_id,
            self.sweep.experiment_name,
            self.sweep.tracking_uri,
        )

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self._lock is not None:
            self._lock.close()  # the folder is free for a re-run from now on
            _HELD.pop(Path(self._lock.name).parent.resolve(), None)
            self._lock = None
        if self.run_id is None:
            return
        failed = self._close("FINISHED")
        if failed:
            raise SystemExit(
                f"taco sweep: {len(failed)} job(s) failed, parent run marked FAILED:\n  "
                + "\n  ".join(failed)
            )

    # ------------------------------------------------------------------ closing
    def fail(self, reason: str) -> None:
        """The sweep itself ended on an error: the parent closes FAILED saying so."""
        if self.run_id is not None:
            os.environ.pop(PARENT_ENV, None)
            self.sweep.fail(reason, self._not_started)

    def _not_started(self, children: list[Any]) -> list[str]:
        return not_started(self.sweep_dir, self.planned, children)

    def _close(self, status: str) -> list[str]:
        """Close the parent (once): FAILED if any job failed or never started, else `status`."""
        if self.run_id is None:
            return []  # closed once, by whichever comes first: the sweep run forgets its id
        os.environ.pop(PARENT_ENV, None)
        return self.sweep.close(status, self._not_started, self.sweep_dir or Path("."))
