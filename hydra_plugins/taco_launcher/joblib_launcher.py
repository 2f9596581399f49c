"""Hydra loads launchers only from the `hydra_plugins` package: this registers the class that
`conf/hydra/launcher/joblib.yaml` names (the code is in `taco.sweeps.joblib_launcher.py`)."""

from taco.sweeps.joblib_launcher import ProcessPerJobLauncher


class TacoJoblibLauncher(ProcessPerJobLauncher):
    """The joblib launcher's settings, each job in a process of its own."""
