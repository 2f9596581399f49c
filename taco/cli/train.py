"""`taco-train`: one training job (`taco.training.job`), or with `-m` a sweep of them, each job
through `taco.sweeps.job` and every run a child of the sweep's parent (`taco.sweeps.parent`).

Only Hydra, OmegaConf and taco's config helpers are imported at module level, so `--help` and
`--cfg job` stay fast; TensorFlow, Keras and MLflow load when a job is built.
"""

from __future__ import annotations

import shlex
import sys

import hydra
from omegaconf import DictConfig

from taco.config import CONF_DIR, in_multirun
from taco.errors import cli_errors, hydra_errors, hydra_task_started
from taco.signals import interrupts
from taco.sweeps.parent import fail_open_parents
from taco.sweeps.sweep_dir import held_sweep_dir


def resume_command() -> str:
    """This command again, with `ckpt_path=last`: each interrupted job resumes its checkpoint.
    A sweep's also names its folder, where `last` looks (a re-run sweep gets a new one)."""
    args = [a for a in sys.argv[1:] if not a.startswith("ckpt_path=")]
    folder = _sweep_dir()
    if folder and not any(a.startswith("hydra.sweep.dir=") for a in args):
        args.append(f"hydra.sweep.dir={folder}")
    return shlex.join(["taco-train", *args, "ckpt_path=last"])


def _sweep_dir() -> str | None:
    """The folder of the sweep this process started, once it has started one."""
    if "taco.sweeps.parent" not in sys.modules:
        return None

    folder = held_sweep_dir()
    return str(folder) if folder else None


def main() -> None:
    """`taco-train`: Ctrl-C or SIGTERM ends it with one line naming the command that resumes."""
    with interrupts("taco-train", resume_command):
        try:
            with hydra_errors("taco-train"):
                hydra_main()
        except SystemExit as exc:  # Hydra ends a sweep's uncaught error this way too
            if exc.code not in (0, None):  # a sweep's parent still open closes FAILED
                code = exc.code
                fail_open_parents(code if isinstance(code, str) else f"exit code {code}")
            raise


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    hydra_task_started()
    if in_multirun():
        from taco.sweeps.job import sweep_job

        return sweep_job(cfg)
    from taco.tracking.store import store_errors
    from taco.training.job import train

    uri = str(cfg.logger.get("tracking_uri") or "")  # checked whole by the logger's `check`
    with cli_errors("taco-train"), store_errors(uri, check=False):
        return train(cfg)


if __name__ == "__main__":
    main()
