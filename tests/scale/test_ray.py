"""Ray: a local cluster (`ray start --head` on 127.0.0.1 and a second node process) takes
`hydra/launcher=ray` at its address: every job a child of one parent run, the numbers of the
basic launcher, a killed Ray worker costing only its job, SIGTERM to the sweep leaving no run
RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import mlflow
import pytest

from tests.helpers import script
from tools.engines import RAY_CLIENT_ENV, EngineMissing, ray_cluster, wait_until

from .commands import ray_sweep
from .conftest import ROOT

pytestmark = [pytest.mark.scale, pytest.mark.slow, pytest.mark.subprocess]


@pytest.fixture(scope="module")
def ray_address():
    """One cluster for the module: a head of 2 CPUs and a worker node of 1 (tests.helpers
    importable in its workers: the tests' own callbacks)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="make setup-ray")
    try:
        with ray_cluster(cpus=2, workers=1, env={"PYTHONPATH": str(ROOT)}) as address:
            yield address
    except EngineMissing as err:
        pytest.skip(str(err))


def _sweep(tmp_path, tiny_overrides, address, *overrides):
    """The README's Ray sweep at `address`, on the tiny settings; `overrides` replace its keys."""
    replaced = {o.split("=")[0] for o in overrides}
    ray = [o for o in ray_sweep(address) if o.split("=")[0] not in replaced]
    base = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    command = [script("taco-train"), *ray, *base]
    return [*command, f"hydra.sweep.dir={tmp_path}/multirun", *overrides]


def _family(uri, experiment="taco"):
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("taco.sweep") == "parent"]
    children = [r for r in runs if r is not parent]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    return parent, children


def test_a_ray_cluster_sweep_gives_the_basic_launchers_numbers(
    tmp_path, tiny_overrides, mlflow_uri, ray_address, process
):
    began = time.perf_counter()
    ray = subprocess.run(
        _sweep(tmp_path / "ray", tiny_overrides, ray_address),
        env={**os.environ, **RAY_CLIENT_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"2-job sweep on the Ray cluster: {time.perf_counter() - began:.1f} s")
    assert ray.returncode == 0, ray.stderr[-4000:]
    base = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    basic = process(
        "taco-train",
        "-m",
        *base,
        "seed=1,2",
        f"hydra.sweep.dir={tmp_path}/basic",
        "logger.experiment_name=basic",
    )
    assert basic.returncode == 0, basic.stderr[-3000:]

    parent, children = _family(mlflow_uri)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert "TacoRayLauncher" in parent.data.tags["launcher"]
    assert all(c.info.status == "FINISHED" for c in children)
    _, alone = _family(mlflow_uri, "basic")
    scores = {}
    for launcher, runs in (("ray", children), ("basic", alone)):
        for run in runs:
            per_class = {k: v for k, v in run.data.metrics.items() if k.startswith("test/f1/")}
            scores[launcher, run.data.params["seed"]] = per_class
    assert len(scores["ray", "1"]) >= 10
    assert scores["ray", "1"] == scores["basic", "1"] and scores["ray", "2"] == scores["basic", "2"]


def test_a_killed_ray_worker_costs_only_its_job(tmp_path, tiny_overrides, mlflow_uri, ray_address):
    kill = ["+callbacks.kill._target_=tests.helpers.SigkillAtEpoch", "+callbacks.kill.epoch=1"]
    kill += ["+callbacks.kill.seed=${seed}", "+callbacks.kill.victim=1"]
    run = subprocess.run(
        _sweep(tmp_path, tiny_overrides, ray_address, *kill),
        env={**os.environ, **RAY_CLIENT_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode != 0  # a job failed: the sweep says so
    assert "1 job(s) failed" in run.stdout + run.stderr
    parent, children = _family(mlflow_uri)
    status = {c.data.params.get("seed"): c for c in children}
    assert status["2"].info.status == "FINISHED"
    assert status["1"].info.status == "FAILED"
    assert "worker died" in status["1"].data.tags["error"]
    assert parent.info.status == "FAILED" and "worker died" in parent.data.tags["failed_jobs"]


def test_sigterm_to_a_ray_sweep_leaves_nothing_running(
    tmp_path, tiny_overrides, mlflow_uri, ray_address
):
    marker = tmp_path / "held"
    hold = ["+callbacks.hold._target_=tests.helpers.HoldAtEpoch", "+callbacks.hold.epoch=1"]
    hold += ["+callbacks.hold.seed=${seed}", "+callbacks.hold.victim=1"]
    hold += [f"+callbacks.hold.marker={marker}"]
    # 2 CPUs a job on a cluster of 3: one job at a time, the others wait in Ray's queue
    setting = ["seed=1,2,3", "hydra.launcher.ray.remote.num_cpus=2", *hold]
    proc = subprocess.Popen(
        _sweep(tmp_path, tiny_overrides, ray_address, *setting),
        env={**os.environ, **RAY_CLIENT_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(marker.exists, 300, "the job of seed=1 at its second epoch", proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode != 0, out[-3000:]
    parent, children = _family(mlflow_uri)
    assert not [r for r in [parent, *children] if r.info.status == "RUNNING"], out[-3000:]
    assert parent.info.status == "KILLED"
    held = next(c for c in children if c.data.params.get("seed") == "1")
    assert held.info.status == "KILLED"  # saved its checkpoint and closed, as on Ctrl-C
    assert "not started" in parent.data.tags.get("failed_jobs", ""), parent.data.tags
