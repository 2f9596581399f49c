"""Fault suite, the tracking store: parallel first use of a new SQLite store, a server that is
down, an impossible SQLite path, and a real `mlflow server` taking a parallel sweep over HTTP."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest

from taco.errors import ConfigError
from taco.tracking.store import StoreError, ensure_store, probe_server
from tests.conftest import tiny_overrides

EXE = os.path.join(os.path.dirname(sys.executable), "taco-train")

ONE_RUN = """
import sys, time
from taco.tracking.mlflow_logger import MLflowLogger
uri, start = sys.argv[1], float(sys.argv[2])
logger = MLflowLogger(uri, experiment_name="parallel")
while time.time() < start:  # all processes reach the new store at the same moment
    time.sleep(0.001)
logger.check()
with logger.run() as run:
    run.log_metrics({"x": 1.0})
"""


@pytest.mark.slow  # 19 s: 8 processes create one store at once (make test-all)
def test_parallel_first_use_of_a_new_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    start = time.time() + 8  # after every process has imported MLflow
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ONE_RUN, uri, str(start)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(e[-800:] for e in errors)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.metrics == {"x": 1.0} for r in runs)


def test_an_unreachable_server_fails_fast_with_one_line(tmp_path):
    start = time.perf_counter()
    with pytest.raises(StoreError) as err:
        probe_server("http://127.0.0.1:9/")
    assert time.perf_counter() - start < 12
    assert "MLflow tracking server http://127.0.0.1:9/ is not reachable" in str(err.value)

    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9/"}
    cmd = [EXE, *tiny_overrides(tmp_path)[:2], f"hydra.run.dir={tmp_path}/run"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 1
    mine = [ln for ln in out.stderr.splitlines() if ln.startswith("taco-train")]
    assert mine == [f"taco-train: error: {err.value}"]
    assert "Traceback" not in out.stderr


def test_a_sqlite_path_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/afile/mlflow.db"
    with pytest.raises(ConfigError, match="afile is a file, not a folder"):
        ensure_store(uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [EXE, *tiny_overrides(tmp_path)[:2], f"hydra.run.dir={tmp_path}/run"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"taco-train: error: MLflow store {uri}: {tmp_path}/afile is a file" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    port = _free_port()
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("mlflow server did not start")
            time.sleep(0.5)
    yield uri
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


@pytest.mark.slow  # 47 s with its server: a joblib sweep over HTTP (make test-all)
def test_a_parallel_sweep_over_http_records_every_run(tmp_path, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    base = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    cmd = [
        EXE,
        "-m",
        *base,
        f"hydra.sweep.dir={tmp_path}/multi",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=1,2,3",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("taco.sweep") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(runs) == 4
    assert "JoblibLauncher" in parent.data.tags["launcher"]  # hydra/launcher=joblib, 2 at a time
    assert sorted(int(c.data.tags["sweep_job"]) for c in children) == [0, 1, 2]
    assert all(c.info.status == "FINISHED" and "test/f1_macro" in c.data.metrics for c in children)
    assert "config" in {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert len(children[0].outputs.model_outputs) == 1  # the logged model, through the server
    mlflow.set_tracking_uri(mlflow_server)  # runs:/ resolves in the process-wide store
    model = mlflow.pyfunc.load_model(f"runs:/{children[0].info.run_id}/model")
    assert model.metadata.metadata["taco"]["model"] == "cnn"
