"""Which sweep a run belongs to, as MLflow records it: a job's parent run (from the environment
or `<sweep dir>/mlflow_parent_run.json`), its nesting tags and run name, a sweep's children, and
a finished run adopted by a re-run sweep. The sweep itself (the Hydra callback that opens and
closes the parent run, the launcher) is in `taco.sweeps`.

Only OmegaConf, Hydra's runtime config and the standard library load here; MLflow on use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from taco.config import hydra_runtime, in_multirun
from taco.tracking.tags import Tag

PARENT_ENV = "TACO_SWEEP_PARENT_RUN_ID"
PARENT_FILE = "mlflow_parent_run.json"


def parent_run_id() -> str | None:
    """The sweep's parent run for this job, when it is a job of a multirun."""
    if not in_multirun():
        return None
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    path = Path(hydra_runtime().sweep.dir) / PARENT_FILE
    if path.is_file():
        return json.loads(path.read_text())["run_id"]
    return None


def job_tags() -> dict[str, str]:
    """`mlflow.parentRunId` (what the MLflow UI nests by) and the job's number in the sweep."""
    parent = parent_run_id()
    if parent is None:
        return {}
    return {Tag.PARENT_RUN: parent, Tag.SWEEP_JOB: str(hydra_runtime().job.num)}


def child_runs(client: Any, parent_id: str) -> list[Any]:
    parent = client.get_run(parent_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        max_results=10000,
    )


def job_run_name(base: str) -> str:
    """A sweep job's run name: `base` (model-dataset) and the overrides that tell it apart from
    the other jobs, e.g. `cnn-synthetic-seed=2`; outside a sweep, `base` itself."""
    hydra = hydra_runtime()
    if hydra is None or not in_multirun():
        return base
    record = parent_record(Path(str(hydra.sweep.dir)))
    if not record:
        return base
    varying = set(record.get("varying", [])) - {"model", "dataset"}  # already in `base`
    own = [
        o.lstrip("+") for o in hydra.overrides.task if o.partition("=")[0].lstrip("+~") in varying
    ]
    return "-".join([base, *own])


def parent_record(sweep_dir: Path) -> dict | None:
    path = sweep_dir / PARENT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def adopt_run(tracking_uri: str, run_id: str, tags: dict[str, str]) -> dict[str, float]:
    """A finished run joins the current sweep (its parent and job number); returns its
    metrics."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for key in (Tag.PARENT_RUN, Tag.SWEEP_JOB):
        if key in tags:
            client.set_tag(run_id, key, tags[key])
    return dict(client.get_run(run_id).data.metrics)
