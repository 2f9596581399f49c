"""Augmentation in worker processes that write uint8 batches into a shared-memory ring.

Threads do not scale past the GIL and Keras' own process pool pickles every batch through a
queue; here each worker reads the memory-mapped image cache itself and writes the augmented
batch into one slot of a ring in shared memory, so only a slot number, a few row indices and a
seed cross a queue per batch. What a batch holds depends only on its seed, i.e. on (seed,
epoch, batch index): the same with 0, 1 or 16 workers, whatever finishes first.

Nothing is left behind: workers die with the parent (Linux `PR_SET_PDEATHSIG`, even when the
parent is SIGKILLed) and ignore Ctrl-C (the parent stops them), and the ring's name is unlinked
from `/dev/shm` as soon as every worker has mapped it, so even a SIGKILL frees it.

The pool heals: a worker that dies (the OOM killer, a `kill -9`) is replaced, mapping the ring
through the parent's open descriptor, and the batch it was writing is handed out again with the
same seed, so the run's numbers are those it would have had; a batch that kills
`MAX_DEATHS_PER_BATCH` workers fails the run in one line.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import DataError
from taco.signals import worker_process

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (epoch, batch index)
MAX_DEATHS_PER_BATCH = 3  # a batch that kills this many workers fails the run
MAX_REPLACEMENTS = 10  # so do this many deaths in one pool, whatever batches they held


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one batch: a function of (seed, epoch, index) alone."""
    return int(np.random.SeedSequence([seed, epoch, index, 1]).generate_state(1)[0])


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cached images of `rows`, in that order: one copy, row by row in file order (memory-map
    friendly; a fancy-indexed gather and its reordering copied twice, at half the speed)."""
    rows = np.asarray(rows)
    out = np.empty((len(rows), *images.shape[1:]), images.dtype)
    source = np.asarray(images)  # a memory map's plain view: its rows index faster
    for j in np.argsort(rows, kind="stable"):
        out[j] = source[rows[j]]
    return out


def augment_into(augment: Callable[..., dict], images: np.ndarray, seed: int, out: Any) -> None:
    """Augment `images` one by one into `out`, from `seed` alone: the pool's workers and the
    in-process path call this same function, so both give the same batch."""
    if hasattr(augment, "set_random_seed"):
        augment.set_random_seed(seed)
    for i, image in enumerate(images):
        result = augment(image=image)["image"]
        if result.shape != image.shape:
            raise ValueError(
                f"the augmentation turned a {image.shape} image into {result.shape}: it must keep "
                "the image size (e.g. RandomResizedCrop size = model.image_size)"
            )
        out[i] = result


class AugmentPool:
    """`workers` processes and a ring of `slots` batches of `batch_shape` uint8 images.

    `submit(key, rows, seed)` hands a batch to whichever worker is free; `take(key)` waits for
    it and returns a copy (the ring slot is free again at once: the consumer, Keras, may keep
    the array or alias it in a device buffer for as long as it likes).
    """

    def __init__(
        self,
        cache_path: Path,
        augment: Callable[..., dict],
        batch_shape: tuple[int, ...],
        workers: int,
        slots: int,
        cores: list[int] | None = None,
    ) -> None:
        self.batch_shape, self.slots = tuple(batch_shape), int(slots)
        size = int(np.prod(batch_shape)) * self.slots
        self._shm = shared_memory.SharedMemory(create=True, size=max(size, 1))
        self._ring = np.ndarray((self.slots, *self.batch_shape), np.uint8, buffer=self._shm.buf)
        ctx = mp.get_context("spawn")  # no fork of a process that runs TensorFlow or XLA threads
        # one task queue and one result pipe per worker: who writes what is known, and a worker
        # killed mid-write holds no lock the others need (a shared queue's lock would stay taken)
        self._queues: list[Any] = []
        self._results: list[Any] = []  # the parent's reading ends, None once at end of file
        self._senders: list[Any] = []  # the workers' writing ends, closed here once started
        self._free = list(range(self.slots))
        self._pending: dict[Key, int] = {}  # submitted, not taken yet
        self._tickets: dict[int, tuple[int, np.ndarray, int, Key]] = {}  # in flight
        self._assigned: dict[int, int] = {}  # ticket -> index of the worker it was handed to
        self._deaths: dict[int, int] = {}  # ticket -> workers that died writing it
        self._next_ticket = 0
        self._replaced = 0  # workers replaced so far
        self._done: dict[int, str | None] = {}  # slot -> error text (None: fine)
        self._stale: set[int] = set()  # slots of batches no longer wanted, still being written
        self._lock = threading.RLock()
        self._ready = 0
        self._closed = False
        # per worker: batches, seconds reading rows from the cache, seconds augmenting them
        self._timing: list[list[float]] = [[0, 0.0, 0.0] for _ in range(int(workers))]
        # a replacement worker maps the (by then unlinked) ring through this process's descriptor
        ring = (
            self._shm.name,
            f"/proc/{os.getpid()}/fd/{getattr(self._shm, '_fd', -1)}",
            self._shm.size,
        )
        # the job's feed cores (`taco.process.feed_cores`): a worker leaves the training's pin
        self._args = (str(cache_path), ring, self.slots, self.batch_shape, augment, cores)
        self._ctx = ctx
        self._last_check = time.monotonic()
        self._procs = [self._new_worker(i) for i in range(int(workers))]
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._queues, self._shm)
        try:
            for index in range(len(self._procs)):
                self._start(index)
        except Exception as exc:
            self.close()
            raise RuntimeError(
                f"could not start augmentation workers ({type(exc).__name__}: {exc}); "
                "set dataset.num_workers=0 to augment in the training process"
            ) from exc

    def _new_worker(self, index: int) -> Any:
        """Worker `index` with a new task queue and result pipe of its own (a dead one's are
        dropped)."""
        tasks = self._ctx.Queue()
        receive, send = self._ctx.Pipe(duplex=False)
        if index < len(self._queues):
            old, self._queues[index] = self._queues[index], tasks
            with contextlib.suppress(Exception):
                old.close()
            if self._results[index] is not None:
                self._results[index].close()
            self._results[index], self._senders[index] = receive, send
        else:
            self._queues.append(tasks)
            self._results.append(receive)
            self._senders.append(send)
        return self._ctx.Process(target=_work, args=(*self._args, tasks, send), daemon=True)

    def _start(self, index: int) -> None:
        """Start worker `index`; its pipe's writing end then lives in the worker alone, so its
        death reads as the end of the pipe here."""
        self._procs[index].start()
        self._senders[index].close()

    def _hand_out(self, ticket: int) -> None:
        """To the worker with the fewest batches in hand."""
        load = [0] * len(self._procs)
        for index in self._assigned.values():
            load[index] += 1
        index = min(range(len(load)), key=load.__getitem__)
        self._assigned[ticket] = index
        self._queues[index].put((ticket, *self._tickets[ticket][:3]))

    def wanted(self, key: Key) -> bool:
        return key in self._pending

    def submit(self, key: Key, rows: np.ndarray, seed: int) -> bool:
        """Queue one batch; False when every slot is busy (try again after a `take`)."""
        with self._lock:
            if key in self._pending:
                return True
            if not self._free:
                self._collect(block=False)
            if not self._free:
                return False
            slot = self._free.pop()
            self._pending[key] = slot
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            self._tickets[ticket] = (slot, np.asarray(rows, np.int64), int(seed), key)
            self._hand_out(ticket)
            return True

    def drop_except(self, keep: Callable[[Key], bool]) -> None:
        """Forget submitted batches `keep` rejects (another epoch's): their slots come back
        once their workers finish writing them."""
        with self._lock:
            for key in [k for k in self._pending if not keep(k)]:
                slot = self._pending.pop(key)
                if slot in self._done:
                    del self._done[slot]
                    self._free.append(slot)
                else:
                    self._stale.add(slot)

    def timing(self) -> dict[str, float]:
        """What the workers did so far: batches, and CPU seconds spent reading their rows from
        the cache and augmenting them into the ring, summed over workers (a benchmark divides
        by the wall time and the worker count: how busy they were, and on what)."""
        with self._lock:
            rows = [list(row) for row in self._timing]
        batches, read, augment = (sum(row[i] for row in rows) for i in range(3))
        return {"workers": len(self._procs), "batches": batches, "read": read, "augment": augment}

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Until every worker has started and mapped the ring."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._ready < len(self._procs):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"augmentation workers not ready after {timeout:.0f} s")
                self._check_alive()
                readable = [r for r in self._results if r is not None]
                for conn in wait_for(readable, timeout=0.5) if readable else []:
                    self._receive(conn)

    def wait(self) -> None:
        """Until one more batch is written (a stale one frees its slot)."""
        with self._lock:
            self._collect(block=True)

    def take(self, key: Key, count: int) -> np.ndarray:
        """The first `count` images of the batch submitted as `key`, as a new array."""
        with self._lock:
            slot = self._pending[key]
            while slot not in self._done:
                self._collect(block=True)
            error = self._done.pop(slot)
            del self._pending[key]
            if error is None:
                batch = self._ring[slot, :count].copy()
            self._free.append(slot)
        if error is not None:
            raise RuntimeError(f"augmentation worker failed on batch {key[1]}:\n{error}")
        return batch

    def _collect(self, block: bool) -> None:
        """Move finished slots to done (or free, for stale ones); when `block`, wait for at
        least one, checking that the workers are alive."""
        while True:
            if time.monotonic() - self._last_check > 0.5:  # a dead worker is noticed at once
                self._check_alive()
            readable = [r for r in self._results if r is not None]
            ready = wait_for(readable, timeout=0.5 if block else 0) if readable else []
            if not ready:
                if not block:
                    return
                self._check_alive()
                continue
            finished = False
            for conn in ready:
                finished = self._receive(conn) or finished
            if block and finished:
                return

    def _receive(self, conn: Any) -> bool:
        """One message of a worker; True when it finished a batch."""
        try:
            kind, ticket, detail, timing = conn.recv()
        except (EOFError, OSError):  # its worker died: `_check_alive` replaces it
            self._results[self._results.index(conn)] = None
            conn.close()
            self._last_check = 0.0
            return False
        if kind == "ready":
            self._ready += 1
            if self._ready >= len(self._procs):
                self._unlink()
            return False
        if ticket not in self._tickets:  # a batch done twice (its first writer died late)
            return False
        slot, error = self._tickets.pop(ticket)[0], detail
        worker = self._assigned.pop(ticket, None)
        if timing is not None and worker is not None:
            row = self._timing[worker]
            row[0], row[1], row[2] = row[0] + 1, row[1] + timing[0], row[2] + timing[1]
        if slot in self._stale:
            self._stale.discard(slot)
            self._free.append(slot)
        else:
            self._done[slot] = error
        return True

    def _check_alive(self) -> None:
        """A dead worker is replaced and the batch it was writing handed out again (same seed:
        the same numbers); a batch that keeps killing its workers fails the run."""
        if self._closed:
            raise RuntimeError("the augmentation pool was closed")
        self._last_check = time.monotonic()
        for index, proc in enumerate(self._procs):
            if not proc.is_alive():
                self._replace(index, proc)

    def _replace(self, index: int, proc: Any) -> None:
        self._replaced += 1
        if self._replaced >= MAX_REPLACEMENTS:
            raise DataError(
                f"augmentation workers died {self._replaced} times (last exit code "
                f"{proc.exitcode}): out of memory? Lower dataset.num_workers, or set it to 0 to "
                "augment in the training process"
            )
        lost = sorted(t for t, i in self._assigned.items() if i == index)
        for ticket in lost:
            self._deaths[ticket] = self._deaths.get(ticket, 0) + 1
            key = self._tickets[ticket][3]
            if self._deaths[ticket] >= MAX_DEATHS_PER_BATCH:
                raise DataError(
                    f"augmentation workers died {self._deaths[ticket]} times on batch "
                    f"{key[1]} of epoch {key[0] + 1} (last exit code {proc.exitcode}): out of "
                    "memory? Lower dataset.num_workers, or set it to 0 to augment in the "
                    "training process"
                )
            del self._assigned[ticket]
        proc.join(timeout=1)
        self._procs[index] = self._new_worker(index)
        self._start(index)  # the same list: the finalizer stops the new one too
        for ticket in lost:  # the same rows and seed: the same batch
            self._hand_out(ticket)
        keys = [self._tickets[t][3][1] for t in lost]
        what = f"its batch(es) {keys} redone with their seeds" if lost else "no batch lost"
        log.warning(
            "augmentation worker %d (pid %s) died (exit code %s): replaced, %s",
            index,
            proc.pid,
            proc.exitcode,
            what,
        )

    def _unlink(self) -> None:
        """Every worker has mapped the ring: its name can go (the memory stays until the last
        process unmaps it), so no crash from now on can leave it in /dev/shm."""
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()

    def close(self) -> None:
        """Stop the workers and free the ring (also run at garbage collection and exit)."""
        self._closed = True  # a take waiting in another thread gives up within half a second
        with self._lock:
            self._ring = None
            self._finalizer()  # runs once


def _shutdown(procs: list, queues: list, shm: Any) -> None:
    for tasks in queues:
        with contextlib.suppress(Exception):
            tasks.put(None)
    deadline = time.monotonic() + 5
    for proc in procs:
        if proc.pid is None:
            continue
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    for tasks in queues:
        with contextlib.suppress(Exception):
            tasks.close()
            tasks.join_thread()
    with contextlib.suppress(Exception):
        shm.close()
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()


def _work(
    cache_path: str,
    ring_at: tuple[str, str, int],
    slots: int,
    batch_shape: tuple[int, ...],
    augment: Callable[..., dict],
    cores: list[int] | None,
    tasks: Any,
    results: Any,
) -> None:
    """A worker: batches from `tasks` into the ring until the `None` sentinel."""
    worker_process()
    if cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cores)
    _one_thread()
    shm = _attach(*ring_at)
    ring = np.ndarray((slots, *batch_shape), np.uint8, buffer=shm.buf)
    images = np.load(cache_path, mmap_mode="r")
    results.send(("ready", None, None, None))
    while (task := tasks.get()) is not None:
        ticket, slot, rows, seed = task
        try:
            started = time.process_time()  # CPU seconds: a worker waiting for a core is idle
            batch = read_rows(images, rows)
            read = time.process_time()
            augment_into(augment, batch, seed, ring[slot, : len(rows)])
            timing = (read - started, time.process_time() - read)
            results.send(("done", ticket, None, timing))
        except Exception:
            results.send(("done", ticket, traceback.format_exc(limit=-3), None))
    del ring
    shm.close()


def _one_thread() -> None:
    """One thread per worker: the pool's processes are the parallelism (OpenCV would start a
    thread per core in every worker and they would fight over the cores)."""
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)


class _Mapped:
    """The ring mapped from the parent's open descriptor (its name is gone from /dev/shm)."""

    def __init__(self, path: str, size: int) -> None:
        with open(path, "r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), size)
        self.buf = memoryview(self._map)

    def close(self) -> None:
        self.buf.release()
        self._map.close()


def _attach(name: str, fd_path: str = "", size: int = 0) -> Any:
    """Map the parent's ring without registering it with the resource tracker, which would
    unlink it when this worker exits (Python < 3.13 has no `track=False`); once its name is
    unlinked (a replacement worker), through the parent's descriptor."""
    if not os.path.exists(f"/dev/shm/{name}") and fd_path and os.path.exists(fd_path):
        return _Mapped(fd_path, size)

    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register
