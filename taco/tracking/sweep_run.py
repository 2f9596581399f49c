"""A sweep's parent run in MLflow, and every other MLflow write a sweep makes: the parent opened
when a multirun starts (or a search's earlier parent continued), closed FINISHED, FAILED with the
failed and never-started jobs named, or KILLED; an Optuna search's results logged to it; a dead
job's run closed FAILED. The sweep's Hydra plumbing (`taco.sweeps`) reaches it through
`BaseLogger.sweep_run()` and never imports MLflow itself."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from taco.tracking.lineage import child_runs, parent_record
from taco.tracking.provenance import process_tags
from taco.tracking.stale import is_stale
from taco.tracking.store import ensure_store, get_or_create_experiment
from taco.tracking.tags import Tag

log = logging.getLogger(__name__)


class MlflowSweepRun:
    """The parent run of one sweep in `tracking_uri`'s experiment `experiment_name`."""

    def __init__(self, tracking_uri: str, experiment_name: str) -> None:
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.client: Any = None
        self.run_id: str | None = None
        self.started = 0.0

    def open(self, tags: Mapping[str, str], run_name: str, earlier: str | None = None) -> str:
        """The parent run's id: `earlier` (a search's parent from its earlier sweeps) reopened
        RUNNING where it is still there, else a new run."""
        import mlflow

        ensure_store(self.tracking_uri)
        self.client = mlflow.MlflowClient(self.tracking_uri)
        experiment_id = get_or_create_experiment(self.client, self.experiment_name)
        tags = {**tags, **process_tags()}
        self.run_id = self._continued(earlier, experiment_id, tags) if earlier else None
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
        self.started = time.time()
        return self.run_id

    def _continued(self, run_id: str, experiment_id: str, tags: Mapping[str, str]) -> str | None:
        """A search whose study outlives its sweep continues its parent run: reopened RUNNING,
        its stale children closed FAILED."""
        try:
            run = self.client.get_run(run_id)
        except Exception:  # deleted, or in another store: a new parent
            return None
        if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
            return None
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

    def children(self) -> list[Any]:
        return child_runs(self.client, self.run_id) if self.run_id else []

    def of_this_sweep(self, child: Any) -> bool:
        """A child this sweep started: a continued search's earlier failures were named when
        their own sweep ended (and their trials asked again)."""
        return child.info.start_time >= int(self.started * 1000) - 1000

    def close(self, status: str, not_started: Any, search: Path | None = None) -> list[str]:
        """Close the parent (once): FAILED if any child of this sweep is not FINISHED or a job
        never started (`not_started(children)` names those), else `status`; an Optuna search's
        results in `search` (its sweep folder) logged first. Returns the failed jobs' lines."""
        if self.run_id is None:
            return []
        run_id, self.run_id = self.run_id, None  # closed once, by whichever comes first
        try:
            children = child_runs(self.client, run_id)
            failed = [
                f"{c.info.run_name} [{c.data.tags.get(Tag.HYDRA_OVERRIDES, '')}]: {c.info.status}"
                + (f" ({c.data.tags['error'][:300]})" if c.data.tags.get("error") else "")
                for c in children
                if c.info.status != "FINISHED" and self.of_this_sweep(c)
            ]
            finished = len(children) - len(failed)
            never = not_started(children)
            if never:
                self.client.set_tag(run_id, "jobs_not_started", "\n".join(never)[:5000])
            failed += never
            self.client.log_metric(run_id, "sweep/jobs", len(children))
            self.client.log_metric(run_id, "sweep/jobs_finished", finished)
            self.client.log_metric(run_id, "sweep/wall_seconds", time.time() - self.started)
            if search is not None:
                self._log_search(run_id, search)
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

    def fail(self, reason: str, not_started: Any) -> None:
        """The sweep itself ended on an error (its launcher could not submit, a cluster went
        away): the parent closes FAILED saying so, not KILLED as an interrupted one does."""
        run_id = self.run_id
        if run_id is not None:
            self.close("FAILED", not_started)
            with contextlib.suppress(Exception):  # after close's own "no job logged a run"
                self.client.set_tag(run_id, "error", reason[:5000])

    def _log_search(self, run_id: str, folder: Path) -> None:
        """An Optuna sweep's best parameters and value, trial counts, workers' idle time and
        plots (a continued search's best may change: a tag, not a param, which MLflow would
        refuse to change)."""
        path = folder / "optimization_results.yaml"
        if not path.is_file():
            return

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
