"""Batches made ahead, in order, by one thread, so the model's step never waits for the next one.

Keras asks for batch i, runs the step, then asks for batch i + 1. Without a thread, reading
batch i + 1 (a gather from the memory-mapped cache, or a copy out of the augmentation pool's
ring) starts only after the step was handed to the device, in the thread that hands it; on a GPU
the device then idles while the host reads. Here a thread makes the next `depth` batches while
the step runs, running on into the next epoch (whose order is as fixed as this one's).

A batch is a function of its key (epoch, index) alone, so making it ahead never changes what it
holds: when the consumer asks for anything but the next key (a resume, a limit, a jump), the
thread forgets what it made and starts over at that key. An error making a batch is raised to
the consumer when it asks for that batch, with its own traceback. The thread ends after
`idle_seconds` with nothing to do (a pass that ended) and starts again on the next request, or,
with `idle_seconds=None`, lives until `close()`: the thread that starts a process is its parent
for Linux's parent-death signal, so the thread that starts augmentation workers must outlive
them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

Key = tuple[int, int]  # (epoch, batch index)


class Feeder:
    """`produce(key)` run ahead in a thread; `get(key)` returns its result."""

    def __init__(
        self,
        produce: Callable[[Key], Any],
        successor: Callable[[Key], Key | None],
        depth: int = 2,
        idle_seconds: float | None = 2.0,
        name: str = "taco-feeder",
        on_start: Callable[[], None] | None = None,
        threaded: bool = True,
    ) -> None:
        self._produce, self._successor, self._on_start = produce, successor, on_start
        self.threaded = threaded  # False: made when asked, in the asking thread
        self.depth, self.idle_seconds, self.name = max(1, int(depth)), idle_seconds, name
        self._cond = threading.Condition()
        self._ready: OrderedDict[Key, tuple[bool, Any]] = OrderedDict()  # key -> (ok, value)
        self._cursor: Key | None = None  # the next key to make
        self._busy: Key | None = None  # the key being made (outside the lock)
        self._generation = 0  # a start-over: what an older generation makes is dropped
        self._thread: threading.Thread | None = None
        self._closed = False

    def get(self, key: Key) -> Any:
        """The batch of `key`: made ahead already, or made now (the thread starts over there)."""
        if not self.threaded:
            return self._produce(key)
        with self._cond:
            if self._closed:
                raise RuntimeError("the feeder was closed")
            while key not in self._ready:
                if key not in (self._busy, self._cursor) or self._thread_gone():
                    self._start_over(key)
                elif key == self._cursor and self._ready:
                    self._ready.clear()  # all made before `key`, which the consumer skipped
                    self._cond.notify_all()
                self._cond.wait(timeout=1.0)
                if self._closed:
                    raise RuntimeError("the feeder was closed")
            while True:  # anything made before `key` was skipped by the consumer
                first, (ok, value) = self._ready.popitem(last=False)
                if first == key:
                    break
            self._cond.notify_all()  # room for one more
        if not ok:
            raise value
        return value

    def expect(self, key: Key) -> None:
        """Start making `key` and what follows it now, unless that is already planned (an epoch
        about to start: its first batches are made while the last one is validated)."""
        with self._cond:
            if self._closed or self._thread is None:
                return  # not started: nothing has been read yet, the first `get` starts it
            if key not in self._ready and key not in (self._busy, self._cursor):
                self._start_over(key)

    def close(self, timeout: float = 10.0) -> None:
        """End the thread (within `timeout`: a batch being made is finished first)."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _thread_gone(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def _start_over(self, key: Key) -> None:
        """Forget what was made; make `key` next (called with the lock held)."""
        self._generation += 1
        self._ready.clear()
        self._cursor = key
        if self._thread_gone():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()  # e.g. onto the job's feed cores, out of the training's pin
        while True:
            with self._cond:
                idle = 0.0
                while not self._closed and (self._cursor is None or len(self._ready) >= self.depth):
                    if not self._cond.wait(timeout=1.0) and self.idle_seconds is not None:
                        idle += 1.0
                        if idle >= self.idle_seconds:
                            self._thread = None  # the next request starts another
                            return
                if self._closed:
                    self._thread = None
                    return
                key, generation = self._cursor, self._generation
                self._busy = key
            try:
                outcome = (True, self._produce(key))
            except BaseException as error:  # handed to the consumer that asks for `key`
                outcome = (False, error)
            with self._cond:
                self._busy = None
                if generation == self._generation and not self._closed:
                    self._ready[key] = outcome
                    self._cursor = self._successor(key) if outcome[0] else None
                self._cond.notify_all()
