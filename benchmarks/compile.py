"""Compile cache benchmark (`make bench-compile`): what the second job of a sweep still compiles.

A 2-job JAX sweep (`taco-train -m seed=1,2`, the default CNN, `logger=none`) run twice, side by
side in one run: with `trainer.compile_cache` in a new, empty folder, and with it off. Each job's
first epoch holds its compiles (XLA on JAX), its second none; printed per job, job 2's first
epoch is the figure: with the cache it loads what job 1 compiled. Both jobs run in one process
(Hydra's basic launcher), as a sweep's jobs do on one machine; a new process (another launcher, a
resumed run) finds the same cache on disk.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

EPOCH = re.compile(r"epoch (\d+)/\d+ .*?(\d+\.\d+)s$")


def sweep(
    root: Path, name: str, cache: str, extra: list[str], seeds: str = "1,2"
) -> list[list[float]]:
    """Epoch seconds of each job of one 2-job sweep, in order."""
    done = subprocess.run(
        [
            sys.executable,  # `-m taco.cli.train`: runs where no console script is installed
            "-m",
            "taco.cli.train",
            "-m",
            f"seed={seeds}",
            f"paths.data_dir={root / 'data'}",
            f"hydra.sweep.dir={root / name}",
            "logger=none",
            f"trainer.compile_cache={cache}",
            *extra,
        ],
        env={**os.environ, "KERAS_BACKEND": "jax"},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    jobs: list[list[float]] = []
    for line in (done.stdout + done.stderr).splitlines():
        match = EPOCH.search(line.strip())
        if match:
            if match.group(1) == "1":
                jobs.append([])
            jobs[-1].append(float(match.group(2)))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="more taco-train overrides")
    args = parser.parse_args()
    extra = [f"trainer.max_epochs={args.epochs}", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="taco-bench-compile-") as tmp:
        root = Path(tmp)
        sweep(root, "warm-up", "null", extra, seeds="1")  # the data set and its image cache, once
        for name, cache in (("off", "null"), ("on", str(root / "compile"))):
            jobs = sweep(root, name, cache, extra)
            firsts = ", ".join(f"job {i + 1} {job[0]:.1f} s" for i, job in enumerate(jobs))
            later = ", ".join(f"{job[-1]:.1f} s" for job in jobs)
            print(f"compile cache {name:3s}: first epoch {firsts}; last epoch {later}")


if __name__ == "__main__":
    main()
