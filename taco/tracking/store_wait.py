"""Writes that wait for a busy store: a SQLite file another process holds locked, or a tracking
server restarting, must not kill hours of training.

A write the store refuses for a passing reason is kept, in order, and tried again with backoff;
metrics, params and tags are kept while training goes on, any other write waits for the store.
Only a store still unusable after `logger.store_timeout` seconds of waiting fails the run, in one
line. A damaged store (not a busy one) is refused at once, naming the file and what to do.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from taco.errors import StoreError

log = logging.getLogger(__name__)

FIRST_DELAY_S, MAX_DELAY_S = 0.5, 30.0  # each refused SQLite write itself waits 20 s (MLflow)
_PASSING = (
    "database is locked",
    "database table is locked",
    "temporarily_unavailable",
    "connection refused",
    "max retries exceeded",
    "remote end closed connection",
    "connection reset",
    "connection aborted",
    "response code 502",
    "response code 503",
    "response code 504",
    # two jobs logging the same dataset at once: MLflow looks it up, then inserts it, so the
    # later insert collides with the earlier; tried again, it finds the dataset and links it
    "unique constraint failed: datasets.",
)
_DAMAGED = ("database disk image is malformed", "file is not a database")


def is_passing(exc: BaseException) -> bool:
    """A busy or briefly unreachable store: worth waiting for."""
    text = f"{getattr(exc, 'error_code', '')} {exc}".lower()
    return any(p in text for p in _PASSING)


def damaged_store(uri: str, exc: BaseException) -> StoreError | None:
    """A damaged SQLite store as one line naming the file and the ways out, else None."""
    if not any(d in str(exc).lower() for d in _DAMAGED):
        return None
    db = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else uri
    return StoreError(
        f"MLflow store {db} is damaged ({next(d for d in _DAMAGED if d in str(exc).lower())}): "
        f"restore it from a backup, or save what SQLite can read with `sqlite3 {db} .recover | "
        f"sqlite3 recovered.db` then `mlflow db upgrade sqlite:///recovered.db` and point "
        "MLFLOW_TRACKING_URI at it; or start a new store (move the file away)"
    )


# over HTTP: MLflow's own retries (7, backing off up to 2 minutes) would hold the training thread
# inside one write for minutes while the server is down; with these a write the server does not
# answer fails in seconds and the waiter keeps it, so epochs go on (a user's own values are kept)
HTTP_FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def fail_fast_over_http(uri: str) -> None:
    """A tracking server that does not answer: its writes fail within seconds, to be kept."""
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_FAIL_FAST.items():
            os.environ.setdefault(name, value)


class StoreWaiter:
    """Runs one run's writes in order, keeping those a busy store refused until it answers."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.uri, self.timeout = uri, float(timeout)
        self.pending: collections.deque[tuple[str, Callable[[], Any]]] = collections.deque()
        self.busy_since: float | None = None
        self.next_try = 0.0
        self.delay = FIRST_DELAY_S
        self.reason = ""
        self.kept = 0  # writes kept since the store last answered

    def write(self, label: str, call: Callable[[], Any], keep: bool) -> None:
        """`call` now, or (store busy) kept: `keep` lets training go on, else this waits."""
        if self.pending:
            self.flush(block=not keep)
        if self.pending:  # still busy: in line behind the others
            self.pending.append((label, call))
            self.kept += 1
            return
        try:
            call()
        except Exception as exc:
            self._refused(exc)
            self.pending.append((label, call))
            self.kept += 1
            if not keep:
                self.flush(block=True)

    def flush(self, block: bool) -> None:
        """Every kept write, in order; `block`: wait for the store up to `timeout` seconds."""
        started = time.monotonic()
        while self.pending:
            now = time.monotonic()
            if now < self.next_try:
                if not block:
                    return
                if now - started >= self.timeout:
                    raise self.gave_up(now - started)
                time.sleep(min(self.next_try - now, max(self.timeout - (now - started), 0.01)))
                continue
            label, call = self.pending[0]
            try:
                call()
            except Exception as exc:
                try:
                    self._refused(exc)
                except BaseException:
                    self.pending.popleft()  # refused for good: not tried again at closing
                    raise
                if block and time.monotonic() - started >= self.timeout:
                    raise self.gave_up(time.monotonic() - started) from None
                continue
            self.pending.popleft()
            if not self.pending:
                self._answered()

    def _refused(self, exc: Exception) -> None:
        """A passing refusal schedules the next try; anything else is raised (one line when
        the store is damaged or its disk is full)."""
        damaged = damaged_store(self.uri, exc)
        if damaged is not None:
            raise damaged from None
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"MLflow store {self.uri}: its disk is full ({exc})") from None
        if not is_passing(exc):
            raise exc
        now = time.monotonic()
        self.reason = str(exc).splitlines()[0][:200]
        if self.busy_since is None:
            self.busy_since = now
            self.delay = FIRST_DELAY_S
            log.warning(
                "MLflow store %s is busy (%s): training goes on, its writes are kept and tried "
                "again (logger.store_timeout=%gs at the end)",
                self.uri,
                self.reason,
                self.timeout,
            )
        self.next_try = now + self.delay
        self.delay = min(self.delay * 2, MAX_DELAY_S)

    def _answered(self) -> None:
        if self.busy_since is not None:
            log.warning(
                "MLflow store %s answers again after %.0f s: the %d kept write(s) landed in order",
                self.uri,
                time.monotonic() - self.busy_since,
                self.kept,
            )
        self.busy_since, self.next_try, self.delay = None, 0.0, FIRST_DELAY_S
        self.kept = 0

    def gave_up(self, waited: float) -> StoreError:
        busy = time.monotonic() - self.busy_since if self.busy_since is not None else waited
        return StoreError(
            f"MLflow store {self.uri} still refused writes after waiting {waited:.0f} s at the "
            f"end (logger.store_timeout={self.timeout:g}s; busy for {busy:.0f} s in all: "
            f"{self.reason}); {len(self.pending)} write(s) not logged. The checkpoint is kept: "
            "resume with ckpt_path=last once the store answers"
        )


class _QuietLockErrors(logging.Filter):
    """MLflow logs a full traceback for every refused SQLite write; the waiter reports them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SQLAlchemy database error" not in str(record.msg)


def quiet_mlflow_store_errors() -> None:
    target = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _QuietLockErrors) for f in target.filters):
        target.addFilter(_QuietLockErrors())
