"""One 4-job sweep on every launcher (`make bench-launchers`): the same `taco-train -m` on the
basic launcher, joblib (2 jobs at once), a Ray cluster of this machine and a one-node SLURM
cluster of this machine (each 2 jobs at once), one after the other in one invocation; the engines
are started by `tools/engines.py` before the timed sweep. Prints each sweep's wall time, its ratio
to the basic launcher's, and whether every job's per-class test F1 equals the basic launcher's.
On 2 cores the point is that each works and what it costs, not speed.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tools/, run as a script
from tools.engines import RAY_CLIENT_ENV, EngineMissing, ray_cluster, slurm_cluster  # noqa: E402

SETTINGS = [
    "dataset.generator.num_images=200",
    "model.image_size=64",
    "trainer.max_epochs=2",
    "dataset.num_workers=0",
    "seed=1,2,3,4",
]
LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "ray": ["hydra/launcher=ray", "hydra.launcher.ray.remote.num_cpus=1"],
    "slurm": ["hydra/launcher=slurm", "hydra.launcher.partition=debug"]
    + ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"],
}


def sweep(folder: Path, name: str, extra: list[str], env: dict[str, str]) -> float:
    """Wall time of the 4-job sweep on one launcher; exits on a failed sweep."""
    command = [str(Path(sys.executable).with_name("taco-train")), "-m", *SETTINGS, *extra]
    command += [f"paths.data_dir={folder}/data", f"paths.root_dir={folder}"]
    command += [f"hydra.sweep.dir={folder}/{name}", f"logger.experiment_name={name}"]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{name}: the sweep failed:\n{done.stderr[-3000:]}")
    return wall


def per_class(uri: str, name: str) -> dict[str, dict[str, float]]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return {
        r.data.params["seed"]: {k: v for k, v in r.data.metrics.items() if k.startswith("test/f1/")}
        for r in runs
        if "seed" in r.data.params
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launchers", default=",".join(LAUNCHERS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, contextlib.ExitStack() as engines:
        folder = Path(tmp)
        uri = f"sqlite:///{folder}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, **RAY_CLIENT_ENV}
        # the data set and the store made once, outside the timed sweeps
        subprocess.run(
            [str(Path(sys.executable).with_name("taco-train")), *SETTINGS[:-1], "seed=1"]
            + [f"paths.data_dir={folder}/data", f"paths.root_dir={folder}", "logger=none"],
            env=env,
            capture_output=True,
            check=True,
        )
        print(f"4-job sweep ({' '.join(SETTINGS)}) on {os.cpu_count()} CPU cores\n")
        print("| launcher | wall s | vs basic | per-class F1 = basic |")
        print("|---|---:|---:|---|")
        basic_wall, reference = None, None
        for name in args.launchers.split(","):
            extra = list(LAUNCHERS[name])
            try:
                if name == "ray":
                    address = engines.enter_context(ray_cluster(cpus=2))
                    extra.append(f"hydra.launcher.ray.init.address={address}")
                if name == "slurm":
                    env = {**env, **engines.enter_context(slurm_cluster(folder / "slurm"))}
            except EngineMissing as err:
                print(f"| {name} | - | - | not run: {err} |")
                continue
            wall = sweep(folder, name, extra, env)
            scores = per_class(uri, name)
            if name == "basic":
                basic_wall, reference = wall, scores
            same = "yes" if reference and scores == reference else "no" if reference else "-"
            ratio = f"{wall / basic_wall:.2f}" if basic_wall else "-"
            print(f"| {name} | {wall:.1f} | {ratio} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
