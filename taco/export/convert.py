"""A Keras model to ONNX (Keras' own export through tf2onnx; float16 by ONNX Runtime's
converter) or LiteRT (TensorFlow's converter on the model's SavedModel, float16 weights by its
optimizations). The exported graph takes what the Keras model takes: images in the 0-255 range
as float32, (batch, size, size, 3); the model's own preprocessing is inside it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from taco.errors import ConfigError

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}
QUANTIZE = ("none", "float16")


def export_keras(model: Any, path: Path, fmt: str, quantize: str = "none") -> Path:
    """`model` written to `path` in `fmt` at `quantize`; returns `path`."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize={quantize!r}: expected one of {', '.join(QUANTIZE)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _called(model)
    if fmt == "onnx":
        model.export(str(path), format="onnx", verbose=False)
        if quantize == "float16":
            _onnx_float16(path)
    else:
        _litert(model, path, quantize)
    return path


def _called(model: Any) -> None:
    """Keras exports a model only once it has been called (a freshly loaded one has not)."""
    if getattr(model, "_called", True):
        return
    import numpy as np

    spec = model.inputs[0]
    model(np.zeros((1, *spec.shape[1:]), dtype=spec.dtype), training=False)


def _onnx_float16(path: Path) -> None:
    """Weights and arithmetic in float16; the inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    onnx.save(model, str(path))


def _litert(model: Any, path: Path, quantize: str) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        path.write_bytes(converter.convert())
