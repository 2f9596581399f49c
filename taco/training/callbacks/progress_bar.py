"""`ProgressBar`: one bar per epoch with the running loss, the rate and an ETA."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from taco.progress import Progress
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)


LOSS_EVERY_SECONDS = 0.5  # the progress bar's loss is read (a wait for the device) this often


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
