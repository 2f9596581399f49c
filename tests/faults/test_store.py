"""Fault suite, the tracking store: parallel first use of a new SQLite store, a server that is
down, an impossible SQLite path, and a real `mlflow server` taking a parallel sweep over HTTP."""

import os
import subprocess
import sys
import time

import mlflow
import pytest

from taco.errors import ConfigError
from taco.tracking.store import StoreError, ensure_store, probe_server
from tests.helpers import script

EXE = script("taco-train")

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


@pytest.mark.subprocess
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


def test_an_unreachable_server_fails_fast_with_one_line(tmp_path, tiny_overrides, command):
    start = time.perf_counter()
    with pytest.raises(StoreError) as err:
        probe_server("http://127.0.0.1:9/")
    assert time.perf_counter() - start < 12
    assert "MLflow tracking server http://127.0.0.1:9/ is not reachable" in str(err.value)

    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9/"}
    args = [*tiny_overrides(tmp_path)[:2], f"hydra.run.dir={tmp_path}/run"]
    out = command("taco-train", *args, env=env)
    assert out.returncode == 1
    mine = [ln for ln in out.stderr.splitlines() if ln.startswith("taco-train")]
    assert mine == [f"taco-train: error: {err.value}"]
    assert "Traceback" not in out.stderr


def test_a_sqlite_path_under_a_file_is_one_line(tmp_path, tiny_overrides, command):
    (tmp_path / "afile").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/afile/mlflow.db"
    with pytest.raises(ConfigError, match="afile is a file, not a folder"):
        ensure_store(uri)
    args = [*tiny_overrides(tmp_path)[:2], f"hydra.run.dir={tmp_path}/run"]
    out = command("taco-train", *args, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"taco-train: error: MLflow store {uri}: {tmp_path}/afile is a file" in out.stderr


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    from tools.engines import mlflow_server

    with mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "server-artifacts", 1) as uri:
        yield uri


@pytest.mark.subprocess
@pytest.mark.slow  # 47 s with its server: a joblib sweep over HTTP (make test-all)
def test_a_parallel_sweep_over_http_records_every_run(
    tmp_path, tiny_overrides, mlflow_server, monkeypatch
):
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


def _damage(db, how: str) -> None:
    data = db.read_bytes()
    if how == "garbage":  # 16 kB of garbage in the middle
        middle = len(data) // 2
        db.write_bytes(data[:middle] + os.urandom(16384) + data[middle + 16384 :])
    else:  # cut to half
        db.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_store_is_one_line_for_every_command(tmp_path, tiny_overrides, command, how):
    from taco.tracking.mlflow_logger import MLflowLogger

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    logger = MLflowLogger(uri, experiment_name="taco")
    logger.check()
    for i in range(40):  # a store of some size, so that the damage hits tables
        with logger.run() as run:
            run.log_metrics({f"m{j}": float(j) for j in range(30)}, step=i)
            run.log_params({f"p{j}": "x" * 200 for j in range(20)})
    _damage(db, how)
    commands = {
        "taco-train": [*tiny_overrides(tmp_path), f"hydra.run.dir={tmp_path}/run"],
        "taco-compare": [],
        "taco-predict": ["--model", "0123abcd", str(tmp_path)],
        "taco-eval": ["run_id=0123abcd", f"hydra.run.dir={tmp_path}/eval"],
    }
    for name, args in commands.items():
        out = command(name, *args, env={"MLFLOW_TRACKING_URI": uri})
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1, (name, out.stderr[-3000:])
        assert len(lines) == 1 and lines[0].startswith(f"{name}: error: MLflow store {db}"), (
            name,
            out.stderr[-3000:],
        )
        assert "is damaged" in lines[0] and ".recover" in lines[0] and "backup" in lines[0]


LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def _hold_lock_during_a_run(tiny_overrides, tmp_path, seconds: float, epochs: int):
    """taco-train while another process holds the SQLite store exclusively for `seconds`
    (longer than MLflow's own 20 s busy timeout), starting once the run is open."""
    db = tmp_path / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    overrides = [*tiny_overrides(tmp_path), f"trainer.max_epochs={epochs}"]
    cmd = [EXE, *overrides, "callbacks.early_stopping=null", f"hydra.run.dir={tmp_path}/run"]
    train = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 120
    while time.time() < deadline and not runs_in(db, "RUNNING"):
        time.sleep(0.2)
    lock = subprocess.Popen(
        [sys.executable, "-c", LOCK, str(db), str(seconds)], stdout=subprocess.PIPE
    )
    assert lock.stdout.readline().strip() == b"locked"
    locked_at = time.time()
    out, err = train.communicate(timeout=seconds + 300)
    lock.wait(timeout=seconds + 30)
    return train.returncode, out + err, locked_at


def runs_in(db, status: str) -> bool:
    import sqlite3

    if not db.is_file():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        rows = conn.execute("SELECT count(*) FROM runs WHERE status = ?", (status,)).fetchone()
        conn.close()
        return bool(rows and rows[0])
    except sqlite3.Error:
        return False


@pytest.mark.subprocess
@pytest.mark.slow  # 40 s and 75 s (MLflow waits 20 s per refused write): make test-faults runs them
@pytest.mark.parametrize("seconds", [25, 60], ids=["25s", "60s"])
def test_a_store_locked_by_another_process_is_waited_for(tmp_path, tiny_overrides, seconds):
    code, err, _ = _hold_lock_during_a_run(tiny_overrides, tmp_path, seconds, epochs=6)
    assert code == 0, err[-3000:]
    assert "is busy" in err and "answers again" in err
    assert "Traceback" not in err
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in sorted(history, key=lambda m: m.timestamp)] == [1, 2, 3, 4, 5, 6]
    assert "test/f1_macro" in run.data.metrics


def test_the_waiter_keeps_writes_in_order_and_gives_up_in_one_line(caplog):
    """The waiter's own logic, on a store that refuses as SQLite does when locked: writes kept
    in order while training goes on, landed when it answers, one line when it never does."""
    from taco.tracking import store_wait
    from taco.tracking.store_wait import StoreWaiter

    class Locked(Exception):
        error_code = "TEMPORARILY_UNAVAILABLE"

    landed, busy = [], [True]

    def write(value):
        def call():
            if busy[0]:
                raise Locked("(sqlite3.OperationalError) database is locked")
            landed.append(value)

        return call

    waiter = StoreWaiter("sqlite:///x.db", timeout=1.0)
    for step in range(3):
        waiter.write("metrics", write(step), keep=True)  # returns at once: training goes on
    assert landed == [] and len(waiter.pending) == 3
    busy[0] = False
    waiter.flush(block=True)
    assert landed == [0, 1, 2]
    assert "is busy" in caplog.text and "the 3 kept write(s) landed in order" in caplog.text

    busy[0] = True
    waiter.write("metrics", write(3), keep=True)
    start = time.perf_counter()
    said = r"still refused writes after waiting \d+ s at the end \(logger.store_timeout=1s; .*1 wr"
    with pytest.raises(StoreError, match=said):
        waiter.flush(block=True)
    assert time.perf_counter() - start < 1.0 + store_wait.MAX_DELAY_S
    with pytest.raises(StoreError, match="is damaged"):
        StoreWaiter("sqlite:///x.db", 1.0).write(
            "m", lambda: (_ for _ in ()).throw(Exception("database disk image is malformed")), True
        )


def test_a_server_that_does_not_answer_fails_a_write_in_seconds_not_minutes(monkeypatch):
    """Over HTTP the waiter must see a refusal quickly to keep the write and let the epochs go
    on; MLflow's own retries would hold the training thread for minutes (7 tries, backing off)."""
    import socket

    import mlflow

    from taco.tracking.store_wait import HTTP_FAIL_FAST, fail_fast_over_http, is_passing

    for name in HTTP_FAIL_FAST:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:  # a port nothing listens on: the server is down
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fail_fast_over_http(uri)
    start = time.perf_counter()
    with pytest.raises(Exception) as refused:  # noqa: PT011  (MLflow's own exception types)
        mlflow.MlflowClient(uri).get_experiment_by_name("taco")
    assert time.perf_counter() - start < 15
    assert is_passing(refused.value)  # kept by the waiter, tried again later


def _log_same_dataset(uri: str, record: dict, barrier) -> str:
    from taco.tracking.mlflow_logger import MLflowLogger

    logger = MLflowLogger(tracking_uri=uri, experiment_name="together")
    logger.check()
    with logger.run():
        barrier.wait(timeout=60)
        logger.log_dataset(record)
    return logger.run_id


@pytest.mark.subprocess
def test_jobs_logging_the_same_dataset_at_once_all_finish(tmp_path):
    """Parallel jobs of a sweep name the same data at the same moment: MLflow's look-up-then-
    insert lets one insert collide (UNIQUE constraint on datasets); the waiter tries it again,
    it finds the dataset, and every job keeps its run and its dataset input."""
    import multiprocessing

    import mlflow

    from taco.tracking.store import ensure_store

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ensure_store(uri)
    record = {
        "dataset": "synthetic",
        "source": str(tmp_path / "annotations.json"),
        "annotation_sha256": "ab" * 32,
        "class_names": ["Bottle", "Can"],
        "train": [1, 2],
        "val": [3],
        "test": [4],
    }
    jobs = 6
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(jobs)
        with context.Pool(jobs) as pool:
            run_ids = pool.starmap(_log_same_dataset, [(uri, record, barrier)] * jobs)
    client = mlflow.MlflowClient(uri)
    runs = [client.get_run(r) for r in run_ids]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(r.inputs.dataset_inputs) == 1 for r in runs)
    assert len({r.inputs.dataset_inputs[0].dataset.digest for r in runs}) == 1
