"""`hydra/launcher=joblib` that loses nothing: the joblib launcher's settings and interface, with
every job in a process of its own.

Hydra's joblib launcher runs jobs in a loky pool: when one worker dies (SIGKILL, the OOM killer)
loky breaks the whole pool, healthy jobs are aborted, their runs stay RUNNING and nothing says
which jobs never started. Here at most `n_jobs` jobs run at once, each in a fresh spawned process
watched by a thread of the sweep's main process:

- a job whose process dies has its run closed FAILED ("worker died"); the other jobs go on;
- SIGTERM or SIGINT to the sweep is passed to every running job, which saves its checkpoint and
  closes its run KILLED; jobs not yet started are not started and are named in the parent run;
- a job process gets SIGTERM when the sweep's process dies, however it dies (Linux), so no job
  outlives its sweep.

Only the standard library and Hydra load at module level: Hydra builds the launcher for every
multirun.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from taco.config import SIDE_BY_SIDE_ENV, usable_cores
from taco.errors import ConfigError
from taco.signals import job_process
from taco.sweeps.sweep_dir import record_not_started

log = logging.getLogger(__name__)

STOP_WAIT_S = 300  # how long an interrupted job may take to save and close before SIGKILL
FINISH_LATER = "run the same sweep again with ckpt_path=last to finish it"


@dataclass
class JobProcess:
    """One job of the sweep and the process running it (None until it starts)."""

    num: int
    overrides: list[str]
    process: Any = None
    result: JobReturn | None = None
    died: str = ""  # why the process ended without a result
    worker: int = 0  # the worker slot it runs in (launch_as_ready)
    started: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


def check_n_jobs(n_jobs: Any) -> None:
    """joblib's meaning: N jobs at once, or -1 for one per core; 0 runs nothing."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ConfigError(
            f"hydra.launcher.n_jobs={n_jobs!r} is not allowed: expected a number of jobs at "
            "once >= 1, or -1 for one per CPU core"
        )


class ProcessPerJobLauncher(Launcher):
    """Accepts the joblib launcher's config (`n_jobs` is what it uses; loky's own settings are
    accepted and ignored)."""

    @classmethod
    def check_settings(cls, settings: Any) -> None:
        """Asked before any job starts (`taco.sweeps.plan.check_launcher`)."""
        check_n_jobs(settings.get("n_jobs", -1))

    def __init__(self, n_jobs: int = -1, **loky_settings: Any) -> None:
        check_n_jobs(n_jobs)
        self.n_jobs = int(n_jobs)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def workers(self) -> int:
        cpus = usable_cores()
        return cpus if self.n_jobs < 0 else max(1, min(self.n_jobs, cpus))

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        sweep_dir = self._prepare()
        jobs = [JobProcess(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        log.info("launching %d jobs, %d at a time, in %s", len(jobs), self.workers(), sweep_dir)
        for job in jobs:
            log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
        try:
            self._run_all(jobs)
        except KeyboardInterrupt:
            self._stop(jobs, sweep_dir)
            raise
        for job in jobs:
            if job.died:
                from taco.tracking.sweep_run import close_dead_job

                close_dead_job(sweep_dir, job.num, job.process.pid, job.overrides, job.died)
        return [job.result or failed_return(job.overrides) for job in jobs]

    def _prepare(self) -> Path:
        """Hydra's globals and logging set up for launching; the sweep folder made."""
        setup_globals()
        assert self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return sweep_dir

    def launch_as_ready(
        self,
        next_job: Callable[[], tuple[int, list[str]] | None],
        on_result: Callable[[int, JobReturn], None],
    ) -> list[tuple[int, int, float, float]]:
        """No batches: each worker, once free, starts `next_job()` at once (None: nothing to
        start now), and `on_result(num, result)` hears of every job as it ends. Returns the
        timeline: (worker, job number, start, end) per job, for the workers' idle time."""
        sweep_dir = self._prepare()
        free, running = list(range(self.workers())), dict[int, JobProcess]()
        ended: queue.Queue[JobProcess] = queue.Queue()
        timeline: list[tuple[int, int, float, float]] = []
        log.info("launching jobs as %d worker(s) free up, in %s", len(free), sweep_dir)
        try:
            while True:
                while free and (spec := next_job()) is not None:
                    job = JobProcess(spec[0], list(spec[1]), worker=free.pop(0))
                    log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
                    job.started, job.process = time.time(), self._start(job)
                    running[job.num] = job
                    threading.Thread(
                        target=self._watch, args=(job, lambda j=job: ended.put(j)), daemon=True
                    ).start()
                if not running:
                    return timeline
                try:
                    job = ended.get(timeout=0.2)  # short waits: signals reach this thread
                except queue.Empty:
                    continue
                del running[job.num]
                free = sorted([*free, job.worker])
                timeline.append((job.worker, job.num, job.started, time.time()))
                if job.died:
                    from taco.tracking.sweep_run import close_dead_job

                    close_dead_job(sweep_dir, job.num, job.process.pid, job.overrides, job.died)
                on_result(job.num, job.result or failed_return(job.overrides))
        except KeyboardInterrupt:
            self._stop(list(running.values()), sweep_dir)
            raise

    # ------------------------------------------------------------------ running
    def _run_all(self, jobs: list[JobProcess]) -> None:
        slots = threading.Semaphore(self.workers())
        for job in jobs:
            while not slots.acquire(timeout=0.2):  # short waits: signals reach this thread
                pass
            job.process = self._start(job)
            threading.Thread(target=self._watch, args=(job, slots.release), daemon=True).start()
        for job in jobs:
            while not job.done.wait(timeout=0.2):
                pass

    def _start(self, job: JobProcess) -> Any:
        import cloudpickle

        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        payload = cloudpickle.dumps(
            (
                job.num,
                job.overrides,
                self.hydra_context,
                self.config,
                self.task_function,
                Singleton.get_state(),
            )
        )
        process = context.Process(
            target=_job_main,
            args=(payload, send, self.workers()),
            name=f"taco-job-{job.num}",
            daemon=False,
        )
        process.start()
        send.close()
        process.receive = receive
        return process

    def _watch(self, job: JobProcess, release: Callable[[], None]) -> None:
        """Wait for one job's result or its process's end; a death is recorded, not raised."""
        import cloudpickle

        process = job.process
        try:
            try:
                kind, data = cloudpickle.loads(process.receive.recv_bytes())
            except (EOFError, OSError):
                kind, data = "died", None
            process.join()
            if kind == "result":
                job.result = data
            elif kind == "died":  # "interrupted": the job closed its own run KILLED
                job.died = _death(process.exitcode)
                log.error("job #%d: %s", job.num, job.died)
        finally:
            job.done.set()
            release()

    def _stop(self, jobs: list[JobProcess], sweep_dir: Path) -> None:
        """Interrupted: every running job saves and closes KILLED, none starts any more."""
        running = [j for j in jobs if j.process is not None and not j.done.is_set()]
        log.warning("sweep interrupted: stopping %d running job(s)", len(running))
        for job in running:
            with contextlib.suppress(OSError):
                os.kill(job.process.pid, signal.SIGTERM)
        for job in running:
            job.process.join(STOP_WAIT_S)
            if job.process.is_alive():
                job.process.kill()
                job.process.join()
        not_started = [j for j in jobs if j.process is None]

        record_not_started(sweep_dir, [(j.num, j.overrides) for j in not_started])


def _death(exitcode: int | None) -> str:
    again = FINISH_LATER
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"worker died: its process was killed by {name} (exit {exitcode}); {again}"
    return f"worker died: its process exited with code {exitcode} without a result; {again}"


def failed_return(overrides: list[str]) -> JobReturn:
    """Scores NaN, as a failed job of a sweep does: the sweeper goes on to the next batch."""
    ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
    ret.return_value = math.nan
    return ret


# ---------------------------------------------------------------------- in the job's process
def _job_main(payload: bytes, send: Any, side_by_side: int) -> None:
    import cloudpickle

    job_process()
    os.environ[SIDE_BY_SIDE_ENV] = str(side_by_side)  # the job's share of the cores
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    try:
        result = ("result", execute_job(*cloudpickle.loads(payload)))
    except KeyboardInterrupt:
        result = ("interrupted", None)
    send.send_bytes(cloudpickle.dumps(result))
    send.close()
