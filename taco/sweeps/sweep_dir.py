"""A sweep's folder: one sweep at a time in it (a lock held while the sweep runs, naming its
holder), and the jobs an interrupted sweep never started, which its parent run names.

Only the standard library loads here: the sweep callback imports it for every command.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from taco.errors import ConfigError
from taco.tracking.tags import Tag

NOT_STARTED_FILE = "jobs_not_started.json"


def record_not_started(sweep_dir: Path, jobs: list[tuple[int, list[str]]]) -> None:
    """Jobs an interrupted sweep never started: named in its parent run (`failed_jobs`)."""
    if jobs:
        entries = [{"num": n, "overrides": " ".join(o)} for n, o in jobs]
        (sweep_dir / NOT_STARTED_FILE).write_text(json.dumps(entries))


def not_started(sweep_dir: Path | None, planned: list[list[str]], children: list[Any]) -> list[str]:
    """Jobs of the sweep without a run: those the launcher reported, and those of the planned
    grid (any launcher) that no child run stands for."""
    path = (sweep_dir or Path(".")) / NOT_STARTED_FILE
    reported = json.loads(path.read_text()) if path.is_file() else []
    entries = {e["num"]: e["overrides"] for e in reported}
    have = {c.data.tags.get(Tag.SWEEP_JOB) for c in children}
    for num, overrides in enumerate(planned):
        if str(num) not in have:
            entries.setdefault(num, " ".join(overrides))
    return [f"job #{num} [{entries[num]}]: not started" for num in sorted(entries)]


LOCK_FILE = ".taco_sweep.lock"
_HELD: dict[Path, Any] = {}  # this process's sweep dir locks (one sweep at a time per folder)


def held_sweep_dir() -> Path | None:
    """The folder of the sweep this process started last, if any (its resume line names it)."""
    return next(reversed(_HELD), None)


def hold_sweep_dir(sweep_dir: Path) -> Any:
    """One sweep per sweep dir: an exclusive lock held until this process ends (the kernel
    drops it even on SIGKILL, so a dead sweep's folder can be re-run), naming its holder."""
    try:
        import fcntl
    except ImportError:  # Windows: no check
        return None
    sweep_dir.mkdir(parents=True, exist_ok=True)
    earlier = _HELD.pop(sweep_dir.resolve(), None)
    if earlier is not None:  # an earlier sweep of this same process that ended without closing
        earlier.close()
    handle = open(sweep_dir / LOCK_FILE, "a+")  # noqa: SIM115  (held for the sweep's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} is in use by another sweep ({holder}): wait for it, "
            "or give this sweep its own folder (hydra.sweep.dir=...)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}, since {time.ctime()}\n")
    handle.flush()
    _HELD[sweep_dir.resolve()] = handle
    return handle


def release_sweep_dir(handle: Any) -> None:
    """The sweep ended: its folder is free for a re-run from now on."""
    handle.close()
    _HELD.pop(Path(handle.name).parent.resolve(), None)
