"""Fault suite, resuming: `ckpt_path=last` into a new run folder ends where the uninterrupted run
ends, a live run's checkpoint is never taken, and a refusal compares with the same job."""

from __future__ import annotations

import json
import logging
import socket
import subprocess

import mlflow
import pytest

from taco.errors import ConfigError
from taco.training import checkpoint
from taco.training.job import train

INTERRUPT = ["+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch"]


def _base(tiny_overrides, tmp_path):
    # val/loss falls epoch after epoch, so "max" makes epoch 1 the best: it comes before the
    # interruption, and its weights must still be the ones restored at the end
    best_first = [
        "callbacks.model_checkpoint.monitor=val/loss",
        "callbacks.model_checkpoint.mode=max",
    ]
    # root_dir: `ckpt_path=last` looks in <root>/outputs and <root>/multirun, as for a user
    return [
        *tiny_overrides(tmp_path),
        f"paths.root_dir={tmp_path}",
        "trainer.max_epochs=4",
        "callbacks.early_stopping=null",
        *best_first,
    ]


def _runs(uri):
    client = mlflow.MlflowClient(uri)
    return client, client.search_runs([client.get_experiment_by_name("taco").experiment_id])


def _interrupt(compose_cfg, overrides, folder, epoch):
    with pytest.raises(KeyboardInterrupt):
        train(
            compose_cfg(
                [
                    *overrides,
                    f"paths.output_dir={folder}",
                    *INTERRUPT,
                    f"+callbacks.interrupt.epoch={epoch}",
                ]
            )
        )


def test_resumed_into_a_new_folder_ends_where_the_uninterrupted_run_ends(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    base = _base(tiny_overrides, tmp_path)
    _interrupt(
        compose_cfg, base, tmp_path / "outputs" / "first", epoch=3
    )  # after epochs 1-3; best: 1
    assert (
        checkpoint.read_meta(tmp_path / "outputs" / "first" / "checkpoints" / "best.ckpt")["epoch"]
        == 1
    )
    train(compose_cfg([*base, f"paths.output_dir={tmp_path}/outputs/second", "ckpt_path=last"]))
    train(compose_cfg([*base, f"paths.output_dir={tmp_path}/outputs/straight"]))

    client, runs = _runs(mlflow_uri)
    resumed = next(r for r in runs if "resumed_from" in r.data.tags)
    straight = next(r for r in runs if "resumed_from" not in r.data.tags)
    assert resumed.info.status == straight.info.status == "FINISHED"
    assert resumed.data.metrics["best_epoch"] == straight.data.metrics["best_epoch"] == 1
    per_class = {k: v for k, v in straight.data.metrics.items() if k.startswith("test/")}
    assert len([k for k in per_class if k.startswith("test/f1/")]) >= 10
    assert {k: resumed.data.metrics[k] for k in per_class} == per_class  # number for number
    assert (
        tmp_path / "outputs" / "second" / "checkpoints" / "best.ckpt"
    ).is_file()  # carried along


def test_a_live_runs_checkpoint_is_never_taken(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri, caplog
):
    base = _base(tiny_overrides, tmp_path)
    folder = tmp_path / "outputs" / "live" / "checkpoints"
    _interrupt(compose_cfg, base, tmp_path / "outputs" / "live", epoch=1)
    client, (run,) = _runs(mlflow_uri)
    other = subprocess.Popen(["sleep", "120"])  # a live process of this host owns the folder
    try:
        (folder / checkpoint.OWNER).write_text(
            json.dumps({"host": socket.gethostname(), "pid": other.pid})
        )
        with caplog.at_level(logging.WARNING), pytest.raises(ConfigError, match="no interrupted"):
            train(
                compose_cfg([*base, f"paths.output_dir={tmp_path}/outputs/new", "ckpt_path=last"])
            )
        assert f"skips {folder / 'last.ckpt'}: process {other.pid}" in caplog.text
        with pytest.raises(ConfigError, match=f"process {other.pid} .* is still training"):
            train(compose_cfg([*base, f"ckpt_path={folder / 'last.ckpt'}"]))
    finally:
        other.kill()
        other.wait()
    client, runs = _runs(mlflow_uri)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run.info.run_id, "KILLED")]
    assert client.get_run(run.info.run_id).data.tags == run.data.tags  # nothing written into it


def test_a_refused_resume_lists_the_differences_with_the_same_job(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    base = _base(tiny_overrides, tmp_path)
    job = [*base, "seed=707", "model.classifier.learning_rate=0.0001"]
    _interrupt(compose_cfg, job, tmp_path / "outputs" / "job", epoch=1)
    _interrupt(compose_cfg, base, tmp_path / "outputs" / "newer", epoch=1)  # newer, and unrelated
    changed = [*base, "seed=707", "model.classifier.learning_rate=0.001"]
    with pytest.raises(ConfigError) as err:
        train(
            compose_cfg([*changed, f"paths.output_dir={tmp_path}/outputs/again", "ckpt_path=last"])
        )
    text = str(err.value)
    assert str(tmp_path / "outputs" / "job") in text and "model.classifier.learning_rate" in text
    assert "seed" not in text.split("differs:")[1]


def test_an_owner_on_another_host_is_live_only_while_its_heartbeat_is_fresh(tmp_path):
    """Its pid cannot be checked from here: a job requeued on another node (SLURM) must still
    resume the checkpoint its earlier, dead, run left."""
    import os
    import time

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / checkpoint.OWNER).write_text(json.dumps({"host": "node-17", "pid": 4242}))
    assert checkpoint.live_owner(folder) == "process 4242 on node-17"
    old = time.time() - checkpoint.FOREIGN_OWNER_FRESH_S - 60
    os.utime(folder / checkpoint.OWNER, (old, old))
    assert checkpoint.live_owner(folder) is None
    checkpoint.heartbeat(folder)
    assert checkpoint.live_owner(folder) == "process 4242 on node-17"


def test_a_checkpoint_that_fails_to_load_leaves_its_finished_run_as_it_was(
    compose_cfg, tiny_overrides, tmp_path, mlflow_uri
):
    base = [*_base(tiny_overrides, tmp_path), "trainer.max_epochs=1"]
    train(compose_cfg([*base, f"paths.output_dir={tmp_path}/outputs/first"]))
    client, [run] = _runs(mlflow_uri)
    assert run.info.status == "FINISHED"
    ckpt = tmp_path / "outputs" / "first" / "checkpoints" / "last.ckpt"
    arrays, meta = checkpoint.read(ckpt)
    assert meta["run_id"] == run.info.run_id and meta["tracking_uri"] == mlflow_uri
    broken = {k: v[..., :1] if v.ndim else v for k, v in arrays.items()}  # shapes the model lacks
    checkpoint.write(ckpt, broken, {k: v for k, v in meta.items() if k != "format"})

    with pytest.raises(Exception):  # noqa: B017  (whatever the loader says: not our subject)
        train(
            compose_cfg(
                [*base, "trainer.max_epochs=2", f"paths.output_dir={tmp_path}/outputs/more"]
                + [f"ckpt_path={ckpt}"]
            )
        )
    after = client.get_run(run.info.run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == run.info.end_time
    assert after.data.tags == run.data.tags and "error" not in after.data.tags
    assert len(_runs(mlflow_uri)[1]) == 1  # and no other run was opened instead


def test_last_takes_only_checkpoints_of_runs_in_this_store(
    compose_cfg, tiny_overrides, tmp_path, mlflow_uri
):
    base = _base(tiny_overrides, tmp_path)
    _interrupt(compose_cfg, base, tmp_path / "outputs" / "first", epoch=2)
    other = f"sqlite:///{tmp_path}/other.db"
    with pytest.raises(ConfigError, match="no interrupted run to resume"):
        train(
            compose_cfg(
                [*base, f"paths.output_dir={tmp_path}/outputs/second", "ckpt_path=last"]
                + [f"logger.tracking_uri={other}"]
            )
        )
