"""A job of a multirun: a job that fails is logged (its run FAILED) and scores NaN while the
other jobs go on; a job a re-run sweep finds finished is taken as it is."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from taco.config import build
from taco.errors import user_error
from taco.tracking.lineage import adopt_run
from taco.training.job import Job, build_job, run_tags, train

log = logging.getLogger("taco.train")


def sweep_job(cfg: DictConfig) -> float:
    """A failed job of a sweep is logged (its run FAILED) and scores NaN; the other jobs go on,
    and the sweep's parent run ends FAILED naming it. Ctrl-C still stops the whole sweep."""
    try:
        job = build_job(cfg)
    except Exception as exc:
        record_unstarted(cfg, exc)
        return job_failed(exc)
    if job.resume.finished_run:
        return take_finished(cfg, job)
    try:
        return train(cfg, job)
    except Exception as exc:
        return job_failed(exc)


def take_finished(cfg: DictConfig, job: Job) -> float:
    """A job a re-run sweep finds finished: its run joins this sweep, its result is returned."""
    run_id = job.resume.finished_run["run_id"]
    log.info("this job finished before, in run %s: taking its result", run_id)
    metrics = adopt_run(job.logger.tracking_uri, run_id, job.tags) if job.logger.active else {}
    return float(metrics.get(cfg.optimized_metric, float("nan")))


def job_failed(exc: Exception) -> float:
    error = user_error(exc)
    shown = error or exc
    log.error("job failed: %s: %s", type(shown).__name__, shown, exc_info=error is None)
    return float("nan")


def record_unstarted(cfg: DictConfig, error: Exception) -> None:
    """A sweep job refused while it was built still gets its child run, FAILED with the error,
    so the parent run names it."""
    try:
        with build(cfg.logger).run(tags=run_tags(cfg)):
            raise error
    except Exception as exc:
        if exc is not error:  # the logger itself failed: say so, the sweep still goes on
            log.warning("could not record the failed job in the run store: %s", exc)
