"""The commands README "Beyond one machine" shows, as the scale tests run them: each test takes
its command from here, and `tests/test_layout.py` checks that the README shows each one."""

from __future__ import annotations

# a team server: a 4-job sweep through it, the best model registered, then used by name
TEAM_SWEEP = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=team"]
TEAM_SWEEP += ["seed=1,2,3,4"]
REGISTER = ["--register", "litter"]
PREDICT = ["--model", "models:/litter/1"]
RESUME = ["ckpt_path=last"]

# Ray: a sweep at the address of `ray start --head` (every process of the cluster: RAY_AUTH_MODE)
RAY_ADDRESS = "127.0.0.1:6379"
RAY_SWEEP = ["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={RAY_ADDRESS}"]
RAY_SWEEP += ["hydra.launcher.ray.remote.num_cpus=1", "seed=1,2"]

# SLURM: a 2-job sweep, and the signal SLURM sends before preemption or the time limit
SLURM_SWEEP = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug"]
SLURM_SWEEP += ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "seed=1,2"]
PREEMPT = ["scancel", "--signal=USR2"]


def ray_sweep(address: str) -> list[str]:
    """RAY_SWEEP at the test cluster's own address (a free port)."""
    return [a.replace(RAY_ADDRESS, address) for a in RAY_SWEEP]


SHOWN = {  # as the README writes them (its placeholders where a test has its own value)
    "team sweep": "taco-train " + " ".join(TEAM_SWEEP),
    "register": "taco-compare " + " ".join(REGISTER),
    "predict": "taco-predict " + " ".join(PREDICT),
    "resume": " ".join(RESUME),
    "ray sweep": "taco-train " + " ".join(RAY_SWEEP),
    "slurm sweep": "taco-train " + " ".join(SLURM_SWEEP),
    "preempt": " ".join(PREEMPT),
}
