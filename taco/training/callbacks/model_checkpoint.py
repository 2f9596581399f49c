"""`ModelCheckpoint`: the `.ckpt` after every epoch (`last`, and `best` of the monitored metric),
so an interrupted run resumes with `ckpt_path=last`; the best epoch restored at the end of the
fit."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taco.errors import ConfigError
from taco.files import disk_full_error
from taco.metrics import Evaluation
from taco.schema import Mode
from taco.training import checkpoint
from taco.training.callbacks.base import _Monitoring

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)


class ModelCheckpoint(_Monitoring):
    """Keeps the best epoch by `monitor` (restored after fitting) and writes `last.ckpt` each
    epoch, so an interrupted run resumes with `ckpt_path=last`.

    `dirpath=null` keeps everything in memory: best weights are still restored, nothing is
    written and the run cannot be resumed.
    """

    order = 100  # last: the checkpoint holds every other callback's state of the epoch

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str = "val/f1_macro",
        mode: Mode = "auto",
        save_last: bool = True,
        save_best: bool = True,
        restore_best: bool = True,
    ) -> None:
        super().__init__(monitor, mode)
        self.dirpath = Path(dirpath) if dirpath else None
        self.save_last, self.save_best, self.restore_best = save_last, save_best, restore_best
        self.best_state: Any = None
        self.last_path: Path | None = None

    def writes(self, trainer: Trainer) -> bool:
        return self.dirpath is not None and not trainer.fast_dev_run

    def on_fit_start(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        if not self.writes(trainer):
            return
        owner = checkpoint.live_owner(self.dirpath)
        if owner is not None:
            raise ConfigError(
                f"{self.dirpath}: {owner} is training into this folder; give this run its own "
                "(callbacks.model_checkpoint.dirpath, or hydra.run.dir)"
            )
        checkpoint.claim(self.dirpath)
        self._carry_best(trainer)
        if self.save_last and trainer.logger.active:
            trainer.logger.set_tags({"checkpoint": str(self.dirpath / checkpoint.LAST)})

    def _carry_best(self, trainer: Trainer) -> None:
        """Resumed from another folder: its best epoch comes along, so the weights restored at
        the end are the best ones whenever that epoch came."""
        if trainer.ckpt_path is None or not self.save_best:
            return
        source, target = trainer.ckpt_path.parent / checkpoint.BEST, self.dirpath / checkpoint.BEST
        if source.is_file() and source.resolve() != target.resolve():
            tmp = target.with_name(f".{target.name}.carry.tmp")
            try:
                shutil.copyfile(source, tmp)
                tmp.replace(target)
            except OSError as exc:
                raise disk_full_error(target, exc) from None
            finally:
                tmp.unlink(missing_ok=True)
            log.info("resumed: carried the best epoch's checkpoint %s into %s", source, target)

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        value = self.current(trainer)
        if value is not None and self.improved(value):
            self.best, self.best_epoch = value, epoch + 1
            if self.restore_best:
                self.best_state = classifier.get_state()
            if self.save_best and self.writes(trainer):
                trainer.checkpoints.save(self.dirpath / checkpoint.BEST)
        if self.save_last and self.writes(trainer):
            self.last_path = trainer.checkpoints.save(self.dirpath / checkpoint.LAST)
        if self.writes(trainer):
            checkpoint.heartbeat(self.dirpath)

    def on_fit_end(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        best = self._restore_best(trainer, classifier)
        trainer.logger.log_metrics({"best_epoch": best})
        if self.writes(trainer):
            checkpoint.release(self.dirpath)

    def _restore_best(self, trainer: Trainer, classifier: BaseClassifier) -> int:
        """The best epoch's weights into the classifier; returns the epoch now held."""
        if not self.restore_best or not self.best_epoch:
            return trainer.epochs_completed
        if self.best_state is not None:
            classifier.set_state(self.best_state)
        elif self.best_epoch == trainer.epochs_completed:
            pass  # the weights in hand are the best ones
        elif self.save_best and self.writes(trainer):
            trainer.checkpoints.load_weights(self.dirpath / checkpoint.BEST)  # resumed: on disk
        else:
            log.warning(
                "the best epoch (%d) came before the resumption and was not saved "
                "(callbacks.model_checkpoint.save_best=false): keeping the last weights",
                self.best_epoch,
            )
            return trainer.epochs_completed
        log.info("restored the weights of epoch %d (best %s)", self.best_epoch, self.monitor)
        return self.best_epoch

    def on_exception(
        self, trainer: Trainer, classifier: BaseClassifier, error: BaseException
    ) -> None:
        if self.dirpath is not None:
            checkpoint.release(self.dirpath)
        if isinstance(error, KeyboardInterrupt) and self.last_path is not None:
            print(
                f"\ninterrupted after epoch {trainer.epochs_completed}, saved in "
                f"{self.last_path}; continue this run with the same overrides plus "
                "ckpt_path=last",
                file=sys.stderr,
            )

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        """The run finished: neither its checkpoints nor the one it resumed from are `last`."""
        trainer.checkpoints.mark_finished(self.dirpath if self.last_path is not None else None)
