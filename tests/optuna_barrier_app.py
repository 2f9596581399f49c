"""A Hydra app for the Optuna sweeper's worker test: trial 0 waits until trials 1-4 have each
left a file, so it ends only if the other worker ran them without waiting for it (a batched
sweeper starts trial 2 only when trial 0 and 1 are both done: trial 0 then times out).
Run as `python tests/optuna_barrier_app.py -m hydra.searchpath=[file://<root>/conf] ...`."""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

OTHERS = 4  # trials 1..4


@hydra.main(version_base="1.3", config_path=None, config_name="barrier")
def main(cfg: DictConfig) -> float:
    num, folder = HydraConfig.get().job.num, Path(cfg.folder)
    if num != 0:
        (folder / f"trial_{num}").write_text(str(cfg.x))
        return float(cfg.x)
    deadline = time.time() + cfg.wait_s
    while time.time() < deadline:
        if all((folder / f"trial_{n}").exists() for n in range(1, OTHERS + 1)):
            return 1.0
        time.sleep(0.1)
    return -1.0  # trial 0 outwaited: the other worker waited for it


if __name__ == "__main__":
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(
        name="barrier",
        node={
            "defaults": [
                {"override hydra/sweeper": "taco_optuna"},
                {"override hydra/launcher": "joblib"},
                "_self_",
            ],
            "seed": 0,
            "optimized_metric": "val/x",
            "folder": "???",
            "wait_s": 120,
            "x": 0.5,
        },
    )
    main()
