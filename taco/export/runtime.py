"""An exported model run by its runtime alone: ONNX Runtime for `.onnx`, LiteRT's interpreter
for `.tflite`. Only NumPy and the runtime load here: a device needs nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import TacoError
from taco.export.sidecar import read_sidecar
from taco.models.registry import LoadedModel

_ONNX_TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}


class ExportedModel:
    """`predict(images)`: (n, size, size, 3) images in the 0-255 range -> (n, classes) scores,
    the images given in the dtype the file declares (uint8 for taco's models)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TacoError(f"{self.path}: no such exported model file")
        kind = self.path.suffix.lower()
        try:
            if kind == ".onnx":
                self._session, self._predict = _onnx(self.path, threads)
            elif kind == ".tflite":
                self._session, self._predict = _litert(self.path, threads)
            else:
                raise TacoError(f"{self.path}: not an .onnx or .tflite file")
        except TacoError:
            raise
        except Exception as exc:  # truncated, foreign: the runtime's own reason, on one line
            reason = " ".join(str(exc).split())[:300]
            raise TacoError(f"{self.path}: its runtime cannot load it ({reason})") from None

    @property
    def image_shape(self) -> tuple[int | None, int | None]:
        """The (height, width) the file takes; None where it takes any."""
        if self.path.suffix.lower() == ".onnx":
            dims = self._session.get_inputs()[0].shape
        else:
            dims = list(self._session.get_input_details()[0]["shape_signature"])
        return tuple(
            int(d) if isinstance(d, int | np.integer) and d > 0 else None for d in dims[1:3]
        )

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(np.asarray(images)), np.float64)


def _onnx(path: Path, threads: int | None) -> tuple[Any, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    given = session.get_inputs()[0]
    dtype = _ONNX_TYPES.get(given.type, np.float32)
    return session, lambda x: session.run(None, {given.name: x.astype(dtype, copy=False)})[0]


def _litert(path: Path, threads: int | None) -> tuple[Any, Any]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=threads)
    interpreter.allocate_tensors()
    given = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        if tuple(given["shape"]) != x.shape:
            interpreter.resize_tensor_input(given["index"], list(x.shape))
            interpreter.allocate_tensors()
            given.update(interpreter.get_input_details()[0])
        interpreter.set_tensor(given["index"], x.astype(given["dtype"], copy=False))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(out))

    return interpreter, run


def load_exported(model_file: Path, threads: int | None = None) -> Any:
    """An exported file and its sidecar as a `LoadedModel`: `taco-predict --runtime` labels
    with it as with a logged model, the runtime alone scoring."""
    info = read_sidecar(Path(model_file))
    model = ExportedModel(Path(model_file), threads)
    size = int(info["image_size"])
    if model.image_shape not in ((size, size), (None, None)):
        raise TacoError(
            f"{model_file}: the file takes {model.image_shape[0]} x {model.image_shape[1]} "
            f"images but its sidecar says {size}: export it again (taco-export)"
        )
    return LoadedModel(info, model.predict)
