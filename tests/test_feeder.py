"""The feeder: batches made ahead in order by one thread, the same batches as made on demand."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from taco.data.augment_pool import read_rows
from taco.data.feeder import Feeder
from taco.data.pipeline import CachedBatches


class Maker:
    """Records which keys were made, by which thread; key (0, 3) fails."""

    def __init__(self, per_epoch: int = 5, delay: float = 0.0) -> None:
        self.per_epoch, self.delay = per_epoch, delay
        self.made: list[tuple[int, int]] = []
        self.threads: set[str] = set()

    def __call__(self, key):
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        self.made.append(key)
        if key == (0, 3):
            raise ValueError("batch (0, 3) is broken")
        return key

    def successor(self, key):
        epoch, index = key
        return (epoch, index + 1) if index + 1 < self.per_epoch else (epoch + 1, 0)


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_batches_come_in_order_and_are_made_ahead_in_a_thread():
    maker = Maker()
    feeder = Feeder(maker, maker.successor, depth=2)
    try:
        assert feeder.get((1, 0)) == (1, 0)
        _wait_until(lambda: len(maker.made) >= 3)  # (1, 1) and (1, 2) without being asked
        assert maker.made[:3] == [(1, 0), (1, 1), (1, 2)]
        assert [feeder.get((1, i)) for i in range(1, 5)] == [(1, i) for i in range(1, 5)]
        _wait_until(lambda: (2, 0) in maker.made)  # on into the next epoch
        assert maker.threads == {"taco-feeder"}
        assert len(maker.made) <= 5 + 2  # never more than `depth` ahead of the consumer
    finally:
        feeder.close()


def test_a_jump_starts_over_and_an_error_reaches_the_consumer_of_its_batch():
    maker = Maker()
    feeder = Feeder(maker, maker.successor, depth=2)
    try:
        assert feeder.get((5, 2)) == (5, 2)  # a resume: starts there
        assert feeder.get((0, 0)) == (0, 0)  # and back
        assert feeder.get((0, 1)) == (0, 1)
        assert feeder.get((0, 2)) == (0, 2)
        with pytest.raises(ValueError, match=r"batch \(0, 3\) is broken"):
            feeder.get((0, 3))
        assert feeder.get((0, 4)) == (0, 4)  # the next request starts it again
    finally:
        feeder.close()


def test_the_thread_ends_when_idle_or_closed_and_comes_back_when_asked():
    maker = Maker()
    feeder = Feeder(maker, maker.successor, depth=1, idle_seconds=1.0)
    feeder.get((0, 0))
    _wait_until(lambda: feeder._thread is None, timeout=10)  # idle: gone
    assert feeder.get((0, 1)) == (0, 1)  # made before it left, kept
    assert feeder.get((0, 2)) == (0, 2)
    feeder.close()
    assert not any(t.name == "taco-feeder" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        feeder.get((0, 3))


def test_read_rows_is_the_fancy_indexed_gather(tmp_path):
    path = tmp_path / "cache.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (30, 8, 8, 3), dtype=np.uint8))
    images = np.load(path, mmap_mode="r")
    rows = np.array([7, 2, 29, 2, 0, 13])
    assert np.array_equal(read_rows(images, rows), np.asarray(images)[rows])


def test_keras_resetting_its_epoch_iterator_does_not_move_the_epoch():
    """Keras calls a PyDataset's `on_epoch_end` when a `fit` starts (its iterator's reset):
    the epoch is the Trainer's to set, so batch 0 after it is still epoch 1's."""
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)

    def batches() -> CachedBatches:
        return CachedBatches(images, np.eye(40), np.arange(40), 8, shuffle=True, seed=1)

    expected = batches()
    expected.set_epoch(1)
    moved = batches()
    moved.set_epoch(1)
    moved.on_epoch_end()
    assert np.array_equal(moved[0][0], expected[0][0])
    moved.close()
    expected.close()


def test_a_fixed_pass_stops_at_its_end_and_in_memory_images_need_no_thread():
    """Validation and test batches are read once a pass: nothing is made past the last one.
    In-memory images (occluded copies for a saliency map, by the thousand) start no thread."""
    from taco.data.pipeline import ArrayBatches

    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)
    fixed = CachedBatches(images, np.eye(40), np.arange(40), 8)
    assert [len(fixed[i][0]) for i in range(len(fixed))] == [8] * 5
    time.sleep(0.2)
    assert fixed._feeder._cursor is None and not fixed._feeder._ready
    fixed.close()

    before = {t.ident for t in threading.enumerate()}
    memory = ArrayBatches(images, num_classes=3, batch_size=16)
    assert np.array_equal(np.concatenate([memory[i][0] for i in range(len(memory))]), images)
    assert {t.ident for t in threading.enumerate()} <= before
