"""A small from-scratch CNN for multi-label classification (sigmoid outputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from taco.schema import Count, DropoutRate, PositiveInt

if TYPE_CHECKING:
    import keras


def build_cnn(
    num_classes: int,
    image_size: int,
    filters: Sequence[PositiveInt] = (16, 32, 64, 128),
    convs_per_block: PositiveInt = 1,
    dense_units: Count = 128,
    dropout: DropoutRate = 0.3,
    batch_norm: bool = True,
) -> keras.Model:
    """Conv blocks (3x3 convs, max-pool) -> global average pool -> dense -> sigmoid."""
    import keras  # here, not above: the config check reads this signature before Keras loads
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for i, f in enumerate(filters):
        for j in range(convs_per_block):
            x = layers.Conv2D(f, 3, padding="same", use_bias=not batch_norm, name=f"conv{i}_{j}")(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}_{j}")(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D()(x)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="sigmoid", name="scores", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="cnn")
