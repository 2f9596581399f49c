"""A sweep read back from MLflow: its parent run, its finished jobs grouped by variant (what the
jobs' overrides vary, the seeds and folds aside), the jobs that did not finish, and what each
variant ran (its logged config, not the study's prose)."""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taco.errors import DataError
from taco.tracking.lineage import child_runs
from taco.tracking.stale import describe
from taco.tracking.tags import Tag

# what varies between the jobs of one variant: training seed, test split, cross-validation fold
POOLED = {"seed", "dataset.split_seed", "dataset.fold"}


@dataclass
class Sweep:
    """A sweep's parent run and its jobs: finished ones by variant (in job order), the rest."""

    parent: Any
    variants: list[str]
    runs: dict[str, list[Any]] = field(default_factory=dict)
    unfinished: list[Any] = field(default_factory=list)

    def jobs(self) -> list[Any]:
        return [r for runs in self.runs.values() for r in runs]

    def seeds(self) -> int:
        """The most jobs of one variant (seeds, or seeds x splits)."""
        return max((len(r) for r in self.runs.values()), default=0)


@dataclass(frozen=True)
class Recipe:
    """What one variant's jobs ran, from their logged params (the first job's; a study's
    per-model tables resolved): weights, image size, epochs, batch size."""

    weights: str
    image_size: str
    max_epochs: str
    head_epochs: str | None
    batch_size: str
    epochs_trained: float  # mean over the variant's jobs (early stopping may end a job sooner)

    def text(self) -> str:
        epochs = f"{self.max_epochs} epoch{'' if self.max_epochs == '1' else 's'} max"
        if self.head_epochs:
            epochs += f" (the first {self.head_epochs} head only)"
        return (
            f"{self.weights}, {self.image_size} px, {epochs}, "
            f"{self.epochs_trained:.1f} trained on average, batch {self.batch_size}"
        )


def recipe(runs: list[Any]) -> Recipe:
    params = runs[0].data.params
    weights = params.get("model.weights", "None")
    trained = [r.data.metrics.get("epochs_trained", np.nan) for r in runs]
    return Recipe(
        weights="random init" if weights in ("None", "null", "") else f"{weights} weights",
        image_size=params.get("model.image_size", "?"),
        max_epochs=params.get("trainer.max_epochs", "?"),
        head_epochs=params.get("model.classifier.head_epochs"),
        batch_size=params.get("dataset.batch_size", "?"),
        epochs_trained=float(np.nanmean(trained)) if not np.isnan(trained).all() else np.nan,
    )


def overrides(run: Any) -> dict[str, str]:
    """The job's command-line overrides (its `hydra_overrides` tag) as key -> value."""
    text = run.data.tags.get(Tag.HYDRA_OVERRIDES, "")
    out = {}
    for item in shlex.split(text) if text and text != "(none)" else []:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out


def variant_names(runs: list[Any]) -> dict[str, str]:
    """Run id -> the label of its variant: the overrides that differ between jobs, the seeds
    (training and split) and the cross-validation fold aside (their jobs are pooled)."""
    parsed = {r.info.run_id: overrides(r) for r in runs}
    keys = sorted({k for o in parsed.values() for k in o} - POOLED)
    varying = [k for k in keys if len({o.get(k) for o in parsed.values()}) > 1]
    names = {}
    for run in runs:
        o = parsed[run.info.run_id]
        if varying == ["model"]:
            names[run.info.run_id] = o["model"]
        elif varying:
            names[run.info.run_id] = " ".join(f"{k}={o.get(k, '-')}" for k in varying)
        else:
            names[run.info.run_id] = run.data.tags.get("model", run.info.run_name)
    return names


def find_parent(client: Any, parent_id: str | None, experiment: str | None) -> Any:
    """The sweep's parent run: the one named, else the latest of the experiment (or store)."""

    if parent_id:
        try:
            return client.get_run(parent_id)
        except Exception:
            raise DataError(f"no run {parent_id} in {client.tracking_uri}") from None
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise DataError(f"no experiment named {experiment!r} in {client.tracking_uri}")
        experiments = [found.experiment_id]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        raise DataError(f"no experiments in {client.tracking_uri}: run `make compare` first")
    parents = client.search_runs(
        experiments,
        filter_string=f"tags.`{Tag.SWEEP}` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        where = f"experiment {experiment!r}" if experiment else client.tracking_uri
        raise DataError(f"no sweep (multirun parent run) in {where}: run `make compare` first")
    return parents[0]


def not_finished(parent: Any, unfinished: list[Any]) -> list[str]:
    """A line per job of the sweep that has no result: RUNNING (and whether its process is
    gone), FAILED, KILLED, or never started."""
    started = [describe(r) for r in sorted(unfinished, key=lambda r: r.info.start_time)]
    never = parent.data.tags.get("jobs_not_started", "")
    return [*started, *(line for line in never.splitlines() if line)]


def collect(client: Any, parent: Any) -> Sweep:
    """The sweep's finished jobs by variant, in job order; DataError when none finished."""
    children = child_runs(client, parent.info.run_id)
    finished = [r for r in children if r.info.status == "FINISHED"]
    unfinished = [r for r in children if r.info.status != "FINISHED"]
    if not finished:
        missing = "\n  ".join(not_finished(parent, unfinished)) or "(no job logged a run)"
        raise DataError(
            f"sweep {parent.info.run_id} has no finished job ({len(children)} run(s) in all):"
            f"\n  {missing}"
        )
    finished.sort(key=lambda r: (int(r.data.tags.get(Tag.SWEEP_JOB, 0)), r.info.start_time))
    names = variant_names(finished)
    sweep = Sweep(parent, list(dict.fromkeys(names.values())), unfinished=unfinished)
    for run in finished:
        sweep.runs.setdefault(names[run.info.run_id], []).append(run)
    return sweep


def load_predictions(client: Any, run: Any, part: str = "test") -> dict[str, np.ndarray]:
    """A job's logged `predictions/<part>.npz` (ids, labels, scores, thresholds, classes)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file each
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, f"predictions/{part}.npz", tmp)
        except Exception:
            raise DataError(
                f"run {run.info.run_id} has no predictions/{part}.npz (logged by "
                "callbacks.log_predictions since this release): re-run its job"
            ) from None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


def rare_thresholds(client: Any, runs: list[Any]) -> dict[str, int]:
    """Classes whose tuned threshold rested on fewer validation positives than the job's
    `trainer.threshold_min_positives` in some job of `runs`, with the fewest positives any job
    tuned it on (from each job's `predictions/val.npz`; a job without it is skipped)."""
    fewest: dict[str, int] = {}
    for run in runs:
        params = run.data.params
        if params.get("trainer.threshold", "tuned") != "tuned":
            continue
        least = int(params.get("trainer.threshold_min_positives", 5))
        try:
            logged = load_predictions(client, run, "val")
        except DataError:
            continue
        positives = np.asarray(logged["y_true"]).sum(0)
        for name, n in zip(logged["class_names"], positives, strict=True):
            if n < least:
                fewest[str(name)] = min(int(n), fewest.get(str(name), int(n)))
    return fewest
