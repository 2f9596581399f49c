"""BatchBridge: the Keras callback inside `model.fit` that hands batch events on (its own module
because subclassing a Keras class loads Keras, which `taco.models.keras_classifier` must not at
import: the config check reads that module)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from taco.protocols import Batches, BatchHooks


class BatchBridge(keras.callbacks.Callback):
    """Inside `model.fit`: batch events to the Trainer's hooks and to the user's Keras
    callbacks (whose epoch and train events `KerasClassifier` drives itself)."""

    def __init__(
        self,
        batches: Batches,
        hooks: BatchHooks,
        user_callbacks: Sequence[keras.callbacks.Callback],
    ) -> None:
        super().__init__()
        self.batches, self.hooks, self.user_callbacks = batches, hooks, list(user_callbacks)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # `fit` draws a batch to build an unbuilt optimizer before the epoch starts: seed the
        # epoch's order and augmentation again, so it draws what (seed, epoch) says
        self.batches.set_epoch(epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.hooks.batch_started(batch)
        for callback in self.user_callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.hooks.batch_ended(batch, logs or {})
        for callback in self.user_callbacks:
            callback.on_train_batch_end(batch, logs)
