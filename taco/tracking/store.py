"""The tracking store, checked before a run opens: a SQLite file that can be created (and is
created once, under a file lock, when many jobs start at the same moment), or a tracking server
that answers within seconds.

MLflow creates a new SQLite store's tables on first use; six processes doing that at once race
(`table experiments already exists`, `duplicate column name`). An unreachable server is retried
by MLflow for minutes before it gives up with pages of tracebacks.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from taco.errors import ConfigError, StoreError
from taco.files import file_lock, nearest_existing
from taco.tracking.console import quiet_mlflow
from taco.tracking.store_wait import damaged_store
from taco.tracking.tags import Tag

__all__ = ["StoreError", "ensure_store", "probe_server", "sqlite_path", "store_errors"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 4.0
PROBE_ATTEMPTS = 2


def artifact_location_for(tracking_uri: str) -> str | None:
    """Next to a SQLite store, so artifacts never land in whatever folder the job started in."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def get_or_create_experiment(client: Any, name: str) -> str:
    """The experiment's id, created (artifacts beside a SQLite store, opening on the training
    runs in the UI) when missing; a parallel job creating it at the same moment is no error."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(
            name,
            artifact_location=artifact_location_for(client.tracking_uri),
            tags=Tag.EXPERIMENT_KIND,
        )
    except Exception:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def ensure_store(uri: str) -> None:
    """Make `uri` usable or say in one line why it is not: create a SQLite store once (parallel
    first use included), or check that a tracking server answers."""
    db = sqlite_path(uri)
    if db is not None:
        _ensure_sqlite(uri, db)
    elif uri.startswith(("http://", "https://")):
        probe_server(uri)


def _ensure_sqlite(uri: str, db: Path) -> None:
    folder = nearest_existing(db.parent)
    if folder is not None and not folder.is_dir():
        raise ConfigError(
            f"MLflow store {uri}: {folder} is a file, not a folder; point "
            "MLFLOW_TRACKING_URI (or logger.tracking_uri) at a database in a folder"
        )
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"MLflow store {uri}: cannot create {db.parent} ({exc})") from None
    with file_lock(db.with_name(db.name + ".lock")):  # checked inside: never half-migrated
        _check_intact(uri, db)
        if not _initialised(db):
            _create_tables(uri)


def _check_intact(uri: str, db: Path) -> None:
    """A damaged database file (garbage written into it, cut short) is one line naming it and
    what to do, not MLflow's pages of tracebacks. (A locked one is fine: it is only busy.)"""
    if not db.is_file() or db.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            conn.execute("PRAGMA busy_timeout = 2000")
            result = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return
        result = (str(exc),)
    except sqlite3.DatabaseError as exc:
        result = (str(exc),)
    if result and result[0] != "ok":
        text = result[0] if "malformed" in result[0] else "database disk image is malformed"
        raise damaged_store(uri, Exception(text)) from None


@contextlib.contextmanager
def store_errors(uri: str, check: bool = True):
    """A damaged store met while reading or writing: one line naming it (for every CLI);
    `check`: look at the whole file first (False where `ensure_store` will). MLflow's own
    chatter is kept off the console from here on (`taco.tracking.console`)."""
    quiet_mlflow()
    db = sqlite_path(uri)
    if check and db is not None:
        _check_intact(uri, db)  # also where the damage lies in pages this command never reads
    try:
        yield
    except Exception as exc:
        damaged = damaged_store(uri, exc)
        if damaged is None:
            raise
        raise damaged from None


def _initialised(db: Path) -> bool:
    """True when MLflow's schema is complete (its migration version table is filled)."""
    if not db.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return False
    return bool(rows) and "experiments" in tables


def _create_tables(uri: str) -> None:
    import mlflow

    started = time.perf_counter()
    mlflow.MlflowClient(uri).search_experiments(max_results=1)  # runs MLflow's migrations
    log.info("created MLflow store %s in %.1f s", uri, time.perf_counter() - started)


def probe_server(uri: str) -> None:
    """One cheap MLflow API request (a few seconds at most), instead of MLflow's minutes of
    retries on the first write."""
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    reason = ""
    for _ in range(PROBE_ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S):
                return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # a server behind authentication: MLflow's client logs in
                return
            raise StoreError(
                f"{uri} answered HTTP {exc.code} to an MLflow API request: is it an MLflow "
                "tracking server? Check MLFLOW_TRACKING_URI (or logger.tracking_uri)"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
            time.sleep(0.5)
    raise StoreError(
        f"MLflow tracking server {uri} is not reachable ({reason}); start it (README: 'A team "
        "tracking server') or point MLFLOW_TRACKING_URI at a running one"
    )
