"""The cost of waiting for a busy store on a store that is not busy (`make bench-store-wait`).

The same full run (80 params, 50 epochs x 30 per-class metrics, a config text) is logged to one
SQLite store through taco's `MLflowLogger`, once with every write going through `StoreWaiter`
(as always) and once with the waiter replaced by a plain call, alternating, `--repeats` times
each in this one process. Prints the median wall time of each and their ratio (1.00: no cost).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

EPOCHS, CLASSES, PARAMS = 50, 30, 80


def through_taco(uri: str) -> None:
    from taco.tracking.mlflow_logger import MLflowLogger

    with MLflowLogger(uri, experiment_name="bench").run() as run:
        run.log_params({f"param.{i}": i for i in range(PARAMS)})
        for epoch in range(1, EPOCHS + 1):
            run.log_metrics({f"val/f1/c{j}": epoch / 100 + j for j in range(CLASSES)}, step=epoch)
        run.log_text("model: cnn\n" * 50, "config/config.yaml")


def direct(uri: str) -> None:
    """The same logger, each write a plain call (no waiting, nothing kept)."""
    from taco.tracking.store_wait import StoreWaiter

    waiting = StoreWaiter.write
    StoreWaiter.write = lambda self, label, call, keep: call()
    try:
        through_taco(uri)
    finally:
        StoreWaiter.write = waiting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from taco.tracking.store import ensure_store

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        ensure_store(uri)
        direct(uri)  # warm: tables, experiment, imports
        through_taco(uri)
        times: dict[str, list[float]] = {"plain": [], "waiter": []}
        for _ in range(args.repeats):
            for name, log in (("plain", direct), ("waiter", through_taco)):
                start = time.perf_counter()
                log(uri)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:7s} median {value:.3f} s per run ({args.repeats} runs)")
    print(f"with waiter / plain calls: {medians['waiter'] / medians['plain']:.3f}")


if __name__ == "__main__":
    main()
