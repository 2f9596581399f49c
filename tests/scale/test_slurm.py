"""SLURM: a one-node cluster of this machine (munge, slurmctld, slurmd from Debian's packages)
takes `hydra/launcher=slurm`: a 2-job sweep under one parent run, one job stopped by the signal
SLURM sends before a preemption (`scancel --signal=USR2`) or before its time limit (SLURM's own,
a 3-minute limit), requeued and resumed from its checkpoint, ending with the numbers of an
uninterrupted job."""

from __future__ import annotations

import os
import subprocess
import time

import mlflow
import pytest

from tests.helpers import script
from tools.engines import slurm_cluster, wait_until

from .commands import PREEMPT, SLURM_SWEEP
from .conftest import ROOT

pytestmark = [pytest.mark.scale, pytest.mark.slow, pytest.mark.subprocess]


@pytest.mark.parametrize("stopped_by", ["preemption", "time limit"])
def test_a_slurm_sweep_keeps_one_parent_and_a_stopped_job_resumes(
    tmp_path, tiny_overrides, mlflow_uri, engine, process, stopped_by
):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="make setup-slurm")
    cluster = engine(slurm_cluster(tmp_path / "slurm"))
    env = {**os.environ, **cluster, "PYTHONPATH": str(ROOT)}  # PYTHONPATH: tests.helpers
    marker = tmp_path / "held"
    job = [*tiny_overrides(tmp_path), "trainer.max_epochs=4", "callbacks.early_stopping=null"]
    job = [o for o in job if not o.startswith("paths.output_dir")]
    hold = ["+callbacks.hold._target_=tests.helpers.HoldAtEpoch", "+callbacks.hold.epoch=2"]
    hold += ["+callbacks.hold.seed=${seed}", "+callbacks.hold.victim=1"]
    hold += [f"+callbacks.hold.marker={marker}", "+callbacks.hold.seconds=300"]
    sweep = [script("taco-train"), *SLURM_SWEEP]
    sweep += [f"hydra.sweep.dir={tmp_path}/multirun"]
    if stopped_by == "time limit":  # SLURM signals 60 s ahead, give or take its 60 s resolution
        sweep += ["hydra.launcher.timeout_min=3", "hydra.launcher.signal_delay_s=60"]

    began = time.perf_counter()
    proc = subprocess.Popen(
        [*sweep, *job, *hold], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until(marker.exists, 300, "the job of seed=1 at its third epoch", proc)
        if stopped_by == "preemption":
            subprocess.run([*PREEMPT, marker.read_text().strip()], env=env, check=True)
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    wall = time.perf_counter() - began
    print(f"2-job SLURM sweep, one job stopped by its {stopped_by}: {wall:.1f} s")
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
    case = "preempted" if stopped_by == "preemption" else "timed-out"
    assert any(f"this job is {case}" in p.read_text() for p in log)  # submitit's word for it

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


def test_jobs_sbatch_refuses_are_one_line_and_a_failed_parent(
    tmp_path, tiny_overrides, mlflow_uri, engine, process
):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="make setup-slurm")
    cluster = engine(slurm_cluster(tmp_path / "slurm"))
    job = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    run = process(
        "taco-train",
        *SLURM_SWEEP,
        "hydra.launcher.mem_gb=100000",  # more than the node has
        f"hydra.sweep.dir={tmp_path}/multirun",
        *job,
        env=cluster,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("taco-train: error: sbatch refused the sweep's jobs (sbatch: error: ")
    assert "hydra.launcher.partition, mem_gb" in line and "Traceback" not in run.stderr
    client = mlflow.MlflowClient(mlflow_uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    assert parent.info.status == "FAILED" and "sbatch refused" in parent.data.tags["error"]
