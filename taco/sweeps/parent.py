"""Multirun sweeps: one MLflow parent run per sweep, every job a child of it.

`MLflowSweepParent` is a Hydra callback (registered in `conf/hydra/default.yaml`). When a multirun
starts it opens the parent run in the job's tracking store, tagged with the sweep's overrides, and
hands its id to every job twice over: in the environment (inherited by the basic, joblib, Ray and
submitit launchers' workers, and by SLURM jobs) and in `<sweep dir>/mlflow_parent_run.json` (read by
jobs on other machines that share the sweep folder). When the multirun ends, or the process exits
early, it closes the parent FINISHED, or FAILED with the failed jobs named.

Only Hydra, OmegaConf and the standard library are imported here: Hydra instantiates this
callback for every command, `--help` included.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from taco.config import resolved_config
from taco.errors import ConfigError, cli_errors
from taco.schema import check_config
from taco.tracking.lineage import (
    PARENT_ENV,
    PARENT_FILE,
    child_runs,
    parent_record,
)
from taco.tracking.tags import Tag

log = logging.getLogger(__name__)

NOT_STARTED_FILE = "jobs_not_started.json"
_OPEN: list[MLflowSweepParent] = []  # this process's sweep parents, for fail_open_parents


def check_sweep(config: Any, limit: int = 500) -> list[list[str]]:
    """Every job of a grid sweep composed and checked against the schema before the first job
    starts: a typo in the tenth value of a sweep fails now, not hours later. Returns the jobs'
    overrides in job order. A sweeper that chooses values as it goes (taco_optuna) plans
    nothing; one with a `check` checks its own space here, before the parent run opens."""
    if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        sweeper = sweeper_class(config)
        if hasattr(sweeper, "check"):  # a sweeper that checks its own space (taco_optuna)
            sweeper.check(config, list(config.hydra.overrides.task))
        return []
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import open_dict

    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(
        [*params, *config.hydra.overrides.task]
    )
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
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
    return [list(job) for job in jobs]


def fail_open_parents(reason: str) -> None:
    """`taco-train -m` ended on an error: every parent run still open closes FAILED."""
    for parent in _OPEN:
        parent.fail(reason)


def check_launcher_installed(launcher: Any) -> None:
    """`hydra/launcher=ray` or `slurm` without its plugin: the stand-in class registered for it
    (`hydra_plugins/taco_launcher/_missing.py`) says what to install."""
    target = str(launcher.get("_target_", ""))
    if target.startswith("hydra_plugins.taco_launcher."):
        from hydra.utils import get_class

        needs = getattr(get_class(target), "needs", "")
        if needs:
            raise ConfigError(needs)


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


def close_dead_job(
    sweep_dir: Path, num: int, pid: int | None, overrides: list[str], reason: str
) -> None:
    """A job whose process died: its run (found by pid, or by job number where the process is
    on another machine) closed FAILED with `reason`, or a FAILED run made for it when it died
    before opening one, so the parent run names it."""
    record = parent_record(sweep_dir)
    if record is None:  # no tracking (logger=none)
        return
    import mlflow

    client = mlflow.MlflowClient(record["tracking_uri"])
    try:
        mine = [
            r
            for r in child_runs(client, record["run_id"])
            if r.info.status == "RUNNING"
            and (
                r.data.tags.get(Tag.PID) == str(pid)
                if pid
                else r.data.tags.get(Tag.SWEEP_JOB) == str(num)
            )
        ]
        if not mine:
            parent = client.get_run(record["run_id"])
            tags = {
                Tag.PARENT_RUN: record["run_id"],
                Tag.SWEEP_JOB: str(num),
                Tag.HYDRA_OVERRIDES: " ".join(overrides)[:5000] or "(none)",
            }
            mine = [client.create_run(parent.info.experiment_id, tags=tags)]
        for run in mine:
            client.set_tag(run.info.run_id, "error", reason)
            client.set_terminated(run.info.run_id, "FAILED")
    except Exception as exc:  # the store is unreachable: the parent still names the job
        log.warning("could not close the run of dead job #%d: %s", num, exc)


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
    import socket

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


def sweeper_class(config: Any) -> Any:
    """The configured sweeper's class (looked up, not built), or None."""
    target = config.hydra.sweeper.get("_target_")
    if not target:
        return None
    from hydra.utils import get_class

    try:
        return get_class(str(target))
    except Exception:  # Hydra itself will say that the plugin is missing
        return None


def nests_sweeps(logger: Any) -> bool:
    """Whether the configured logger's class declares that its runs nest under a sweep's parent
    run (`nests_sweeps`, a class attribute: the class is looked up, not built)."""
    target = logger.get("_target_") if logger else None
    if not target:
        return False
    from hydra.utils import get_class

    return bool(getattr(get_class(str(target)), "nests_sweeps", False))


class MLflowSweepParent(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock: Any = None  # the sweep dir's lock, held while the sweep runs
        self.run_id: str | None = None
        self.client: Any = None
        self.started = 0.0
        self.sweep_dir: Path | None = None
        self.planned: list[list[str]] = []  # the grid's jobs, when the sweeper plans one

    # ------------------------------------------------------------------ Hydra hooks
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        with cli_errors("taco-train"):  # one line, exit 2: before any job or run starts
            check_launcher_installed(config.hydra.launcher)
            if "n_jobs" in config.hydra.launcher:
                from taco.sweeps.joblib_launcher import check_n_jobs

                check_n_jobs(config.hydra.launcher.n_jobs)
            self.planned = check_sweep(config)
            self._lock = hold_sweep_dir(Path(str(config.hydra.sweep.dir)))
            # a re-run in the same folder: the jobs its first run never started may run now
            (Path(str(config.hydra.sweep.dir)) / NOT_STARTED_FILE).unlink(missing_ok=True)
            self._open_parent(config)

    def _open_parent(self, config: Any) -> None:
        logger = config.get("logger") or {}
        if not self.enabled or not nests_sweeps(logger):
            if len(self.planned) > 1 and str(logger.get("_target_", "")).endswith("NullLogger"):
                log.warning(
                    "%d jobs with logger=none: nothing is tracked, so taco-compare will have "
                    "nothing to read (drop logger=none to compare them)",
                    len(self.planned),
                )
            return
        import mlflow

        from taco.tracking.mlflow_logger import get_or_create_experiment
        from taco.tracking.provenance import git_state, process_tags
        from taco.tracking.store import ensure_store

        uri = str(logger.tracking_uri)
        ensure_store(uri)
        self.client = mlflow.MlflowClient(uri)
        name = str(logger.experiment_name)
        experiment_id = get_or_create_experiment(self.client, name)
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
            **process_tags(),
        }
        study = config.hydra.runtime.choices.get("experiment")
        study = study or f"sweep-{config.get('task_name', 'train')}"
        run_name = f"{study} {time.strftime('%Y-%m-%d %H:%M:%S')}"  # the study and its start
        self.run_id = self._continued(config, experiment_id, tags)
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
        self.started = time.time()
        os.environ[PARENT_ENV] = self.run_id
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / PARENT_FILE).write_text(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "tracking_uri": uri,
                    "experiment": name,
                    "varying": varying_keys(config, self.planned),  # names the children
                }
            )
        )
        atexit.register(self._close, "KILLED")
        _OPEN.append(self)
        log.info("sweep parent run %s in %s (%s)", self.run_id, name, uri)

    def _continued(self, config: Any, experiment_id: str, tags: dict) -> str | None:
        """A sweeper whose search outlives its sweep (an Optuna study) continues the parent run
        of its earlier sweeps: reopened RUNNING, its stale children closed FAILED."""
        earlier = getattr(sweeper_class(config), "earlier_parent_run", None)
        run_id = earlier(config) if earlier else None
        if not run_id:
            return None
        try:
            run = self.client.get_run(run_id)
        except Exception:  # deleted, or in another store: a new parent
            return None
        if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
            return None
        from taco.tracking.stale import is_stale

        for child in child_runs(self.client, run_id):
            if is_stale(child):
                self.client.set_tag(child.info.run_id, "error", "stale: its sweep was killed")
                self.client.set_terminated(child.info.run_id, "FAILED")
        self.client.update_run(run_id, status="RUNNING")
        for key in (Tag.HYDRA_OVERRIDES, Tag.SWEEP_DIR):
            self.client.set_tag(run_id, key, tags[key])
        self.client.set_tag(run_id, "continued", time.strftime("%Y-%m-%d %H:%M:%S"))
        log.info("continuing the search's parent run %s", run_id)
        return run_id

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
        """The sweep itself ended on an error (its launcher could not submit, a cluster went
        away): the parent closes FAILED saying so, not KILLED as an interrupted one does."""
        run_id = self.run_id
        if run_id is not None:
            self._close("FAILED")
            with contextlib.suppress(Exception):  # after _close's own "no job logged a run"
                self.client.set_tag(run_id, "error", reason[:5000])

    def of_this_sweep(self, child: Any) -> bool:
        """A child this sweep started: a continued search's earlier failures were named when
        their own sweep ended (and their trials asked again)."""
        return child.info.start_time >= int(self.started * 1000) - 1000

    def children(self, run_id: str) -> list[Any]:
        return child_runs(self.client, run_id)

    def _close(self, status: str) -> list[str]:
        """Close the parent (once): FAILED if any child is not FINISHED, else `status`."""
        if self.run_id is None:
            return []
        run_id, self.run_id = self.run_id, None  # closed once, by whichever comes first
        os.environ.pop(PARENT_ENV, None)
        try:
            children = self.children(run_id)
            failed = [
                f"{c.info.run_name} [{c.data.tags.get(Tag.HYDRA_OVERRIDES, '')}]: {c.info.status}"
                + (f" ({c.data.tags['error'][:300]})" if c.data.tags.get("error") else "")
                for c in children
                if c.info.status != "FINISHED" and self.of_this_sweep(c)
            ]
            finished = len(children) - len(failed)
            never = not_started(self.sweep_dir, self.planned, children)
            if never:
                self.client.set_tag(run_id, "jobs_not_started", "\n".join(never)[:5000])
            failed += never
            self.client.log_metric(run_id, "sweep/jobs", len(children))
            self.client.log_metric(run_id, "sweep/jobs_finished", finished)
            self.client.log_metric(run_id, "sweep/wall_seconds", time.time() - self.started)
            self._log_optimization_results(run_id)
            if failed:
                self.client.set_tag(run_id, "failed_jobs", "\n".join(failed)[:5000])
            # closed at exit (interrupted): KILLED; completed with a failed job or none: FAILED
            final = status
            if status != "KILLED" and (failed or not children):
                final = "FAILED"
            if not children:
                self.client.set_tag(run_id, "error", "no job of the sweep logged a run")
            self.client.set_terminated(run_id, final)
            return failed
        except Exception as exc:  # say so, never hide the sweep's end; never leave it RUNNING
            log.warning("could not close sweep parent run %s: %s", run_id, exc)
            with contextlib.suppress(Exception):  # the store itself may be what failed
                self.client.set_tag(run_id, "error", f"closing the sweep failed: {exc}"[:4000])
                self.client.set_terminated(run_id, "FAILED")
            return []

    def _log_optimization_results(self, run_id: str) -> None:
        """An Optuna sweep's best parameters and value, trial counts, workers' idle time and
        plots, logged to the parent (a continued search's best may change: a tag, not a
        param, which MLflow would refuse to change)."""
        folder = self.sweep_dir or Path(".")
        path = folder / "optimization_results.yaml"
        if not path.is_file():
            return
        import yaml

        results = yaml.safe_load(path.read_text()) or {}
        for key, value in (results.get("best_params") or {}).items():
            self.client.set_tag(run_id, f"best/{key}", str(value))
        if results.get("best_trial") is not None:
            self.client.set_tag(run_id, Tag.OPTUNA_BEST_TRIAL, str(results["best_trial"]))
        metrics = {f"optuna/trials_{k.lower()}": v for k, v in results["trials"].items()}
        if results.get("best_value") is not None:
            metrics["best_value"] = float(results["best_value"])
        metrics["optuna/epochs_trained"] = results.get("epochs_trained", 0)
        workers = folder / "workers.yaml"
        if workers.is_file():
            for row in (yaml.safe_load(workers.read_text()) or {}).get("workers", []):
                metrics[f"sweep/worker_{row['worker']}_idle_share"] = row["idle_share"]
            self.client.log_artifact(run_id, str(workers))
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        self.client.log_artifact(run_id, str(path))
        if (folder / "optuna").is_dir():
            self.client.log_artifacts(run_id, str(folder / "optuna"), "optuna")
