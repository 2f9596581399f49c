"""Checkpoints: the `.ckpt` file (an uncompressed npz), how `ckpt_path` finds one, and the
connector that saves and restores a Trainer's whole state (like Lightning's).

A checkpoint holds the classifier's full training state (weights, optimizer slots, random
generator states, training stage) as arrays, plus JSON metadata: the epochs completed, every
callback's state under its own key, the MLflow run id to continue and the config fingerprint it
was trained with. It is written to a temporary name and moved into place, so a kill mid-write
leaves the previous one intact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from taco.config import flatten
from taco.errors import ConfigError, DataError, TacoError
from taco.files import disk_full_error, pid_alive

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)

LAST = "last.ckpt"
BEST = "best.ckpt"
COMPLETE = "COMPLETE"  # written beside last.ckpt when the run finished: nothing to resume
OWNER = "OWNER"  # beside last.ckpt while a process trains: {"host", "pid"}; a live one is not taken
# an owner on another host cannot be asked: it is taken as alive while it touched OWNER (every
# epoch) this recently, so a job requeued on another node (SLURM) still resumes its checkpoint
FOREIGN_OWNER_FRESH_S = 30 * 60
FORMAT = 2  # 2: callback states keyed by `Callback.state_key`
_META = "__meta__"


@dataclass
class Resume:
    """What `ckpt_path` resolved to, before a run opens: a checkpoint to continue in its own
    MLflow run, or (a re-run sweep's job) a finished run to take as it is, or nothing to do."""

    path: Path | None = None
    run_id: str | None = None  # the MLflow run the checkpoint belongs to
    epoch: int = 0
    finished_run: dict | None = None  # metadata of a finished run of this job (sweeps only)


class CheckpointConnector:
    """Saves and restores everything a Trainer needs to continue a fit exactly; resolves
    `ckpt_path` (a file, a folder or `last`) against the trainer's config fingerprint, refusing a
    live run's checkpoint; carries the best epoch along (`ModelCheckpoint`)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def resolve(
        self, ckpt_path: str, search_dirs: Sequence[Path], in_sweep: bool, store: str | None = None
    ) -> Resume:
        """`ckpt_path` -> what to resume. In a sweep, `last` finishes only what is unfinished:
        an interrupted job resumes, a finished one is taken as it is, one never started starts.
        `last` takes only checkpoints of runs in `store` (the job's tracking store)."""
        trainer = self.trainer
        try:
            path, meta = resolve(str(ckpt_path), search_dirs, trainer.fingerprint, store)
        except NothingToResume:
            if not in_sweep:
                raise
            finished = find_finished(search_dirs, trainer.fingerprint, trainer.max_epochs, store)
            log.info("ckpt_path=last: %s", "finished before" if finished else "starting")
            return Resume(finished_run=finished)
        log.info("resuming %s after epoch %d", path, meta["epoch"])
        return Resume(path, meta.get("run_id"), int(meta["epoch"]))

    def save(self, path: Path) -> Path:
        """The full training state after `trainer.epochs_completed` epochs, atomically."""
        trainer = self.trainer
        meta = {
            "epoch": trainer.epochs_completed,
            "max_epochs": trainer.max_epochs,
            "classifier": trainer.classifier.kind,
            "run_id": trainer.logger.run_id,
            "tracking_uri": trainer.logger.tracking_uri,  # `last` takes only its store's runs
            "fingerprint": trainer.fingerprint,
            "callbacks": {
                key: cb.state_dict() for key, cb in callbacks_by_state_key(trainer.callbacks)
            },
        }
        with trainer.profiler.section("checkpoint"):
            return write(path, trainer.classifier.checkpoint_state(), meta)

    def restore(self, classifier: BaseClassifier, path: Path) -> int:
        """BaseClassifier and callback states from `path`; returns the epochs it had completed."""
        arrays, meta = read(path)
        if meta.get("classifier") != classifier.kind:
            raise ConfigError(
                f"ckpt_path={path}: a {meta.get('classifier')} checkpoint cannot resume a "
                f"{classifier.kind} model"
            )
        with self.trainer.scope():
            classifier.load_checkpoint_state(arrays, source=path)
        states = meta.get("callbacks", {})
        for key, cb in callbacks_by_state_key(self.trainer.callbacks):
            if key in states:
                cb.load_state_dict(states[key])
        self.trainer.ckpt_path = path
        log.info("resumed from %s after epoch %d", path, meta["epoch"])
        return int(meta["epoch"])

    def mark_finished(self, folder: Path | None) -> None:
        """The run finished: its checkpoints (in `folder`) and the one it resumed from are no
        longer `last` (a re-run sweep takes its result instead)."""
        if folder is not None:
            (folder / COMPLETE).write_text("the run of last.ckpt finished\n")
        if self.trainer.ckpt_path is not None:
            (self.trainer.ckpt_path.parent / COMPLETE).write_text("resumed and finished\n")

    def load_weights(self, path: Path) -> None:
        """The weights of a checkpoint (the best epoch), leaving the training state alone."""
        arrays, _ = read(path)
        with self.trainer.scope():
            self.trainer.classifier.load_checkpoint_state(arrays, source=path, weights_only=True)


def claim(folder: Path) -> None:
    """Mark `folder`'s checkpoints as this process's while it trains (`release` at the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid()}
    (folder / OWNER).write_text(json.dumps(owner))


def release(folder: Path) -> None:
    if live_owner(folder) is None:  # ours (or a dead process's): nothing trains here now
        (folder / OWNER).unlink(missing_ok=True)


def heartbeat(folder: Path) -> None:
    """The owner is still training (read by other hosts, which cannot check its pid)."""
    with contextlib.suppress(OSError):
        os.utime(folder / OWNER)


def live_owner(folder: Path) -> str | None:
    """'process P on H' when another process that is still alive trains into `folder`, else None
    (one on another host: alive while its heartbeat is fresh)."""
    try:
        owner = json.loads((folder / OWNER).read_text())
        host, pid = str(owner["host"]), int(owner["pid"])
        age = time.time() - (folder / OWNER).stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname():
        if pid == os.getpid() or not pid_alive(pid):
            return None
    elif age > FOREIGN_OWNER_FRESH_S:
        return None
    return f"process {pid} on {host}"


def callbacks_by_state_key(callbacks: Sequence[Any]) -> list[tuple[str, Any]]:
    """(state key, callback): each callback's `state_key`, numbered when it repeats."""
    seen: dict[str, int] = {}
    out = []
    for cb in callbacks:
        key = cb.state_key
        seen[key] = seen.get(key, 0) + 1
        out.append((key if seen[key] == 1 else f"{key}#{seen[key]}", cb))
    return out


def write(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    blob = np.frombuffer(json.dumps({"format": FORMAT, **meta}).encode(), dtype=np.uint8)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **{_META: blob}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: one line, and no temporary file left on it
        tmp.unlink(missing_ok=True)  # first: the free space reported is what is really free
        raise disk_full_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_meta(path: Path) -> dict:
    """The metadata alone (the arrays are not read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data[_META]).decode())
    except FileNotFoundError:
        raise ConfigError(f"ckpt_path: no checkpoint at {path}") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable taco checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(
            f"{path} was written by an earlier taco (checkpoint format {meta.get('format')}, "
            f"this one reads {FORMAT}): start the run afresh without ckpt_path, or resume it "
            "with the taco version that wrote it"
        )
    return meta


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    meta = read_meta(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != _META}
    return arrays, meta


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption, flattened."""
    keys = ("model", "dataset", "augmentation", "seed")
    return flatten({k: config.get(k) for k in keys})


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(current))
    return [
        f"{k}: {stored.get(k)!r} in the checkpoint, {current.get(k)!r} now"
        for k in keys
        if json.dumps(stored.get(k), default=str) != json.dumps(current.get(k), default=str)
    ]


def last_files(search_dirs: Iterable[Path], complete: bool) -> list[Path]:
    """Every `last.ckpt` under `search_dirs` of finished (`complete`) or unfinished runs,
    newest first (not opened)."""
    found = {p for d in search_dirs if d.is_dir() for p in d.rglob(LAST)}
    chosen = [p for p in found if (p.parent / COMPLETE).exists() == complete]
    return sorted(chosen, key=lambda p: p.stat().st_mtime, reverse=True)


def last_checkpoints(
    search_dirs: Iterable[Path], complete: bool, store: str | None = None
) -> dict[Path, dict]:
    """`last_files` that can be read, with their metadata; those of a live run are skipped
    (a checkpoint belongs to the process that writes it), and those whose run is in another
    tracking store than `store` (its run id means nothing here)."""
    metas = {}
    for path in last_files(search_dirs, complete):
        owner = live_owner(path.parent)
        if owner is not None:
            log.warning("ckpt_path=last skips %s: %s is still training it", path, owner)
            continue
        meta = _readable_meta(path)
        if meta is None:
            continue
        if meta.get("tracking_uri", store) != store:
            log.debug("ckpt_path=last skips %s: its run is in %s", path, meta["tracking_uri"])
            continue
        metas[path] = meta
    return metas


def find_finished(
    search_dirs: Iterable[Path],
    current: Mapping[str, Any],
    max_epochs: int,
    store: str | None = None,
) -> dict | None:
    """The metadata of the newest finished run of this config and length, if any: a re-run
    sweep (`ckpt_path=last`) takes its result instead of training it again."""
    for meta in last_checkpoints(search_dirs, complete=True, store=store).values():
        same = not differences(meta.get("fingerprint", {}), current)
        if same and meta.get("max_epochs") == max_epochs and meta.get("run_id"):
            return meta
    return None


def resolve(
    ckpt_path: str,
    search_dirs: Iterable[Path],
    current: Mapping[str, Any],
    store: str | None = None,
) -> tuple[Path, dict]:
    """`last` (the newest unfinished `last.ckpt` trained with this config) or a file/folder;
    returns the checkpoint and its metadata (read once)."""
    if str(ckpt_path) != "last":
        path = Path(ckpt_path).expanduser()
        if path.is_dir():
            path = path / LAST if (path / LAST).is_file() else path / "checkpoints" / LAST
        meta = read_meta(path)
        owner = live_owner(path.parent)
        if owner is not None:
            raise ConfigError(
                f"ckpt_path={ckpt_path}: {owner} is still training this checkpoint; wait for it "
                "to end or stop it first (a checkpoint belongs to the process that writes it)"
            )
        diff = differences(meta.get("fingerprint", {}), current)
        if diff:
            raise ConfigError(
                f"ckpt_path={ckpt_path}: the checkpoint was trained with a different config:\n  "
                + "\n  ".join(diff[:10])
                + "\nresume with the overrides of the interrupted run"
            )
        return path, meta
    unfinished = last_checkpoints(search_dirs, complete=False, store=store)
    for path, meta in unfinished.items():
        if not differences(meta.get("fingerprint", {}), current):
            return path, meta
    where = ", ".join(str(d) for d in search_dirs)
    if unfinished:  # compared with the closest one: the same job, run with a changed key
        diffs = {p: differences(m.get("fingerprint", {}), current) for p, m in unfinished.items()}
        closest = min(diffs, key=lambda p: len(diffs[p]))  # ties: the newest (listed first)
        raise NothingToResume(
            f"ckpt_path=last: no interrupted run with this config under {where}; the closest "
            f"({closest}) differs:\n  " + "\n  ".join(diffs[closest][:10])
        )
    finished = last_files(search_dirs, complete=True)
    raise NothingToResume(
        f"ckpt_path=last: no interrupted run to resume under {where}"
        + (f" ({len(finished)} finished run(s) found)" if finished else "")
        + "; pass ckpt_path=<path to a .ckpt> to continue a finished one"
    )


class NothingToResume(ConfigError):
    """`ckpt_path=last` found no interrupted run of this config (in a sweep: start it)."""


def _readable_meta(path: Path) -> dict | None:
    """A candidate for `last`: its metadata, or None (skipped, with a warning) when unreadable
    or of another format, so one bad file does not block resuming every other run."""
    try:
        return read_meta(path)
    except TacoError as exc:
        log.warning("ckpt_path=last skips %s: %s", path, exc)
        return None
