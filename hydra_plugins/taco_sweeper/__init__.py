"""Hydra loads sweepers only from the `hydra_plugins` package: this registers the class that
`conf/hydra/sweeper/taco_optuna.yaml` names (the code is in `taco.sweeps.optuna_sweeper`)."""

from taco.sweeps.optuna_sweeper import OptunaSweeper


class TacoOptunaSweeper(OptunaSweeper):
    """Optuna 5: pruned through the Trainer, no batches, the study in an RDB storage."""
