"""Store load (`make bench-store`): N processes each log a full run at the same moment, through
taco's own `MLflowLogger`, to a new SQLite store and to a local `mlflow server` (SQLite backend,
proxied artifacts), one after the other in one invocation.

A full run: 80 params, 50 epochs x 30 per-class metrics (one batch per epoch), a config file, a
per-class table and a 1 MB binary artifact. Afterwards every run must be FINISHED with every
metric at every step and every artifact; the script prints runs/s (N / wall time from the common
start to the last run closed) and the slowest run for each store, and exits 1 if anything is
missing.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

EPOCHS, CLASSES, PARAMS = 50, 30, 80

ONE_RUN = f"""
import os, sys, tempfile, time
from taco.tracking.mlflow_logger import MLflowLogger
uri, start = sys.argv[1], float(sys.argv[2])
logger = MLflowLogger(uri, experiment_name="bench-store")
while time.time() < start:
    time.sleep(0.001)
began = time.perf_counter()
logger.check()
with logger.run() as run:
    run.log_params({{f"param.{{i}}": i for i in range({PARAMS})}})
    for epoch in range(1, {EPOCHS} + 1):
        values = {{f"val/f1/class_{{j}}": epoch / 100 + j for j in range({CLASSES})}}
        run.log_metrics(values, step=epoch)
    run.log_text("model: cnn\\n" * 50, "config/config.yaml")
    run.log_text("| class | f1 |\\n" * {CLASSES}, "per_class_test.md")
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "blob.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    run.log_artifacts(folder, "model")
print("TIMING", run.run_id, time.perf_counter() - began, flush=True)
"""


def load(uri: str, processes: int) -> dict:
    """Start `processes` runs at one moment; returns wall time, per-run times and failures."""
    start = time.time() + 10  # every process has imported MLflow by then
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ONE_RUN, uri, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    results = [p.communicate(timeout=900) for p in procs]
    wall = time.time() - start
    timings = [_timing(out) for out, _ in results]
    times = [t for t in timings if t is not None]
    failed = [
        err.strip().splitlines()[-1:]
        for (_, err), t in zip(results, timings, strict=True)
        if t is None
    ]
    return {"wall": wall, "times": times, "failed": failed}


def _timing(stdout: str) -> float | None:
    """The run's time from its TIMING line (MLflow prints its own lines around it)."""
    for line in stdout.splitlines():
        if line.startswith("TIMING "):
            return float(line.split()[2])
    return None


def verify(uri: str, processes: int) -> list[str]:
    """What is missing from the store: runs, metric steps, artifacts."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("bench-store")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    problems = [] if len(runs) == processes else [f"{len(runs)} runs of {processes}"]
    for run in runs:
        name = run.info.run_id[:8]
        if run.info.status != "FINISHED":
            problems.append(f"run {name} is {run.info.status}")
        if len(run.data.params) < PARAMS:
            problems.append(f"run {name}: {len(run.data.params)} params")
        for j in range(CLASSES):
            steps = {
                m.step for m in client.get_metric_history(run.info.run_id, f"val/f1/class_{j}")
            }
            if steps != set(range(1, EPOCHS + 1)):
                problems.append(f"run {name}: class_{j} has {len(steps)} of {EPOCHS} steps")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        if not {"config", "model", "per_class_test.md"} <= artifacts:
            problems.append(f"run {name}: artifacts {sorted(artifacts)}")
    return problems


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder}/server.db",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return server, uri
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("mlflow server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    print(
        f"{args.processes} processes x 1 run ({PARAMS} params, {EPOCHS} epochs x {CLASSES} "
        f"metrics, 3 artifacts incl. 1 MB) on {os.cpu_count()} CPU cores\n"
    )
    print("| store | runs recorded | wall s | runs/s | slowest run s | median run s | missing |")
    print("|---|---:|---:|---:|---:|---:|---|")
    bad = False
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server, server_uri = start_server(folder / "server")
        try:
            stores = {
                "new SQLite file": f"sqlite:///{folder}/sqlite/mlflow.db",
                "mlflow server (SQLite backend)": server_uri,
            }
            for label, uri in stores.items():
                result = load(uri, args.processes)
                problems = verify(uri, args.processes) + [str(f) for f in result["failed"]]
                bad |= bool(problems)
                times = sorted(result["times"])
                median = times[len(times) // 2] if times else float("nan")
                print(
                    f"| {label} | {len(times)}/{args.processes} | {result['wall']:.1f} | "
                    f"{len(times) / result['wall']:.2f} | {max(times, default=float('nan')):.1f} "
                    f"| {median:.1f} | {'; '.join(problems[:3]) or 'nothing'} |"
                )
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
