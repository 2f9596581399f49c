"""SLURM: a one-node cluster of this machine (munge, slurmctld, slurmd from Debian's packages)
takes `hydra/launcher=slurm`: a 2-job sweep under one parent run, one job preempted (the
signal SLURM sends before preemption or the time limit, as `scancel --signal=USR2`), requeued and
resumed from its checkpoint, ending with the numbers of an uninterrupted job."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlflow
import pytest

from tools.engines import slurm_cluster, wait_until

from .commands import PREEMPT, SLURM_SWEEP
from .conftest import ROOT

pytestmark = [pytest.mark.scale, pytest.mark.slow, pytest.mark.subprocess]


def test_a_slurm_sweep_keeps_one_parent_and_a_preempted_job_resumes(
    tmp_path, tiny_overrides, mlflow_uri, engine, process
):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="make setup-slurm")
    cluster = engine(slurm_cluster(tmp_path / "slurm"))
    env = {**os.environ, **cluster, "PYTHONPATH": str(ROOT)}  # PYTHONPATH: tests.helpers
    marker = tmp_path / "held"
    job = [*tiny_overrides(tmp_path), "trainer.max_epochs=4", "callbacks.early_stopping=null"]
    job = [o for o in job if not o.startswith("paths.output_dir")]
    hold = ["+callbacks.hold._target_=tests.helpers.HoldAtEpoch", "+callbacks.hold.epoch=2"]
    hold += ["+callbacks.hold.seed=${seed}", "+callbacks.hold.victim=1"]
    hold += [f"+callbacks.hold.marker={marker}"]
    sweep = [os.path.join(os.path.dirname(sys.executable), "taco-train"), *SLURM_SWEEP]
    sweep += [f"hydra.sweep.dir={tmp_path}/multirun"]

    began = time.perf_counter()
    proc = subprocess.Popen(
        [*sweep, *job, *hold], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until(marker.exists, 300, "the job of seed=1 at its third epoch", proc)
        held = marker.read_text().strip()
        subprocess.run([*PREEMPT, held], env=env, check=True)  # preempted
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    print(f"2-job SLURM sweep, one job preempted and resumed: {time.perf_counter() - began:.1f} s")
    assert proc.returncode == 0, out[-4000:]

    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("taco.sweep") == "parent"]
    children = {r.data.params["seed"]: r for r in runs if r is not parent}
    assert parent.info.status == "FINISHED" and len(runs) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    assert all(r.info.status == "FINISHED" for r in children.values())
    assert "TacoSlurmLauncher" in parent.data.tags["launcher"]
    resumed = children["1"]  # one run: the requeued job continued it
    assert resumed.data.tags["resumed_from"].endswith("last.ckpt (epoch 2)"), resumed.data.tags
    assert "resumed_from" not in children["2"].data.tags
    log = (tmp_path / "multirun" / ".submitit").rglob("*_log.err")
    assert any("this job is preempted" in p.read_text() for p in log)

    # the same job never interrupted, on this machine without SLURM: the same numbers
    straight = process(
        "taco-train",
        *job,
        "seed=1",
        f"hydra.run.dir={tmp_path}/straight",
        "logger.experiment_name=straight",
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    (alone,) = client.search_runs([client.get_experiment_by_name("straight").experiment_id])
    per_class = {k: v for k, v in alone.data.metrics.items() if k.startswith("test/f1/")}
    assert len(per_class) >= 10
    assert {k: resumed.data.metrics[k] for k in per_class} == per_class
