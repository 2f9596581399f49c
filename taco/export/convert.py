"""A Keras model to ONNX (Keras' own export through tf2onnx; float16 by ONNX Runtime's
converter) or LiteRT (TensorFlow's converter on the model's SavedModel, float16 weights by its
optimizations). The exported graph takes what the Keras model takes: images in the 0-255 range
as float32, (batch, size, size, 3); the model's own preprocessing is inside it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import ConfigError

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}
QUANTIZE = ("none", "float16", "int8")


def export_keras(
    model: Any, path: Path, fmt: str, quantize: str = "none", representative: Any = None
) -> Path:
    """`model` written to `path` in `fmt` at `quantize`; returns `path`. int8 calibrates its
    activations' ranges on `representative` images (uint8, as the model takes them)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize={quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if quantize == "int8" and (representative is None or not len(representative)):
        raise ConfigError(
            "quantize=int8 needs representative images to calibrate on: export a run's model "
            "(--model <run>), whose training split they are drawn from"
        )
    made = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _called(model)
        if fmt == "onnx":
            model.export(str(path), format="onnx", verbose=False)
            if quantize == "float16":
                _onnx_float16(path)
            elif quantize == "int8":
                _onnx_int8(path, representative)
        else:
            _litert(model, path, quantize, representative)
    except BaseException:
        if made and not any(path.parent.iterdir()):  # a refused export leaves no empty folder
            path.parent.rmdir()
        raise
    return path


def _called(model: Any) -> None:
    """Keras exports a model only once it has been called (a freshly loaded one has not)."""
    if getattr(model, "_called", True):
        return

    spec = model.inputs[0]
    model(np.zeros((1, *spec.shape[1:]), dtype=spec.dtype), training=False)


def _onnx_float16(path: Path) -> None:
    """Weights and arithmetic in float16; the inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    onnx.save(model, str(path))


def _onnx_int8(path: Path, images: Any) -> None:
    """Static int8 (QDQ): weights and activations in int8, ranges calibrated on `images`."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: images[i : i + 8]} for i in range(0, len(images), 8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "pre.onnx"
        quant_pre_process(str(path), str(ready), skip_symbolic_shape=True)
        quantize_static(
            str(ready),
            str(path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )


def _litert(model: Any, path: Path, quantize: str, images: Any = None) -> None:
    """TensorFlow's converter on the model's SavedModel: float16 weights, or int8 weights and
    activations calibrated on `images` (the inputs and outputs stay as the model has them)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [images[i : i + 1]] for i in range(len(images))
            )
        path.write_bytes(converter.convert())
