"""The JSON beside an exported model (`<file>.json`): what a device needs to feed it and read
its scores (class names, thresholds, input size and dtype, the preprocessing) and where it came
from (source run, git commit, format, quantization). With it, inference needs only the runtime
and NumPy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taco.errors import TacoError

# the taco model info keys a device needs (the rest stays in the source run)
CARRIED = ("class_names", "thresholds", "rare_thresholds", "image_size", "resize", "kind")
PREPROCESSING = (
    "decode the image as RGB, apply its EXIF orientation, resize it to image_size x image_size "
    "({resize}), keep uint8 0-255 in (batch, height, width, 3); the graph normalises inside"
)


def sidecar_path(model_file: Path) -> Path:
    return model_file.with_suffix(model_file.suffix + ".json")


def write_sidecar(
    model_file: Path, info: Mapping[str, Any], fmt: str, quantize: str, source: Mapping[str, Any]
) -> Path:
    """`<model_file>.json` from the taco model's `info` and the export's settings."""
    carried = {k: info[k] for k in CARRIED if k in info}
    resize = str(info.get("resize", "squash"))
    record = {
        **carried,
        "format": fmt,
        "quantize": quantize,
        "input": {"dtype": "uint8", "shape": [None, info["image_size"], info["image_size"], 3]},
        "preprocessing": PREPROCESSING.format(resize=resize),
        "source": dict(source),
    }
    path = sidecar_path(model_file)
    path.write_text(json.dumps(record, indent=1))
    return path


def read_sidecar(model_file: Path) -> dict:
    path = sidecar_path(model_file)
    if not path.is_file():
        raise TacoError(
            f"{model_file}: its {path.name} is missing (taco-export writes it beside the model; "
            "it holds the class names, thresholds and input size)"
        )
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise TacoError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in ("class_names", "thresholds", "image_size") if k not in record]
    if missing:
        raise TacoError(f"{path}: not an export's description (no {', '.join(missing)})")
    return record
