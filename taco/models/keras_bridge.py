"""Inside `model.fit`: the Trainer's epoch and batch hooks, without stopping the device (its
own module because subclassing a Keras class loads Keras, which `taco.models.keras_classifier`
must not at import: the config check reads that module).

A fit runs every epoch of a stage; the Trainer's work between epochs (validation, callbacks,
checkpoints, early stopping) runs at each epoch's end, inside it (`EpochBridge`).

Keras' `CallbackList` turns every batch's logs into Python numbers before any callback sees them
(unless every callback is marked async-safe). Each conversion waits for that step to finish, so
the host reads the next batch only once the device is idle (issue 33 measured the Trainer at
0.75 of a raw fit on an H200). `FitCallbacks` hands the logs on as the backend returns them
(`StepLogs`): a number is fetched only when read (the progress bar: twice a second).

On TensorFlow, Keras wraps a `PyDataset` in a new `tf.data` pipeline at every `fit` and
`predict`; with one `fit` and one validation pass per epoch that cost about 0.1 s an epoch on a
CPU (a GPU epoch of VGG16 on TACO is 0.25 s). `model_input` builds the pipeline once per batches
object and gives Keras the step count, so an epoch ends without the extra step that finds the
data exhausted.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from taco.protocols import Batches, EpochHooks


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


class EpochBridge(keras.callbacks.Callback):
    """Inside `model.fit`: each epoch's start and end to the Trainer's hooks (the end runs its
    validation, callbacks and checkpoints, and may stop the fit), then to the classifier's
    user Keras callbacks; batch events to the Trainer and to those of the user's callbacks that
    have batch hooks."""

    def __init__(
        self, hooks: EpochHooks, classifier: Any, user_callbacks: Sequence[Any] = ()
    ) -> None:
        super().__init__()
        self.hooks, self.classifier = hooks, classifier
        # only those with batch hooks of their own get each batch's logs, as numbers
        self.user_callbacks = [c for c in user_callbacks if _has_batch_hooks(c)]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.hooks.epoch_started(epoch)  # the batches' epoch set before the epoch's first read
        self.classifier.epoch_begins(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.hooks.epoch_ended(epoch, float((logs or {}).get("loss", float("nan")))):
            self.model.stop_training = True

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
    hooks: EpochHooks,
    classifier: Any,
    user_callbacks: Sequence[Any],
    epochs: int,
) -> FitCallbacks:
    """What a `model.fit` of several epochs runs with: the bridge and Keras' History."""
    return FitCallbacks(
        [EpochBridge(hooks, classifier, user_callbacks)],
        add_history=True,
        model=model,
        verbose=0,
        epochs=epochs,
        steps=len(batches),
    )


def _has_batch_hooks(callback: keras.callbacks.Callback) -> bool:
    base = keras.callbacks.Callback
    hooks = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
    return any(getattr(type(callback), h) is not getattr(base, h) for h in hooks)


_PIPELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # batches -> tf.data


def model_input(batches: Batches, run_on: bool = False) -> tuple[Any, int | None]:
    """(what `model.fit` or `predict` reads, steps per pass): on TensorFlow one `tf.data`
    pipeline per batches object, made once; elsewhere the batches. `run_on`: a fit of several
    epochs, whose pipeline runs on from one epoch into the next (Keras keeps its iterator
    across the epochs of a fit when it is given the steps)."""
    if keras.backend.backend() != "tensorflow":
        return batches, None
    pipelines = _PIPELINES.setdefault(batches, {})
    if run_on not in pipelines:
        pipelines[run_on] = _tf_pipeline(batches, run_on)
    return pipelines[run_on], len(batches)


def _tf_pipeline(batches: Batches, run_on: bool) -> Any:
    """The batches from the epoch set when a pass starts: that epoch's alone, or, with
    `run_on`, every epoch from it on, each batch read by its (epoch, index)."""
    import tensorflow as tf

    first = batches[0]  # its shapes and dtypes (kept: the epoch's first read takes it back)
    spec = tuple(
        tf.TensorSpec((None, *np.shape(part)[1:]), tf.as_dtype(np.asarray(part).dtype))
        for part in first
    )
    ref = weakref.ref(batches)  # the pipeline must not keep its batches alive

    def passes() -> Iterator[tuple[np.ndarray, ...]]:
        source = ref()
        if source is None:
            return
        epoch, count = source.epoch, len(source)
        del source
        for current in itertools.count(epoch) if run_on else (epoch,):
            for index in range(count):
                source = ref()
                if source is None:
                    return
                yield source.read(current, index)
                del source

    return tf.data.Dataset.from_generator(passes, output_signature=spec).prefetch(2)
