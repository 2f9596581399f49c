"""Multi-label losses. Keras `class_weight` takes the argmax of a multi-hot target, so label
weighting is done inside the loss instead."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="taco")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """BCE with a positive-class weight per label: rare labels' positives count more."""

    def __init__(self, pos_weight: Sequence[float], name: str = "weighted_bce", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.pos_weight = [float(w) for w in pos_weight]

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        w = ops.convert_to_tensor(self.pos_weight, dtype=y_pred.dtype)
        loss = -(w * y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
        return ops.mean(loss, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "pos_weight": self.pos_weight}


def positive_weights(train_labels: np.ndarray, max_weight: float = 50.0) -> np.ndarray:
    """negatives / positives per label from the training part, clipped to [1, max_weight]."""
    y = np.asarray(train_labels, float)
    positives = y.sum(0)
    negatives = len(y) - positives
    return np.clip(negatives / np.maximum(positives, 1), 1.0, max_weight)


def make_loss(name: str, train_labels: np.ndarray | None, focal_gamma: float = 2.0):
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "weighted_bce":
        if train_labels is None:
            raise ValueError("weighted_bce needs the training labels")
        return WeightedBinaryCrossentropy(positive_weights(train_labels).tolist())
    if name == "focal":
        return keras.losses.BinaryFocalCrossentropy(gamma=focal_gamma)
    raise ValueError(f"no loss named {name!r}")  # the config check allows only the three above
