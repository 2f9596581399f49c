"""MLflow tracking: one run per job, explicit logging, a truthful end state.

`MLflowLogger.run()` opens a run and always closes it: FINISHED on success, FAILED (with the error
and traceback logged) on an exception, KILLED on Ctrl-C. `taco.tracking.base.NullLogger`
(`logger=none`) keeps the same interface and logs nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from taco.config import default_tracking_uri
from taco.errors import ConfigError
from taco.models.registry import INFO_NAME
from taco.process import native_noise_filtered
from taco.schema import NonNegative
from taco.signals import held_interrupts
from taco.tracking.base import BaseLogger
from taco.tracking.console import quiet_mlflow
from taco.tracking.datasets import mlflow_dataset
from taco.tracking.logged_model import log_pyfunc
from taco.tracking.provenance import process_tags
from taco.tracking.stale import written_by_another_process
from taco.tracking.store import StoreError, ensure_store, get_or_create_experiment
from taco.tracking.store_wait import (
    StoreWaiter,
    damaged_store,
    fail_fast_over_http,
    quiet_mlflow_store_errors,
)
from taco.tracking.sweep_run import MlflowSweepRun
from taco.tracking.tags import Tag

log = logging.getLogger(__name__)


class MLflowLogger(BaseLogger):
    """Logs one run to MLflow; a busy store is waited for (`taco.tracking.store_wait`)."""

    active = True

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str = "taco",
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        store_timeout: Annotated[float, NonNegative] = 600.0,
    ) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.store_timeout = float(store_timeout)
        self.run_id = None
        self.waiter: Any = None
        self._finished_before: Any = None  # a FINISHED run reopened: how it was
        self._logged_since_reopen = False  # an epoch logged since (data set-up is not one)

    def sweep_run(self) -> Any:
        return MlflowSweepRun(self.tracking_uri, self.experiment_name)

    def check(self) -> None:
        quiet_mlflow()  # every job, whichever launcher started it: only taco's lines
        ensure_store(self.tracking_uri)

    @contextlib.contextmanager
    def run(
        self, tags: Mapping[str, str] | None = None, run_id: str | None = None
    ) -> Iterator[MLflowLogger]:
        """A new run, or with `run_id` the same run reopened (a resumed training job)."""
        import mlflow

        quiet_mlflow_store_errors()
        fail_fast_over_http(self.tracking_uri)  # a server down: its writes kept, epochs go on
        self._finished_before, self._logged_since_reopen = None, False  # this run's, not the last
        self.waiter = StoreWaiter(self.tracking_uri, self.store_timeout)
        run = self._opened(mlflow, tags, run_id)
        self.run_id = run.info.run_id
        log.info("MLflow run %s in %s (%s)", self.run_id, self.experiment_name, self.tracking_uri)
        try:
            yield self
        except KeyboardInterrupt as exc:
            if not self._put_back_finished(exc):
                self._close_with_error("KILLED", f"interrupted ({exc or 'KeyboardInterrupt'})")
            raise
        except BaseException as exc:
            if not self._put_back_finished(exc):
                self._close_with_error("FAILED", f"{type(exc).__name__}: {exc}")
            raise
        try:
            self.waiter.flush(block=True)  # a store busy at the end: wait for it, in order
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            self._close_with_error(status, f"{type(exc).__name__}: {exc}")
            raise
        self._store("end_run", lambda: mlflow.end_run("FINISHED"), keep=False)

    def _opened(self, mlflow: Any, tags: Mapping[str, str] | None, run_id: str | None) -> Any:
        """The run, opened once the store lets it (busy: waited for up to `store_timeout`)."""
        opened: list[Any] = []
        outer = mlflow.active_run()

        def start() -> None:
            with held_interrupts():
                try:
                    opened.append(self._start(mlflow, tags, run_id))
                except BaseException:
                    current = mlflow.active_run()  # half opened by this try: not left open
                    if current is not None and current is not outer:
                        with contextlib.suppress(Exception):
                            mlflow.end_run("FAILED")
                    raise

        try:
            self.waiter.write("start_run", start, keep=False)
        except mlflow.exceptions.MlflowException as exc:  # the store refused: one line
            raise damaged_store(self.tracking_uri, exc) or StoreError(
                f"MLflow store {self.tracking_uri}: {exc}"
            ) from None
        return opened[-1]

    def _start(self, mlflow: Any, tags: Mapping[str, str] | None, run_id: str | None) -> Any:
        mlflow.set_tracking_uri(self.tracking_uri)
        client = mlflow.MlflowClient(self.tracking_uri)
        experiment_id = get_or_create_experiment(client, self.experiment_name)
        all_tags = {**self.tags, **{k: str(v) for k, v in (tags or {}).items()}, **process_tags()}
        if run_id is not None and not self._exists(client, run_id):
            log.warning("run %s is not in %s: logging to a new run", run_id, self.tracking_uri)
            run_id = None
        if run_id is not None:
            before = client.get_run(run_id)
            _refuse_live_run(before)
            self._finished_before = before if before.info.status == "FINISHED" else None
        if run_id is None:
            return mlflow.start_run(
                experiment_id=experiment_id, run_name=self.run_name, tags=all_tags
            )
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tags(all_tags)
        if "error" in run.data.tags:  # from the interruption being resumed
            mlflow.delete_tag("error")
        self.resumed = True
        return run

    @staticmethod
    def _exists(client: Any, run_id: str) -> bool:
        try:
            client.get_run(run_id)
        except Exception:
            return False
        return True

    def _store(self, label: str, call: Callable[[], Any], keep: bool) -> None:
        """One write, each try held against Ctrl-C; `keep`: a busy store keeps it for later
        (training goes on), else the write waits for the store."""

        def guarded() -> None:
            with held_interrupts():
                call()

        self.waiter.write(label, guarded, keep)

    def _put_back_finished(self, exc: BaseException) -> bool:
        """A FINISHED run reopened to continue it, failing before it logged an epoch (its
        checkpoint did not load): it is left as it was, status, end time and tags, since a
        failure of this process is not that run's history. True when put back."""
        before = self._finished_before
        if before is None or self._logged_since_reopen:
            return False
        import mlflow

        try:
            with held_interrupts():
                self.waiter.flush(block=False)
                client = mlflow.MlflowClient(self.tracking_uri)
                now = client.get_run(self.run_id).data.tags
                for key in set(now) - set(before.data.tags):
                    client.delete_tag(self.run_id, key)
                for key, value in before.data.tags.items():
                    if now.get(key) != value:
                        client.set_tag(self.run_id, key, value)
                mlflow.end_run("FINISHED")
                client.set_terminated(self.run_id, "FINISHED", end_time=before.info.end_time)
        except Exception as err:  # the store itself: close it as a failure after all
            log.warning("could not leave finished run %s as it was: %s", self.run_id, err)
            return False
        log.warning(
            "run %s had finished: left FINISHED as it was (%s: %s is not recorded in it)",
            self.run_id,
            type(exc).__name__,
            exc,
        )
        return True

    def _close_with_error(self, status: str, message: str) -> None:
        import mlflow

        try:
            # an error is recorded after what came before it; an interrupt does not wait
            self.waiter.flush(block=status != "KILLED")
            with held_interrupts():
                mlflow.set_tag("error", message[:4000])
                mlflow.log_text(traceback.format_exc(), "error/traceback.txt")
        except BaseException as exc:  # the store itself may be the problem: still close the run
            log.warning("could not log the error to MLflow: %s", exc)
        finally:
            with held_interrupts(), contextlib.suppress(Exception):
                mlflow.end_run(status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        values, run_id = {k: _param(v) for k, v in params.items()}, self.run_id
        self._store("params", lambda: mlflow.log_params(values, run_id=run_id), keep=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        values, run_id = {k: float(v) for k, v in metrics.items()}, self.run_id
        stamp = int(time.time() * 1000)  # when it was measured, also if it lands later
        self._logged_since_reopen |= step is not None  # an epoch trained: the run goes on

        def write() -> None:
            mlflow.log_metrics(values, step=step, run_id=run_id, timestamp=stamp)

        self._store("metrics", write, keep=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        values = {k: str(v) for k, v in tags.items()}
        self._store("tags", lambda: mlflow.set_tags(values), keep=True)

    def log_dict(self, data: Any, name: str) -> None:
        import mlflow

        text = json.dumps(data, indent=1, default=_jsonable)
        self._store(name, lambda: mlflow.log_text(text, name), keep=True)

    def log_text(self, text: str, name: str) -> None:
        import mlflow

        self._store(name, lambda: mlflow.log_text(text, name), keep=True)

    def log_figure(self, figure: Any, name: str) -> None:
        import mlflow

        self._store(name, lambda: mlflow.log_figure(figure, name), keep=False)

    def log_artifacts(self, folder: str | Path, name: str | None = None) -> None:
        import mlflow

        self._store(str(name or folder), lambda: mlflow.log_artifacts(str(folder), name), False)

    def log_dataset(self, record: Mapping[str, Any]) -> None:
        import mlflow

        dataset = mlflow_dataset(record)
        tags = {"split_seed": str(record.get("split_seed")), "fold": str(record.get("fold", 0))}
        self._store("dataset", lambda: mlflow.log_input(dataset, "training", tags), keep=True)

    def log_model(self, folder: Path, example: Any) -> None:
        info = json.loads((Path(folder) / INFO_NAME).read_text())

        def write() -> None:
            with native_noise_filtered():  # MLflow loads the model once to check the example
                uri = log_pyfunc(Path(folder), example, info)
            log.info("model logged: runs:/%s/model (%s)", self.run_id, uri)

        self._store("model", write, keep=False)


def _refuse_live_run(run: Any) -> None:
    """Never write into a run another live process is writing (it would end FINISHED carrying
    this process's error)."""
    pid = written_by_another_process(run)
    if pid is not None:
        raise ConfigError(
            f"run {run.info.run_id} is still being written by process {pid} on "
            f"{run.data.tags[Tag.HOST]}: resume it once that process has ended"
        )


def _param(value: Any) -> str:
    text = json.dumps(value, default=_jsonable) if isinstance(value, list | dict) else str(value)
    return text[:6000]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
