"""`keras.applications` backbones, built one way for every family that uses them (transfer
models, forest features): checked at config time, their own `preprocess_input` inside the model
(a serialisable layer), so a model takes uint8-range images and nothing else normalises them.
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


def backbone_features(name: str, image_size: int, weights: str | None = "imagenet") -> tuple:
    """(inputs, pooled features): uint8 image -> preprocess_input -> backbone, in inference mode
    (BatchNorm statistics stay frozen, also when fine-tuning)."""
    check_backbone(name, image_size)
    try:
        base = backbone_constructor(name)(
            include_top=False,
            weights=weights,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
        )
    except ValueError as exc:
        raise ConfigError(f"{name} cannot be built at {image_size} px: {exc}") from None
    except Exception as exc:  # a failed or refused weight download
        raise weights_help(name, str(weights), exc) from None
    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    x = BackbonePreprocess(name, name="preprocess")(inputs)
    return inputs, base(x, training=False)
