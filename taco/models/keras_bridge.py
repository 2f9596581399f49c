"""Inside `model.fit`: batch events handed to the Trainer's hooks without stopping the device
(its own module because subclassing a Keras class loads Keras, which
`taco.models.keras_classifier` must not at import: the config check reads that module).

Keras' `CallbackList` turns every batch's logs into Python numbers before any callback sees them
(unless every callback is marked async-safe). Each conversion waits for that step to finish, so
the host reads the next batch only once the device is idle: a quarter of an H200's time went
there. `FitCallbacks` hands the logs on as the backend returns them (`StepLogs`): a number is
fetched only when someone reads it (the progress bar, every half second; the profiler).

On TensorFlow, Keras wraps a `PyDataset` in a new `tf.data` pipeline at every `fit` and
`predict`; with one `fit` and one validation pass per epoch that cost about 0.1 s an epoch on a
CPU (a GPU epoch of VGG16 on TACO is 0.25 s). `model_input` builds the pipeline once per batches
object and gives Keras the step count, so an epoch ends without the extra step that finds the
data exhausted.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from taco.protocols import Batches, BatchHooks


class StepLogs(Mapping):
    """One step's logs; a value becomes a Python number when read (reading waits for the step
    to finish on the device, which `Mapping`'s other methods never do)."""

    def __init__(self, logs: Mapping[str, Any] | None) -> None:
        self._logs = dict(logs or {})

    def __getitem__(self, key: str) -> Any:
        value = np.asarray(self._logs[key])
        return value.item() if value.size == 1 else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._logs)

    def __len__(self) -> int:
        return len(self._logs)


class FitCallbacks(keras.callbacks.CallbackList):
    """Keras' callback list with the batch hooks left lazy: `on_train_batch_*` pass the step's
    logs on unconverted (every other hook converts them, as Keras does)."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)


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
        self.batches, self.hooks = batches, hooks
        # only those with batch hooks of their own get each batch's logs, as numbers
        self.user_callbacks = [c for c in user_callbacks if _has_batch_hooks(c)]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # `fit` draws a batch to build an unbuilt optimizer before the epoch starts: seed the
        # epoch's order and augmentation again, so it draws what (seed, epoch) says
        self.batches.set_epoch(epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.hooks.batch_started(batch)
        for callback in self.user_callbacks:
            callback.on_train_batch_begin(batch, dict(StepLogs(logs)))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = StepLogs(logs)
        self.hooks.batch_ended(batch, step)
        if self.user_callbacks:
            numbers = dict(step)
            for callback in self.user_callbacks:
                callback.on_train_batch_end(batch, numbers)


def fit_callbacks(
    model: keras.Model,
    batches: Batches,
    hooks: BatchHooks,
    user_callbacks: Sequence[keras.callbacks.Callback],
    epochs: int,
) -> FitCallbacks:
    """What one `model.fit` epoch runs with: the bridge and Keras' History (its loss)."""
    bridge = BatchBridge(batches, hooks, user_callbacks)
    return FitCallbacks(
        [bridge], add_history=True, model=model, verbose=0, epochs=epochs, steps=len(batches)
    )


def _has_batch_hooks(callback: keras.callbacks.Callback) -> bool:
    base = keras.callbacks.Callback
    hooks = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
    return any(getattr(type(callback), h) is not getattr(base, h) for h in hooks)


_PIPELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # batches -> tf.data


def model_input(batches: Batches) -> tuple[Any, int | None]:
    """(what `model.fit` or `predict` reads, steps per pass): on TensorFlow one `tf.data`
    pipeline per batches object, reused by every epoch's pass; elsewhere the batches."""
    if keras.backend.backend() != "tensorflow":
        return batches, None
    if batches not in _PIPELINES:
        _PIPELINES[batches] = _tf_pipeline(batches)
    return _PIPELINES[batches], len(batches)


def _tf_pipeline(batches: Batches) -> Any:
    """The batches of the epoch current when a `fit` starts reading, in order (Keras' own
    `PyDataset` pipeline, built once)."""
    import tensorflow as tf

    first = batches[0]  # its shapes and dtypes (kept: the epoch's first read takes it back)
    spec = tuple(
        tf.TensorSpec((None, *np.shape(part)[1:]), tf.as_dtype(np.asarray(part).dtype))
        for part in first
    )
    ref = weakref.ref(batches)  # the pipeline must not keep its batches alive

    def epoch() -> Iterator[tuple[np.ndarray, ...]]:
        source = ref()
        for index in range(len(source) if source is not None else 0):
            yield source[index]

    return tf.data.Dataset.from_generator(epoch, output_signature=spec).prefetch(2)
