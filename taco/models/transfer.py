"""Transfer learning: any `keras.applications` backbone + a dense multi-label head.

The backbone's own `preprocess_input` runs inside the model (a serialisable layer), so the model
takes uint8-range images like every other taco model and nothing else normalises them. The
backbone layer is named "backbone" so the classifier can freeze it, then fine-tune its top layers.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import keras
from keras import layers

from taco.errors import ConfigError

# Documented minimum input sizes of keras.applications backbones (32 px for the others).
MIN_IMAGE_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}


def backbone_constructor(name: str):
    constructor = getattr(keras.applications, name, None)
    if constructor is None or not callable(constructor) or name[0].islower():
        known = sorted(n for n in dir(keras.applications) if n[0].isupper())
        raise ConfigError(
            f"model.backbone={name!r} is not a keras.applications model; one of: {', '.join(known)}"
        )
    return constructor


def check_backbone(name: str, image_size: int, weights: str | None = None) -> None:
    """Fail at config time: an unknown backbone, an image size below its minimum, or pretrained
    weights that cannot be had (loaded once here, so a missing file stops the job at once)."""
    constructor = backbone_constructor(name)
    minimum = MIN_IMAGE_SIZE.get(name, 32)
    if image_size < minimum:
        raise ConfigError(
            f"model.image_size={image_size} is too small for {name}, which needs at least "
            f"{minimum}x{minimum} pixels; set model.image_size={minimum} or more"
        )
    if weights is not None:
        try:
            constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
        except ValueError as exc:
            raise ConfigError(f"{name} cannot use weights={weights!r}: {exc}") from None
        except Exception as exc:  # a failed or refused weight download
            raise weights_help(name, str(weights), exc) from None


@keras.saving.register_keras_serializable(package="taco")
class BackbonePreprocess(layers.Layer):
    """The backbone's own `preprocess_input` (caffe, tf or torch mode) as a layer."""

    def __init__(self, backbone: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        module = importlib.import_module(backbone_constructor(backbone).__module__)
        self._fn = module.preprocess_input

    def call(self, inputs):
        return self._fn(keras.ops.cast(inputs, "float32"))

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone": self.backbone}


def weights_help(name: str, weights: str, error: Exception) -> ConfigError:
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return ConfigError(
        f"could not load {weights!r} weights for {name} ({type(error).__name__}: {error}). "
        f"Keras downloads them on first use and looks for them in {home}; on a machine without "
        f"internet, copy the '{name}' no-top weight file there, or train from scratch with "
        "model.weights=null"
    )


def build_transfer(
    num_classes: int,
    image_size: int,
    backbone: str = "VGG16",
    weights: str | None = "imagenet",
    dense_units: int = 256,
    dropout: float = 0.3,
) -> keras.Model:
    """uint8 image -> preprocess_input -> backbone (pooled) -> dense -> sigmoid scores."""
    check_backbone(backbone, image_size)
    constructor = backbone_constructor(backbone)
    try:
        base = constructor(
            include_top=False,
            weights=weights,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
        )
    except ValueError as exc:
        raise ConfigError(f"{backbone} cannot be built at {image_size} px: {exc}") from None
    except Exception as exc:  # a failed or refused weight download
        raise weights_help(backbone, str(weights), exc) from None
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = BackbonePreprocess(backbone, name="preprocess")(inputs)
    x = base(x, training=False)  # BatchNorm stays in inference mode, also when fine-tuning
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="sigmoid", name="scores", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{backbone.lower()}_transfer")
