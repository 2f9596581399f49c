"""Transfer learning: any `keras.applications` backbone + a dense multi-label head.

The classifier freezes the nested backbone model for the head epochs, then fine-tunes its top
layers (`taco.models.keras_classifier`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taco.schema import Count, DropoutRate

if TYPE_CHECKING:
    import keras


def build_transfer(
    num_classes: int,
    image_size: int,
    backbone: str = "VGG16",
    weights: str | None = "imagenet",
    dense_units: Count = 256,
    dropout: DropoutRate = 0.3,
) -> keras.Model:
    """uint8 image -> preprocess_input -> backbone (pooled) -> dense -> sigmoid scores."""
    import keras  # here, not above: the config check reads this signature before Keras loads
    from keras import layers

    from taco.models.backbones import backbone_features

    inputs, x = backbone_features(backbone, image_size, weights)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="sigmoid", name="scores", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{backbone.lower()}_transfer")
