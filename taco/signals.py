"""Every signal handler taco sets, installed, held and restored here and nowhere else (as
Lightning's signal connector does it): what SIGTERM and Ctrl-C do in a command, a job, a sweep's
job process, an augmentation worker and during a store write, and the handlers a library puts in
that must be taken back out. A stopped job saves its checkpoint and closes its run KILLED; it
is never cut short mid-write or left RUNNING.

- `interrupts(prog)`: a command's outer frame (SIGTERM as Ctrl-C; one line and 128 + signal).
- `sigterm_as_interrupt()`: a job (its run closes KILLED on either signal).
- `held_interrupts()`: a store write (the signal is delivered when the write ends).
- `job_process()`, `worker_process()`: the first lines of a sweep's job process and of an
  augmentation worker.
- `handlers_kept()`: a library call that installs its own handlers (Ray's `init`).
- `stop_then(signum, then)`: a scheduler's warning signal stops the job, then `then` runs
  (submitit's requeue).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

STOPPING = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal (SIGTERM from a scheduler or `kill`) stopping a command as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def interrupt_once(signum: int, frame: Any) -> None:
    """Signal handler: the first SIGTERM or SIGINT stops the job; later ones (passed on by a
    sweep, or a terminal's Ctrl-C reaching the whole process group) must not cut short the
    checkpoint and run closing that follow."""
    for stopping in STOPPING:
        signal.signal(stopping, signal.SIG_IGN)
    raise Interrupted(signum)


def redeliver_lost_interrupts(unraisable: Any, next_hook: Any = None) -> None:
    """`sys.unraisablehook`: an interrupt raised while Python ran a finalizer (a `__del__`, a
    weakref callback: garbage collection runs them anywhere) cannot propagate, so Python prints
    it and goes on; the job would train on with its signals ignored. Raise it again instead: it
    lands in ordinary code a moment later."""
    error = unraisable.exc_value
    if isinstance(error, KeyboardInterrupt):
        signum = getattr(error, "signum", signal.SIGINT)
        signal.signal(signum, interrupt_once)  # armed again for this one delivery
        # from another thread, a moment later: raised here, it would be lost again
        later = threading.Timer(0.02, os.kill, (os.getpid(), signum))
        later.daemon = True
        later.start()
        return
    (next_hook or sys.__unraisablehook__)(unraisable)


def _main_thread() -> bool:
    """Signals reach the main thread only: elsewhere there is nothing to install."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`) stops the code inside as Ctrl-C does, so a run is closed
    KILLED, not left RUNNING, also when the signal lands inside a finalizer."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt_once)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: redeliver_lost_interrupts(unraisable, previous_hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def interrupts(prog: str, resume: str | Callable[[], str] | None = None) -> Iterator[None]:
    """SIGTERM stops the command as Ctrl-C does; either ends it with one line on stderr (how to
    resume, no traceback; `resume` is asked then, when the run's folders are known) and exit
    code 128 + signal: 130 for SIGINT, 143 for SIGTERM."""
    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        resume = resume() if callable(resume) else resume
        hint = f"; resume with: {resume}" if resume else ""
        print(f"{prog}: interrupted by {signal.Signals(signum).name}{hint}", file=sys.stderr)
        raise SystemExit(128 + signum) from None


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Ctrl-C or SIGTERM during a store write is held until the write ends, then delivered: a
    SQLite transaction cut short keeps the database locked, and the run could not be closed."""
    if not _main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in STOPPING}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])  # handled now, by the handler the job installed


@contextlib.contextmanager
def handlers_kept(signals: tuple[int, ...] = STOPPING) -> Iterator[None]:
    """The handlers of `signals` as they were before the code inside, which installs its own
    (Ray's `init` puts in a crash report)."""
    kept = {s: signal.getsignal(s) for s in signals}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def stop_then(signum: int, then: Callable[[int, Any], Any] | None) -> Iterator[None]:
    """`signum` (a scheduler's warning that the job's time is up) stops the code inside as
    SIGTERM does; once its checkpoint is saved and its run closed, `then(signum, None)` runs
    (submitit's requeue, which was `signum`'s handler) and the interrupt goes on."""
    if then is None:
        then = signal.getsignal(signum)
    warned: list[int] = []

    def stop(number: int, frame: Any) -> None:
        warned.append(number)
        interrupt_once(number, frame)

    signal.signal(signum, stop)
    try:
        yield
    except KeyboardInterrupt:
        if warned and callable(then):
            then(warned[0], None)
        raise


def job_process() -> None:
    """The first lines of a sweep's job process: it dies with the sweep, and either signal stops
    it once (checkpoint saved, run closed KILLED), also inside a finalizer."""
    die_with_parent(signal.SIGTERM)
    for stopping in STOPPING:
        signal.signal(stopping, interrupt_once)
    sys.unraisablehook = redeliver_lost_interrupts


def worker_process() -> None:
    """The first lines of an augmentation worker: Ctrl-C reaches the parent, which stops it;
    it dies with the parent, however the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)


def die_with_parent(signum: int) -> None:
    """Linux: `signum` to this process when its parent dies, however it dies (even by SIGKILL):
    no sweep job or augmentation worker outlives the process that started it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signum)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl: go now
            os.kill(os.getpid(), signum)
