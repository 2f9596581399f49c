"""The augmentation pool: the same batches with any number of workers, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from taco.data.pipeline import CachedBatches
from tests import augmentations

SHM = Path("/dev/shm")
needs_shm = pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm on this system")


def _cache(tmp_path: Path, n: int = 40, size: int = 32) -> tuple[Path, np.ndarray]:
    path = tmp_path / "cache.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8))
    return path, np.load(path, mmap_mode="r")


def _heavy(compose_cfg, size: int = 32):
    return instantiate(compose_cfg(["augmentation=heavy", f"model.image_size={size}"]).augmentation)


def _pooled(path: Path, images: np.ndarray, augment, workers: int, **options) -> CachedBatches:
    """Batches of 8 of the 40 cached images, augmented by `workers` pool processes."""
    return CachedBatches(
        images, np.eye(40), np.arange(40), 8, augment=augment, num_workers=workers,
        cache_path=path, **options,
    )  # fmt: skip


def _epochs(batches: CachedBatches, epochs: list[int]) -> np.ndarray:
    out = []
    for epoch in epochs:
        batches.set_epoch(epoch)
        out += [batches[i][0] for i in range(len(batches))]
    batches.close()
    return np.concatenate(out)


def _shm_names() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("psm_")}


def test_batches_do_not_depend_on_worker_count_or_resume(compose_cfg, tmp_path):
    path, images = _cache(tmp_path)
    augment, labels = _heavy(compose_cfg), np.eye(40)

    def batches(workers: int) -> CachedBatches:
        return CachedBatches(
            images, labels, np.arange(40), 8, shuffle=True, seed=3, augment=augment,
            num_workers=workers, prefetch_factor=1, cache_path=path,
        )  # fmt: skip

    inline = _epochs(batches(0), [0, 1, 2])
    for workers in (1, 3):
        assert np.array_equal(_epochs(batches(workers), [0, 1, 2]), inline), workers
    resumed = _epochs(batches(2), [2])  # a resumed run starts at epoch 2: the same draws
    assert np.array_equal(resumed, inline[-len(resumed) :])
    assert not np.array_equal(inline[:40], inline[40:80])  # epochs differ


@needs_shm
def test_a_failing_augmentation_names_the_batch_and_leaves_nothing(tmp_path):
    path, images = _cache(tmp_path)
    before = _shm_names()
    batches = _pooled(path, images, augmentations.broken, workers=2)
    with pytest.raises(RuntimeError, match="augmentation worker failed on batch 0"):
        batches[0]
    procs = list(batches._pool._procs)
    batches.close()
    assert not any(p.is_alive() for p in procs)
    assert _shm_names() <= before


_PARENT = """
import json, sys, numpy as np
from taco.data.augment_pool import AugmentPool
from tests.augmentations import slow

if __name__ == "__main__":
    pool = AugmentPool(sys.argv[1], slow, (8, 32, 32, 3), workers=2, slots=4)
    rows = np.arange(8)
    pool.submit((0, 0), rows, 0)
    pool.take((0, 0), 8)
    print(json.dumps({"shm": pool._shm.name, "pids": [p.pid for p in pool._procs]}), flush=True)
    for index in range(1, 10**6):
        pool.submit((0, index), rows, index)
        pool.take((0, index), 8)
"""


@pytest.mark.subprocess
@needs_shm
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_or_shared_memory_outlives_a_killed_parent(tmp_path, signum):
    path, _ = _cache(tmp_path)
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    info = json.loads(proc.stdout.readline())
    assert all(_alive(pid) for pid in info["pids"])
    proc.send_signal(signum)
    proc.wait(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline and (
        any(_alive(pid) for pid in info["pids"]) or (SHM / info["shm"]).exists()
    ):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in info["pids"])
    assert not (SHM / info["shm"]).exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_every_worker_shares_the_epoch_when_keras_resets_its_iterator(compose_cfg, tmp_path):
    """Keras calls `on_epoch_end` as each one-epoch `fit` starts. It once moved the epoch on,
    so the ring held the next epoch's batches all through this one and a single worker did
    nearly every batch (an H200's VGG16 got 842 img/s of heavy augmentation from 16 cores)."""
    path, images = _cache(tmp_path)
    batches = _pooled(path, images, _heavy(compose_cfg), workers=2, shuffle=True)
    for epoch in range(4):  # 5 batches an epoch, a ring of 4
        batches.on_epoch_end()  # what `fit` does first
        batches.set_epoch(epoch)
        for i in range(len(batches)):
            batches[i]
    done = [row[0] for row in batches._pool._timing]
    batches.close()
    assert min(done) >= 0.3 * sum(done), done
