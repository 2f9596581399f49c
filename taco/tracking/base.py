"""`BaseLogger`: the contract of a tracking backend (one run per job, closed FINISHED, FAILED or
KILLED), with a no-op default for every member, so a backend writes only what it records. The
Trainer and the job are written against it and every backend subclasses it (no separate
Protocol to keep in step). `NullLogger` (`logger=none`) is it, recording nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the sweep callback imports this module for every command, --help included
    import numpy as np


class BaseLogger:
    """Every member a no-op: `run()` opens nothing and yields the logger, `log_*` drop what they
    are given. A backend overrides `run` (closing its run FINISHED, FAILED or KILLED) and the
    `log_*` methods it records, and says what it can do: `active` (records anything),
    `sweep_run` (a sweep's parent run in its store, under which the jobs nest)."""

    run_id: str | None = None
    tracking_uri: str | None = None
    active = False  # False: nothing is recorded, so nothing needs preparing for it
    resumed = False  # True: run() reopened an existing run (resuming from a checkpoint)

    @contextlib.contextmanager
    def run(
        self, tags: Mapping[str, str] | None = None, run_id: str | None = None
    ) -> Iterator[BaseLogger]:
        yield self

    def sweep_run(self) -> Any:
        """A sweep's parent run in this logger's store (`taco.tracking.sweep_run.MlflowSweepRun`
        is MLflow's), under which the sweep's jobs nest; None: the sweep opens none."""
        return None

    def check(self) -> None:
        """Refuse a store that cannot be used (ConfigError, TacoError), before a run opens."""
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        return None

    def set_tags(self, tags: Mapping[str, str]) -> None:
        return None

    def log_dict(self, data: Any, name: str) -> None:
        return None

    def log_text(self, text: str, name: str) -> None:
        return None

    def log_figure(self, figure: Any, name: str) -> None:
        return None

    def log_artifacts(self, folder: str | Path, name: str | None = None) -> None:
        return None

    def log_dataset(self, record: Mapping[str, Any]) -> None:
        """The run's data as a dataset input (a DataModule's split record: name, source, the
        annotations' hash, the class names and each part's image ids)."""
        return None

    def log_model(self, folder: Path, example: np.ndarray) -> None:
        """A saved model folder (a classifier's `save`) as the run's model, with one or more
        images (uint8) as its input example."""
        return None


class NullLogger(BaseLogger):
    """Logs nothing; used by `logger=none` and by debug runs. It takes (and ignores) any logger
    setting, so `logger=none` also works with a study that sets `logger.experiment_name`."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
