"""Multirun sweeps: one parent run per sweep, every job a child of it.

`MLflowSweepParent` is a Hydra callback (registered in `conf/hydra/default.yaml`). When a
multirun starts it asks the configured logger for its sweep run (`BaseLogger.sweep_run`:
MLflow's is `taco.tracking.sweep_run`, which makes every MLflow write of a sweep; this module
imports no MLflow), opens it tagged with the sweep's overrides, and hands its id to every job
twice over: in the environment (inherited by the basic, joblib, Ray and submitit launchers'
workers, and by SLURM jobs) and in `<sweep dir>/mlflow_parent_run.json` (read by jobs on other
machines that share the sweep folder). When the multirun ends, or the process exits early, it
closes the parent FINISHED, or FAILED with the failed jobs named. Before the parent opens, the
sweep is planned and checked (`taco.sweeps.plan`) and its folder held (`taco.sweeps.sweep_dir`).

Only Hydra, OmegaConf and the standard library are imported here: Hydra instantiates this
callback for every command, `--help` included.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from taco.config import build
from taco.errors import cli_errors
from taco.sweeps.hydra_core import plugin_class
from taco.sweeps.plan import check_launcher, check_sweep, varying_keys
from taco.sweeps.sweep_dir import NOT_STARTED_FILE, hold_sweep_dir, not_started, release_sweep_dir
from taco.tracking.lineage import PARENT_ENV, PARENT_FILE
from taco.tracking.provenance import git_state
from taco.tracking.tags import Tag

log = logging.getLogger(__name__)

_OPEN: list[MLflowSweepParent] = []  # this process's sweep parents, for fail_open_parents


def fail_open_parents(reason: str) -> None:
    """`taco-train -m` ended on an error: every parent run still open closes FAILED."""
    for parent in _OPEN:
        parent.fail(reason)


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
            release_sweep_dir(self._lock)
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
