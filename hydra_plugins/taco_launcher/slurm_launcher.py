"""Registers the class `conf/hydra/launcher/slurm.yaml` names (the code is in
`taco.sweeps.slurm_launcher.py`), or, without hydra-submitit-launcher installed, one that says
how to install it: Hydra imports every module here for every command."""

from typing import Any

from hydra.plugins.launcher import Launcher

try:
    from taco.sweeps.slurm_launcher import ResumingSlurmLauncher
except ImportError:

    class TacoSlurmLauncher(Launcher):  # type: ignore[no-redef]
        def __init__(self, **settings: Any) -> None:
            from taco.errors import ConfigError

            raise ConfigError(
                "hydra/launcher=slurm needs hydra-submitit-launcher: run `make setup-slurm`"
            )

else:

    class TacoSlurmLauncher(ResumingSlurmLauncher):  # type: ignore[no-redef]
        """SLURM jobs that save, requeue and resume on preemption or at their time limit."""
