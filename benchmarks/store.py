"""Store load (`make bench-store`): N processes each log a full run at the same moment, through
taco's own `MLflowLogger`, to a new SQLite store, to a local `mlflow server` on a SQLite backend
and to one on PostgreSQL (both proxying artifacts), one after the other in one invocation, for
each N of `--processes` (8 and 16).

A full run: 80 params, 50 epochs x 30 per-class metrics (one batch per epoch), a config file, a
per-class table and a 1 MB binary artifact. Afterwards every run must be FINISHED with every
metric at every step and every artifact; the script prints runs/s (N / wall time from the common
start to the last run closed) and the slowest run for each store, and exits 1 if anything is
missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, run as a script
from tools.engines import EngineMissing, mlflow_server, postgres  # noqa: E402

EPOCHS, CLASSES, PARAMS = 50, 30, 80

ONE_RUN = f"""
import os, shutil, sys, tempfile, time
from taco.tracking.mlflow_logger import MLflowLogger
uri, start, experiment = sys.argv[1], float(sys.argv[2]), sys.argv[3]
logger = MLflowLogger(uri, experiment_name=experiment)
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
    shutil.rmtree(folder)  # the 1 MB blob: logged, not left in /tmp
print("TIMING", run.run_id, time.perf_counter() - began, flush=True)
"""


def load(uri: str, processes: int, experiment: str) -> dict:
    """Start `processes` runs at one moment; returns wall time, per-run times and failures."""
    start = time.time() + 5 + processes  # every process has imported MLflow by then (2 cores)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ONE_RUN, uri, str(start), experiment],
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


def verify(uri: str, processes: int, experiment: str) -> list[str]:
    """What is missing from the store: runs, metric steps, artifacts."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="8,16", help="writers at once, comma-separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    print(
        f"N processes x 1 run ({PARAMS} params, {EPOCHS} epochs x {CLASSES} metrics, "
        f"3 artifacts incl. 1 MB) on {os.cpu_count()} CPU cores\n"
    )
    print("| store | N | runs recorded | wall s | runs/s | slowest run s | median run s | missing")
    print("|---|---:|---:|---:|---:|---:|---:|---")
    bad = False
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        folder = Path(tmp)
        (folder / "sqlite").mkdir()
        stores = {"new SQLite file": lambda n: f"sqlite:///{folder}/sqlite/{n}.db"}
        backend = f"sqlite:///{folder}/server.db"
        on_sqlite = servers.enter_context(mlflow_server(backend, folder / "sqlite-artifacts"))
        stores["mlflow server (SQLite backend)"] = lambda n: on_sqlite
        try:
            database = servers.enter_context(postgres())
            on_pg = servers.enter_context(mlflow_server(database, folder / "pg-artifacts"))
            stores["mlflow server (PostgreSQL backend)"] = lambda n: on_pg
        except EngineMissing as err:
            print(f"(PostgreSQL left out: {err})\n")
        for label, store in stores.items():
            for n in counts:
                uri = store(n)
                experiment = f"bench-store-{n}"
                result = load(uri, n, experiment)
                problems = verify(uri, n, experiment) + [str(f) for f in result["failed"]]
                bad |= bool(problems)
                times = sorted(result["times"])
                median = times[len(times) // 2] if times else float("nan")
                print(
                    f"| {label} | {n} | {len(times)}/{n} | {result['wall']:.1f} | "
                    f"{len(times) / result['wall']:.2f} | {max(times, default=float('nan')):.1f} "
                    f"| {median:.1f} | {'; '.join(problems[:3]) or 'nothing'} |",
                    flush=True,
                )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
