"""Fault suite, the augmentation pool: a worker killed mid-epoch (`kill -9`, the OOM killer) is
replaced and its batch redone with the same seed; a batch that keeps killing workers fails."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from taco.data.pipeline import CachedBatches
from tests import augmentations
from tests.test_augment_pool import _cache, _epochs, _heavy, _pooled


def test_a_killed_worker_is_replaced_and_its_batch_redone(compose_cfg, tmp_path, caplog):
    """`kill -9` of a worker mid-epoch: one warning, a new worker, the same numbers."""
    path, images = _cache(tmp_path)
    augment = _heavy(compose_cfg)

    def batches(workers: int) -> CachedBatches:
        return _pooled(path, images, augment, workers, shuffle=True, seed=3, prefetch_factor=2)

    inline = _epochs(batches(0), [0, 1])
    healed, out = batches(2), []
    for epoch in (0, 1):
        healed.set_epoch(epoch)
        for i in range(len(healed)):
            out.append(healed[i][0])
            if (epoch, i) == (0, 1):  # both workers busy prefetching: one dies mid-batch
                victim = healed._pool._procs[0]
                os.kill(victim.pid, signal.SIGKILL)
                victim.join(5)
    procs = list(healed._pool._procs)
    healed.close()
    assert np.array_equal(np.concatenate(out), inline)
    assert victim not in procs and len(procs) == 2
    (line,) = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert f"(pid {victim.pid}) died (exit code -9): replaced" in line, line


def test_a_batch_that_keeps_killing_workers_fails_in_one_line(tmp_path):
    from taco.errors import DataError

    path, images = _cache(tmp_path)
    batches = _pooled(path, images, augmentations.fatal, workers=1)
    with pytest.raises(DataError, match="augmentation workers died 3 times on batch 0 of epoch 1"):
        batches[0]
    batches.close()
