"""A team tracking server on PostgreSQL: the README's `mlflow server` over a real PostgreSQL
database with proxied artifacts, taking a 4-job joblib sweep, `taco-compare --register`,
`taco-predict --model models:/...` and an interrupted job resumed with `ckpt_path=last`."""

from __future__ import annotations

import time

import mlflow
import pytest

from tools.engines import mlflow_server, postgres

from .commands import PREDICT, REGISTER, RESUME, TEAM_SWEEP
from .conftest import ROOT

pytestmark = [pytest.mark.scale, pytest.mark.slow, pytest.mark.subprocess]


def test_a_team_server_on_postgresql_takes_sweeps_registry_and_resume(
    tmp_path, tiny_overrides, tiny_data, engine, process, monkeypatch
):
    pytest.importorskip("psycopg", reason="make setup-postgres")
    database = engine(postgres())
    assert database.startswith("postgresql://")
    server = engine(mlflow_server(database, tmp_path / "artifacts"))
    env = {"MLFLOW_TRACKING_URI": server}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)  # this process's look-ups too
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]

    began = time.perf_counter()
    sweep = process(
        "taco-train", *TEAM_SWEEP, f"hydra.sweep.dir={tmp_path}/multirun", *tiny, env=env
    )
    print(f"4-job joblib sweep into the server: {time.perf_counter() - began:.1f} s")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    client = mlflow.MlflowClient(server)
    experiment = client.get_experiment_by_name("taco")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("taco.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 4 == len(runs) - 1
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(len([k for k in c.data.metrics if k.startswith("test/f1/")]) >= 10 for c in children)
    # artifacts went through the server into its destination, not into a local mlruns/
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    model = client.list_artifacts(children[0].info.run_id, "model")
    assert model and any(p.name.endswith("model") for p in (tmp_path / "artifacts").rglob("*"))

    # the sweep's best model registered on the server, and used from it by name
    compare = process("taco-compare", "--out", str(tmp_path / "cmp"), *REGISTER, env=env)
    assert compare.returncode == 0, compare.stderr[-3000:]
    assert "registered models:/litter/1" in compare.stdout
    predict = process("taco-predict", *PREDICT, str(tiny_data / "synthetic" / "batch_1"), env=env)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert len(predict.stdout.strip().splitlines()) == 48

    # a job stopped at its second epoch (its run KILLED in the server), resumed from its
    # checkpoint (`ckpt_path=last` finds it under paths.root_dir): the same run goes on, FINISHED
    single = [*tiny_overrides(tmp_path), f"paths.root_dir={tmp_path}", "trainer.max_epochs=3"]
    single += ["callbacks.early_stopping=null", "logger.experiment_name=resume", "logger=team"]
    stop = ["+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch"]
    stop += ["+callbacks.interrupt.epoch=1", f"paths.output_dir={tmp_path}/outputs/first"]
    with_tests = {**env, "PYTHONPATH": str(ROOT)}  # the interrupting callback: tests.helpers
    first = process("taco-train", *single, *stop, env=with_tests)
    assert first.returncode != 0 and "interrupt" in first.stderr.lower(), first.stderr[-3000:]
    resume = client.get_experiment_by_name("resume")
    (stopped,) = client.search_runs([resume.experiment_id])
    assert stopped.info.status == "KILLED"
    again = process(
        "taco-train",
        *single,
        f"paths.output_dir={tmp_path}/outputs/second",
        *RESUME,
        env=env,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    (resumed,) = client.search_runs([resume.experiment_id])  # the same run, continued
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from"].endswith("last.ckpt (epoch 1)")
    assert resumed.data.metrics["epochs_trained"] == 3
