"""KerasClassifier: wraps a keras.Model builder behind the Trainer's classifier protocol.

The protocol is `setup(num_classes, image_size)`, `fit(batches, epochs, callbacks)`,
`predict_scores(batches) -> (n, classes)`, `get_state()` / `set_state(state)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np


class KerasClassifier:
    def __init__(
        self,
        build: Callable[..., keras.Model],
        learning_rate: float = 1e-3,
        label_smoothing: float = 0.0,
    ) -> None:
        self.build = build
        self.learning_rate = float(learning_rate)
        self.label_smoothing = float(label_smoothing)
        self.model: keras.Model | None = None

    def setup(self, num_classes: int, image_size: int) -> None:
        self.model = self.build(num_classes=num_classes, image_size=image_size)
        self.model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.BinaryCrossentropy(label_smoothing=self.label_smoothing),
        )

    def fit(self, batches: Any, epochs: int, callbacks: Sequence[Any] = (), verbose: int = 0):
        return self._model().fit(batches, epochs=epochs, callbacks=list(callbacks), verbose=verbose)

    def predict_scores(self, batches: Any) -> np.ndarray:
        return np.asarray(self._model().predict(batches, verbose=0), dtype=np.float64)

    def get_state(self) -> list[np.ndarray]:
        return [w.copy() for w in self._model().get_weights()]

    def set_state(self, state: list[np.ndarray]) -> None:
        self._model().set_weights(state)

    def count_params(self) -> int:
        return int(self._model().count_params())

    def _model(self) -> keras.Model:
        if self.model is None:
            raise RuntimeError("call setup() before using the classifier")
        return self.model
