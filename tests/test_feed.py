"""Feeding the model: a job's cores, step logs read only when wanted, XLA's compilation cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taco.process import core_list
from taco.training.job import train

ROOT = Path(__file__).resolve().parents[1]
many_cores = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs 2 cores to tell the training's from the feed's",
)

PINNED = """
import logging, os, sys
import numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from taco.process import reset_for_job
from taco.data.pipeline import CachedBatches
from tests import augmentations
reset_for_job(1, 0)  # trainer.cpu_threads=1 on JAX: the training pinned to one core
print("training", sorted(os.sched_getaffinity(0)))
np.save("cache.npy", np.zeros((16, 8, 8, 3), np.uint8))
batches = CachedBatches(np.load("cache.npy", mmap_mode="r"), np.eye(16), np.arange(16), 4,
                        augment=augmentations.slow, num_workers=1, cache_path="cache.npy")
batches[0]
print("worker", sorted(os.sched_getaffinity(batches._pool._procs[0].pid)))
batches.close()
"""


@pytest.mark.subprocess
@many_cores
def test_a_pinned_job_feeds_itself_from_every_core(tmp_path):
    """trainer.cpu_threads pins a JAX job's training (for machine-independent numbers); its
    augmentation workers still run on every core of the job, as its start-up line says."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PINNED], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    cores = sorted(os.sched_getaffinity(0))
    lines = out.stdout.splitlines()
    assert f"training {cores[:1]}" in lines
    assert f"worker {cores}" in lines
    feed = f"augmentation workers and decoding on cores {core_list(cores)}"
    assert f"job 0 trains on cores {cores[0]}; {feed}" in out.stdout


def test_batch_callbacks_read_the_loss_only_when_they_ask(compose_cfg, tmp_path, tiny_overrides):
    """Keras would turn each step's loss into a number before any callback sees it (a wait for
    the device every batch); a Trainer callback gets the step's logs as they are, and reading
    the loss gives the number."""
    from tests.helpers import RecordBatchLogs

    RecordBatchLogs.seen = []
    overrides = [
        *tiny_overrides(tmp_path),
        "logger=none",
        "trainer.max_epochs=1",
        "+callbacks.batches._target_=tests.helpers.RecordBatchLogs",
    ]
    train(compose_cfg(overrides))
    assert RecordBatchLogs.seen
    assert {kind for kind, _ in RecordBatchLogs.seen} == {"StepLogs"}
    assert all(isinstance(loss, float) and loss > 0 for _, loss in RecordBatchLogs.seen)


@pytest.mark.subprocess
def test_the_second_jax_job_loads_its_compiled_steps_from_the_cache(process, tmp_path, tiny_data):
    """trainer.compile_cache: the first job writes XLA's compiled programs; a second one of the
    same model (another seed) finds every one of them and writes nothing new."""
    from tests import tiny

    cache = tmp_path / "compile"

    def job(seed: int) -> set[str]:
        done = process(
            "taco-train",
            *tiny.overrides(tiny_data, tmp_path / f"out{seed}"),
            f"hydra.run.dir={tmp_path}/run{seed}",
            "logger=none",
            "callbacks=none",
            "trainer.max_epochs=1",
            f"trainer.compile_cache={cache}",
            f"seed={seed}",
            # every compile cached: at taco's 0.2 s floor, a compile near it is cached in one
            # job and not in the other when the machine is busy
            env={"KERAS_BACKEND": "jax", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"},
        )
        assert done.returncode == 0, done.stderr
        return {p.name for p in (cache / "jax").rglob("*-cache")}

    written = job(1)
    assert len(written) >= 2  # at least the training and the prediction steps
    assert job(2) == written
