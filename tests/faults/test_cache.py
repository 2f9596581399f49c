"""Fault suite, caches: a damaged image cache, its metadata or a feature cache is rebuilt with a
warning; the temporary files of builds that died are removed, those of live builds kept; an
unreadable checkpoint is skipped by `ckpt_path=last`."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from taco.data.images import build_cache
from taco.data.pipeline import _derived_for_cache
from taco.files import remove_dead_temps
from taco.training import checkpoint
from taco.training.job import train
from tests.faults.common import runs
from tests.test_images import _files


def _cache(tmp_path):
    paths, sizes = _files(tmp_path, 4)
    return lambda: build_cache(paths, sizes, 16, tmp_path / "c", "h")


def test_a_truncated_image_cache_is_rebuilt(tmp_path, caplog):
    build = _cache(tmp_path)
    first = build()
    good = np.array(first.array)
    with open(first.path, "r+b") as f:
        f.truncate(first.path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        again = build()
    assert again.built and "is damaged" in caplog.text and str(first.path) in caplog.text
    np.testing.assert_array_equal(again.array, good)
    assert not build().built  # healed: the next run reuses it


@pytest.mark.parametrize("damage", ["cut", "missing", "garbage"])
def test_damaged_cache_metadata_is_rebuilt(tmp_path, caplog, damage):
    build = _cache(tmp_path)
    meta = build().path.with_suffix(".json")
    if damage == "cut":
        meta.write_text(meta.read_text()[:10])
    elif damage == "missing":
        meta.unlink()
    else:
        meta.write_text(json.dumps([1, 2]))
    with caplog.at_level(logging.WARNING):
        assert build().built
    assert "is damaged" in caplog.text
    assert json.loads(meta.read_text())["bad"] == []


@pytest.mark.subprocess
def test_temporary_files_of_dead_builds_are_removed(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = folder / f".abc.{int(dead.stdout)}.tmp.npy"
    live = folder / f".abc.{os.getpid()}.tmp.npy"
    feature = folder / f".key-features.npy.{int(dead.stdout)}.tmp.npy"
    for path in (gone, live, feature):
        path.write_bytes(b"partial")
    build = _cache(tmp_path)
    build()  # a build removes what dead builds left
    assert not gone.exists() and not feature.exists()
    assert live.exists()  # a parallel job still writing it
    assert remove_dead_temps(folder) == []


def test_a_cut_feature_cache_is_recomputed(tmp_path, caplog):
    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    calls = []

    def compute(x):
        calls.append(len(x))
        return x.reshape(len(x), -1).mean(1, keepdims=True).astype(np.float32)

    first = np.array(_derived_for_cache(tmp_path, "key", "f", images, compute, chunk=2))
    path = tmp_path / "key-f.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with caplog.at_level(logging.WARNING):
        again = _derived_for_cache(tmp_path, "key", "f", images, compute, chunk=2)
    np.testing.assert_array_equal(again, first)
    assert sum(calls) == 10 and "is damaged" in caplog.text


def test_an_unreadable_last_checkpoint_is_skipped(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri, caplog
):
    base = [*tiny_overrides(tmp_path), "trainer.max_epochs=3"]
    interrupt = [
        "+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch",
        "+callbacks.interrupt.epoch=1",
    ]
    with pytest.raises(KeyboardInterrupt):
        train(compose_cfg([*base, *interrupt]))
    other = tmp_path / "out" / "other" / "checkpoints"
    other.mkdir(parents=True)
    (other / "last.ckpt").write_bytes(b"\x00garbage")  # newer, unreadable
    with caplog.at_level(logging.WARNING):
        train(compose_cfg([*base, "ckpt_path=last"]))  # resumes the readable one
    assert "skips" in caplog.text and str(other / "last.ckpt") in caplog.text
    done = tmp_path / "out" / "checkpoints"
    assert (done / "COMPLETE").is_file() and checkpoint.read_meta(done / "last.ckpt")["epoch"] == 3
    assert [r.info.status for r in runs(mlflow_uri)] == ["FINISHED"]  # the killed run, resumed
