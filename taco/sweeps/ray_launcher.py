"""`hydra/launcher=ray` that loses nothing: the Ray launcher's settings (`ray.init`, `ray.remote`),
on this machine or on a Ray cluster (`hydra.launcher.ray.init.address`).

Hydra's Ray launcher collects results with one `ray.get` per job, in order: the first job whose
worker dies (the OOM killer, a lost node) raises in the sweep, the others' results are lost and
their runs stay RUNNING; Ray retries the crashed task, training the job again from scratch; an
interrupted sweep leaves its tasks running on the cluster; and it cannot join a running cluster
(it sets `object_store_memory`, which `ray.init` refuses with an address). Here:

- each job is one Ray task, never retried: a job whose worker dies costs only itself, its run
  closed FAILED ("worker died"); the other jobs go on;
- SIGTERM or SIGINT to the sweep cancels every task: a running job gets Ctrl-C, saves its
  checkpoint and closes its run KILLED; a job not yet started never starts and is named in the
  parent run (re-run the sweep with `ckpt_path=last` to finish it);
- a job carries the sweep's MLFLOW_* and TACO_* environment (its tracking store, its parent run),
  which a worker of a cluster started by `ray start` does not inherit.

Hydra's plugin scan imports this module for every command (through
`hydra_plugins/taco_launcher/ray_launcher.py`); Ray itself loads only when a sweep launches.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
from omegaconf import OmegaConf, open_dict

from taco.signals import handlers_kept
from taco.sweeps.joblib_launcher import FINISH_LATER, STOP_WAIT_S, failed_return

log = logging.getLogger(__name__)

CARRIED_ENV = ("MLFLOW_", "TACO_")


@dataclass
class RayJob:
    num: int
    overrides: list[str]
    ref: Any
    result: JobReturn | None = None


class TaskPerJobRayLauncher(RayLauncher):
    """The Ray launcher's config; jobs collected one by one as they end."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job, start_ray

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if self.ray_cfg.init.get("address") is None:  # Ray started here: as Hydra's launcher
            self.ray_cfg.init.setdefault("object_store_memory", 78643200)  # (refused on a cluster)
        with handlers_kept():  # ray.init puts its own in (a crash report)
            start_ray(self.ray_cfg.init)
        task = ray.remote(_run_job).options(**self._task_options())
        log.info("Ray: launching %d jobs in %s", len(job_overrides), sweep_dir)
        jobs = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(config):
                config.hydra.job.id = f"job_id_for_{num}"
                config.hydra.job.num = num
            ref = task.remote(
                hydra_context=self.hydra_context,
                sweep_config=config,
                task_function=self.task_function,
                singleton_state=Singleton.get_state(),
            )
            jobs.append(RayJob(num, list(overrides), ref))
        try:
            self._collect(jobs, sweep_dir)
        except KeyboardInterrupt:
            self._stop(jobs, sweep_dir)
            raise
        return [job.result for job in jobs]  # type: ignore[misc]

    def _task_options(self) -> dict[str, Any]:
        """`ray.remote` settings, no retry, and this process's MLFLOW_*/TACO_* variables."""
        options = OmegaConf.to_container(self.ray_cfg.remote, resolve=True) or {}
        runtime_env = dict(options.pop("runtime_env", None) or {})
        carried = {k: v for k, v in os.environ.items() if k.startswith(CARRIED_ENV)}
        runtime_env["env_vars"] = {**carried, **(runtime_env.get("env_vars") or {})}
        return {**options, "max_retries": 0, "runtime_env": runtime_env}

    def _collect(self, jobs: list[RayJob], sweep_dir: Path) -> None:
        """Each job's result as it ends; a task that fails on Ray's side (its worker died, its
        node was lost) becomes that job's failure alone."""
        import ray

        waiting = {job.ref: job for job in jobs}
        while waiting:
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=0.5)
            for ref in done:
                job = waiting.pop(ref)
                try:
                    job.result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    self._lost(job, sweep_dir, f"{type(exc).__name__}: {_first_line(exc)}")

    def _lost(self, job: RayJob, sweep_dir: Path, why: str) -> None:
        from taco.tracking.sweep_run import close_dead_job

        reason = f"worker died ({why}); {FINISH_LATER}"
        log.error("job #%d: %s", job.num, reason)
        close_dead_job(sweep_dir, job.num, None, job.overrides, reason)
        job.result = failed_return(job.overrides)

    def _stop(self, jobs: list[RayJob], sweep_dir: Path) -> None:
        """Interrupted: every task cancelled; running jobs get Ctrl-C, save and close KILLED."""
        import ray

        running = [job for job in jobs if job.result is None]
        log.warning("sweep interrupted: cancelling %d job(s) on Ray", len(running))
        for job in running:
            ray.cancel(job.ref)  # a started job: KeyboardInterrupt; a queued one: never starts
        deadline = time.monotonic() + STOP_WAIT_S
        left = [job.ref for job in running]
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=1)
        for job in running:
            if job.ref in left:  # still running after the wait: killed, its run closed FAILED
                ray.cancel(job.ref, force=True)
                self._lost(job, sweep_dir, "did not stop within the wait after the interrupt")


def _first_line(error: BaseException) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), "")[:300]
