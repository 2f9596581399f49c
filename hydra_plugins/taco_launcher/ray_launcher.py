"""Registers the class `conf/hydra/launcher/ray.yaml` names (the code is in
`taco.sweeps.ray_launcher.py`), or, without hydra-ray-launcher installed, one that says how to
install it: Hydra imports every module here for every command."""

try:
    from taco.sweeps.ray_launcher import TaskPerJobRayLauncher
except ImportError:
    from hydra_plugins.taco_launcher._missing import MissingLauncher

    class TacoRayLauncher(MissingLauncher):  # type: ignore[no-redef]
        needs = "hydra/launcher=ray needs hydra-ray-launcher: run `make setup-ray`"

else:

    class TacoRayLauncher(TaskPerJobRayLauncher):  # type: ignore[no-redef]
        """Ray jobs collected one by one: a dead worker costs one job, Ctrl-C cancels them all."""
