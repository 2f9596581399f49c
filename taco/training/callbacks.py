"""Trainer callbacks, Lightning style: hooks around fitting, configured in `conf/callbacks/`.

A callback subclasses `Callback` and overrides the hooks it needs. After each epoch,
`trainer.callback_metrics` holds that epoch's metrics (`taco.metrics.EPOCH_METRICS`): `train/loss`,
`epoch_seconds` and, on validation epochs, `val/loss`, `val/f1_macro` (thresholds tuned per class)
and `val/f1_macro_fixed` (0.5). `state_dict` / `load_state_dict` carry a callback's state through
a checkpoint under its `state_key`, so a resumed run continues exactly where it stopped.
Callbacks run in `order` (lowest first): the checkpoint callback runs last, after every state it
saves has been updated.

Plain Keras callbacks (`keras.callbacks.*`) may be listed too: the Keras classifier drives them,
and they see the validation metrics in `logs` as `val_f1_macro`, `val_loss`, ...
The callbacks that log a run's reports (model, test table, previews) are in
`taco.training.reports`.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from taco.errors import ConfigError
from taco.files import disk_full_error
from taco.metrics import EPOCH_METRICS, Evaluation
from taco.progress import Progress
from taco.schema import Count, Mode, NonNegative, PositiveInt, Range
from taco.training import checkpoint

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)

LOSS_EVERY_SECONDS = 0.5  # the progress bar's loss is read (a wait for the device) this often


class Callback:
    """Override the hooks you need; each gets the Trainer and the classifier it fits."""

    order = 0  # callbacks run lowest order first

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint."""
        return type(self).__qualname__

    def check(self, classifier: BaseClassifier) -> None:
        """Refuse (ConfigError) a classifier this callback cannot serve: called when the job is
        built, before a run opens or any data work."""

    def on_fit_start(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        """Data set up, model built (and restored when resuming), before the first epoch."""

    def on_train_epoch_start(
        self, trainer: Trainer, classifier: BaseClassifier, epoch: int
    ) -> None:
        """Before epoch `epoch` (0-based) trains; `trainer.callback_metrics` is empty."""

    def on_train_batch_end(
        self, trainer: Trainer, classifier: BaseClassifier, batch: int, logs: dict
    ) -> None:
        """After each training batch, with the model's running `logs` (e.g. `loss`)."""

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        """After epoch `epoch` trained and (on validation epochs) was scored."""

    def on_fit_end(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        """After the last epoch (or an early stop), before thresholds are tuned."""

    def on_validation_end(
        self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation
    ) -> None:
        """After `Trainer.validate` tuned the thresholds (`classifier.thresholds`)."""

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        """After `Trainer.test` scored the test part with the tuned thresholds."""

    def on_exception(
        self, trainer: Trainer, classifier: BaseClassifier, error: BaseException
    ) -> None:
        """Fitting stopped on an error or an interrupt (Ctrl-C, SIGTERM); it is re-raised."""

    def state_dict(self) -> dict:
        """What a resumed run needs of this callback (JSON-serialisable)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` returned, when resuming from a checkpoint."""


def _mode(monitor: str, mode: Mode) -> str:
    """`auto`: a loss is better lower, every other metric higher."""
    if mode == "auto":
        return "min" if monitor.endswith("loss") else "max"
    return mode


class _Monitoring(Callback):
    """Tracks the best value of one epoch metric."""

    def __init__(
        self, monitor: str, mode: Mode, min_delta: Annotated[float, NonNegative] = 0.0
    ) -> None:
        if monitor not in EPOCH_METRICS:  # fails while the config is built, before any run
            raise ConfigError(
                f"callbacks: monitor must be one of {sorted(EPOCH_METRICS)}; got {monitor!r}"
            )
        self.monitor, self.mode, self.min_delta = monitor, _mode(monitor, mode), float(min_delta)
        self.best: float | None = None
        self.best_epoch = 0  # 1-based; 0 = none yet

    def current(self, trainer: Trainer) -> float | None:
        value = trainer.callback_metrics.get(self.monitor)
        return None if value is None or math.isnan(value) else float(value)

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state.get("best"), int(state.get("best_epoch", 0))


class EarlyStopping(_Monitoring):
    """Stops fitting after `patience` validation epochs without a better `monitor`."""

    def __init__(
        self,
        monitor: str = "val/f1_macro",
        patience: PositiveInt = 10,
        mode: Mode = "auto",
        min_delta: Annotated[float, NonNegative] = 0.0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.wait = 0
        self.stopped_epoch = 0

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        value = self.current(trainer)
        if value is None:
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            trainer.should_stop = True
            log.info(
                "early stopping after epoch %d: no better %s for %d validation epochs",
                epoch + 1,
                self.monitor,
                self.patience,
            )

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))


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
        import shutil

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


class LearningRateSchedule(Callback):
    """Sets the learning rate at the start of each epoch from the epoch alone (so a resumed run
    follows the same curve): linear warm-up, then `cosine` decay to `min_factor`, `step` decay
    by `gamma` every `step_epochs`, or `constant`. Factors multiply the stage's learning rate
    (the fine-tuning stage of a transfer model starts from its own, lower one)."""

    def __init__(
        self,
        schedule: Literal["cosine", "step", "constant"] = "cosine",
        warmup_epochs: Count = 0,
        min_factor: Annotated[float, Range(0, 1, open_low=True)] = 0.01,
        step_epochs: PositiveInt = 10,
        gamma: Annotated[float, Range(0, 1, open_low=True)] = 0.1,
    ) -> None:
        self.schedule, self.warmup_epochs = schedule, int(warmup_epochs)
        self.min_factor, self.step_epochs, self.gamma = (
            float(min_factor),
            int(step_epochs),
            float(gamma),
        )

    def factor(self, epoch: int, max_epochs: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        if self.schedule == "step":
            return self.gamma ** ((epoch - self.warmup_epochs) // max(self.step_epochs, 1))
        if self.schedule == "cosine":
            span = max(max_epochs - self.warmup_epochs - 1, 1)
            t = min((epoch - self.warmup_epochs) / span, 1.0)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    def on_train_epoch_start(
        self, trainer: Trainer, classifier: BaseClassifier, epoch: int
    ) -> None:
        lr = classifier.set_learning_rate_factor(self.factor(epoch, trainer.max_epochs))
        if lr is not None:
            trainer.callback_metrics["lr"] = lr


class ProgressBar(Callback):
    """One line per epoch in the log; on a terminal, a live bar per epoch (batches, rate, ETA)
    and one per validation and test pass (the Trainer's `prediction_bar`)."""

    def __init__(self, refresh_rate: int = 1, enabled: bool | None = None) -> None:
        self.refresh_rate = max(int(refresh_rate), 1)
        self.enabled = enabled  # None: live only when stderr is a terminal
        self.bar: Progress | None = None
        self._loss_read = 0.0

    def on_train_epoch_start(
        self, trainer: Trainer, classifier: BaseClassifier, epoch: int
    ) -> None:
        label = f"epoch {epoch + 1}/{trainer.epochs}"
        self.bar = Progress(
            trainer.num_training_batches, label, self.enabled, unit="batch", leave=False
        )

    def on_train_batch_end(
        self, trainer: Trainer, classifier: BaseClassifier, batch: int, logs: dict
    ) -> None:
        done = batch + 1
        if not self.bar.enabled or (done % self.refresh_rate and done != self.bar.total):
            return
        note, now = "", time.monotonic()
        if now - self._loss_read >= LOSS_EVERY_SECONDS or done == self.bar.total:
            # reading the loss waits for the step to finish on the device: twice a second,
            # not every batch, so the device is handed the next step without a pause
            self._loss_read, loss = now, (logs or {}).get("loss")
            note = f"loss {float(loss):.4f}" if loss is not None else ""
        self.bar.update(done, note)

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        if self.bar is not None:
            self.bar.close()
        m = trainer.callback_metrics
        single = classifier is not None and classifier.single_pass
        parts = ["fitted in one pass" if single else f"epoch {epoch + 1}/{trainer.epochs}"]
        if not math.isnan(m["train/loss"]):  # a forest has no loss to report
            parts.append(f"loss {m['train/loss']:.4f}")
        if "val/f1_macro" in m:
            parts += [
                f"val_loss {m['val/loss']:.4f}",
                f"val_f1_macro {m['val/f1_macro']:.3f} (fixed 0.5: {m['val/f1_macro_fixed']:.3f})",
            ]
        if "lr" in m:
            parts.append(f"lr {m['lr']:.2g}")
        log.info("  ".join(parts) + f"  {m['epoch_seconds']:.1f}s")


class LogEpochMetrics(Callback):
    """Logs each epoch's metrics (and the learning rate) to the run: the curves in MLflow."""

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        metrics = {k: v for k, v in trainer.callback_metrics.items() if not np.isnan(v)}
        trainer.logger.log_metrics(metrics, step=epoch + 1)
