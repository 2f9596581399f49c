"""A trial of an Optuna search (`hparams_search=optuna`) that stops when it cannot win: each
validation epoch reports the monitored metric to the trial, and when the study's pruner says so
the fit stops after that epoch, as an early stop does. The rest of the job runs as usual, on the
best epoch so far: thresholds tuned on validation, the test evaluation and the run's reports
(a second's work next to an epoch, and a pruned run stays comparable with the others in
`taco-compare`). The run ends FINISHED, tagged `optuna.state=PRUNED` and
`optuna.pruned_epoch`; the sweeper reads the trial's `pruned_epoch` and tells Optuna PRUNED.

The trial is found in the study's storage by its number (`trial`, set by the sweeper for each
job), so it works in any process the launcher starts, on any machine that reaches the storage.
Without a trial number (a single run of a search's config) it does nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from taco.config import default_tracking_uri
from taco.errors import ConfigError
from taco.metrics import EPOCH_METRICS
from taco.sweeps.optuna_study import open_storage, storage_url
from taco.tracking.tags import Tag
from taco.training.callbacks import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)

PRUNED_ATTR = "pruned_epoch"  # the trial's user attribute: the epoch its fit stopped after


class OptunaPruning(Callback):
    """Reports `monitor` to the trial each validation epoch; stops the fit when it is pruned."""

    order = 50  # after early stopping and the epoch curves, before the checkpoint (100)

    def __init__(
        self,
        trial: int | None = None,
        monitor: str = "val/f1_macro",
        storage: str | None = None,
        study_name: str | None = None,
        pruner: Any = None,
    ) -> None:
        if monitor not in EPOCH_METRICS:
            raise ConfigError(
                f"callbacks.optuna_pruning.monitor must be one of {sorted(EPOCH_METRICS)}; "
                f"got {monitor!r}"
            )
        self.number, self.monitor = trial, monitor
        self.storage, self.study_name = storage, study_name  # null: the sweeper's own
        self.pruner = pruner  # with storage and study_name: outside a sweep (a script, a test)
        self.trial: Any = None
        self.pruned_epoch = 0

    def on_fit_start(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        if self.number is None:
            return
        import optuna

        url, name, pruner = self._study(trainer)
        storage = open_storage(storage_url(url, ""))
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, int(self.number)
        )
        self.trial = optuna.Trial(study, trial_id)
        trainer.logger.set_tags({Tag.OPTUNA_TRIAL: str(self.number), Tag.OPTUNA_STUDY: name})

    def _study(self, trainer: Trainer) -> tuple[str, str, Any]:
        """The study's storage URL, name and pruner: the sweep's (Hydra's runtime config of
        this job; the storage beside this run's MLflow store when the sweeper's is null), or
        as set here. The pruner is not in the storage: each job builds the sweep's own."""
        if self.storage and self.study_name:
            return str(self.storage), str(self.study_name), self.pruner
        sweeper = HydraConfig.get().sweeper
        store = trainer.logger.tracking_uri or default_tracking_uri()
        url = storage_url(self.storage or sweeper.get("storage"), store)
        pruner = sweeper.get("pruner")
        built = instantiate(pruner) if pruner is not None and pruner.get("_target_") else None
        return url, str(self.study_name or sweeper.study_name), built

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is None or value is None or self.pruned_epoch:
            return
        self.trial.report(float(value), step=epoch + 1)
        if not self.trial.should_prune():
            return
        self.pruned_epoch = epoch + 1
        self.trial.set_user_attr(PRUNED_ATTR, self.pruned_epoch)
        trainer.should_stop = True
        trainer.logger.set_tags(
            {Tag.OPTUNA_STATE: "PRUNED", Tag.OPTUNA_PRUNED_EPOCH: str(self.pruned_epoch)}
        )
        log.info(
            "trial %s pruned after epoch %d (%s %.4f): validation and test run on its best "
            "epoch so far",
            self.number,
            self.pruned_epoch,
            self.monitor,
            value,
        )

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Any) -> None:
        if self.trial is not None and not self.pruned_epoch:
            trainer.logger.set_tags({Tag.OPTUNA_STATE: "COMPLETE"})

    def state_dict(self) -> dict:
        return {"pruned_epoch": self.pruned_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.pruned_epoch = int(state.get("pruned_epoch", 0))
