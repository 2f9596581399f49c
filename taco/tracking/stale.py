"""Runs left RUNNING by a process that is gone (`kill -9`, a crashed node, a lost SSH session):
found from the host and pid every run records, reported by `taco-compare`, and closed FAILED by
`taco-compare --close-stale`."""

from __future__ import annotations

import os
import socket
from typing import Any

from taco.files import pid_alive
from taco.tracking.tags import Tag


def _local_pid(run: Any, host: str | None = None) -> int | None:
    """The pid that writes a run, when it writes it on this host (else None: not checkable)."""
    tags = run.data.tags
    pid = tags.get(Tag.PID, "")
    here = host or socket.gethostname()
    return int(pid) if tags.get(Tag.HOST) == here and pid.isdigit() else None


def is_stale(run: Any, host: str | None = None) -> bool:
    """RUNNING, written on this host by a process that no longer exists. (A run from another
    host cannot be checked from here: it is never called stale.)"""
    pid = _local_pid(run, host)
    return run.info.status == "RUNNING" and pid is not None and not pid_alive(pid)


def written_by_another_process(run: Any) -> int | None:
    """The pid of another live process of this host still writing this RUNNING run, or None."""
    pid = _local_pid(run)
    alive = pid is not None and pid != os.getpid() and pid_alive(pid)
    return pid if run.info.status == "RUNNING" and alive else None


def describe(run: Any) -> str:
    """One line naming a job that did not finish, and why."""
    tags = run.data.tags
    what = f"job #{tags[Tag.SWEEP_JOB]}" if Tag.SWEEP_JOB in tags else f"run {run.info.run_id}"
    line = f"{what} [{tags.get(Tag.HYDRA_OVERRIDES, '')}]: {run.info.status}"
    if is_stale(run):
        line += f" (stale: process {tags[Tag.PID]} on {tags[Tag.HOST]} is gone)"
    elif tags.get("error"):
        line += f" ({tags['error'][:200]})"
    return line


def stale_runs(client: Any) -> list[Any]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(
        experiments, filter_string="attributes.status = 'RUNNING'", max_results=50000
    )
    return [r for r in running if is_stale(r)]


def close_stale(client: Any) -> list[Any]:
    """Close every stale run FAILED, naming the gone process; returns them."""
    closed = stale_runs(client)
    for run in closed:
        tags = run.data.tags
        reason = f"stale: its process {tags[Tag.PID]} on {tags[Tag.HOST]} is gone"
        client.set_tag(run.info.run_id, "error", reason)
        client.set_terminated(run.info.run_id, "FAILED")
    return closed
