"""An Optuna study that survives its sweep: kept in an RDB storage next to the MLflow store
(`optuna.db` beside `mlflow.db` by default, a PostgreSQL database for a team), found again by
name when the same command runs again, and heartbeats for every running trial, so the trials of a
killed sweep are marked FAIL and asked again.

Optuna loads only inside these functions: Hydra reads the sweeper for every multirun, `--help`
and `--cfg` included.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taco.errors import ConfigError

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run"  # the study's user attribute: its MLflow parent run
HEARTBEAT_S = 10  # how often a running trial's heartbeat is written
GRACE_S = 30  # a trial without a heartbeat for this long belongs to a dead sweep
MAX_RETRY = 3  # a killed trial is asked again at most this often


def storage_url(storage: str | None, tracking_uri: str) -> str:
    """The study's storage: as given, or next to the MLflow store: `optuna.db` in the folder of
    a SQLite store, database `optuna` on the server of a PostgreSQL store."""
    if storage:
        return str(storage)
    uri = str(tracking_uri)
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).parent / 'optuna.db'}"
    if uri.startswith(("postgresql://", "postgresql+")):
        base, _, _ = uri.partition("?")
        return base.rsplit("/", 1)[0] + "/optuna"
    raise ConfigError(
        f"hydra.sweeper.storage: the MLflow store {uri} has no database to keep the study in "
        "beside it; set TACO_OPTUNA_STORAGE (or hydra.sweeper.storage) to the team's "
        "PostgreSQL, e.g. postgresql://taco@db-host/optuna"
    )


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S) -> Any:
    """An RDB storage with heartbeats: a trial whose sweep died is failed and retried."""
    import optuna

    # heartbeats and their retry callback are "experimental" since Optuna 2.8: said once here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # ... and Optuna would have them only with Study.optimize: the sweeper writes them itself
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {},
            heartbeat_interval=heartbeat_s,
            grace_period=grace_s,
            heartbeat_stale_trial_callback=retry,
        )
    except Exception as exc:
        raise ConfigError(
            f"hydra.sweeper.storage={url}: the study's storage cannot be opened ({exc}); check "
            "the address, or leave it null for optuna.db beside mlflow.db"
        ) from None


def open_study(
    url: str,
    name: str,
    direction: str,
    sampler: Any = None,
    pruner: Any = None,
    heartbeat: tuple[int, int] = (HEARTBEAT_S, GRACE_S),
) -> Any:
    """The study `name`, created or continued; a continued study must keep its direction."""
    import optuna

    study = optuna.create_study(
        storage=open_storage(url, *heartbeat),
        study_name=name,
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"hydra.sweeper.direction={direction}: study {name!r} in {url} was made to "
            f"{study.direction.name.lower()}; give this search another study_name"
        )
    return study


def _summary(url: str, name: str) -> Any:
    """Study `name`'s summary, or None where there is no such study (or storage) yet."""
    import optuna

    try:
        summaries = optuna.study.get_all_study_summaries(open_storage(url), False)
    except ConfigError:
        return None
    return next((s for s in summaries if s.study_name == name), None)


def earlier_parent(url: str, name: str) -> str | None:
    """The MLflow parent run of study `name` when it exists already (a re-run continues it)."""
    summary = _summary(url, name)
    return summary.user_attrs.get(PARENT_ATTR) if summary else None


def trials_in(url: str, name: str) -> int:
    """How many trials study `name` has so far (0: none, or no such study yet)."""
    summary = _summary(url, name)
    return summary.n_trials if summary else 0


def count(study: Any, *states: str) -> int:
    from optuna.trial import TrialState

    wanted = tuple(TrialState[s] for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


def finished(study: Any) -> int:
    """Trials that count towards `n_trials`: completed or pruned (failed ones are asked again)."""
    return count(study, "COMPLETE", "PRUNED")


def is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class Heartbeat:
    """Writes a heartbeat for each running trial every `every_s` (from the sweep's process:
    the job's process may be on another machine, or spawned)."""

    def __init__(self, storage: Any, every_s: float = HEARTBEAT_S) -> None:
        self.storage, self.trials, self.every_s = storage, set[int](), every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeat")
        self._thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        self.trials.add(trial_id)

    def remove(self, trial_id: int) -> None:
        self.trials.discard(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            for trial_id in list(self.trials):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # the database is busy: the next beat will do
                    log.debug("heartbeat of trial %d: %s", trial_id, exc)

    def close(self) -> None:
        self._stop.set()


def best_so_far(trials: Iterable[Any], maximize: bool, started: float) -> list[tuple[float, float]]:
    """(seconds since `started`, best value so far) at each completed trial's end (a pruned
    trial's value is an intermediate one: it never counts as best)."""
    points, best = [], None
    done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=_end)
    for trial in done:
        value = float(trial.value)
        if best is None or (value > best if maximize else value < best):
            best = value
        points.append((_end(trial) - started, best))
    return points


def _end(trial: Any) -> float:
    return trial.datetime_complete.timestamp()
