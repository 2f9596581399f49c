"""Registers the class `conf/hydra/launcher/slurm.yaml` names (the code is in
`taco.sweeps.slurm_launcher.py`), or, without hydra-submitit-launcher installed, one that says
how to install it: Hydra imports every module here for every command."""

try:
    from taco.sweeps.slurm_launcher import ResumingSlurmLauncher
except ImportError:
    from hydra_plugins.taco_launcher._missing import MissingLauncher

    class TacoSlurmLauncher(MissingLauncher):  # type: ignore[no-redef]
        needs = "hydra/launcher=slurm needs hydra-submitit-launcher: run `make setup-slurm`"

else:

    class TacoSlurmLauncher(ResumingSlurmLauncher):  # type: ignore[no-redef]
        """SLURM jobs that save, requeue and resume on preemption or at their time limit."""
