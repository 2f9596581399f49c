"""`taco-predict`: label a folder of images with a model logged by a training run."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import taco  # noqa: F401  (environment defaults before heavy imports)
from taco.errors import TacoError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class LoadedModel:
    info: dict
    predict: Any  # (n, size, size, 3) uint8-range float32 -> (n, classes) scores

    @property
    def class_names(self) -> list[str]:
        return self.info["class_names"]

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.info["thresholds"], float)


def load_model(folder: str | Path) -> LoadedModel:
    """A model folder as written by a classifier's `save` (the run's `model/` artifact)."""
    import keras

    import taco.models.losses  # noqa: F401  (registers custom objects)
    import taco.models.transfer  # noqa: F401

    folder = Path(folder)
    info_path = folder / "taco_model.json"
    if not info_path.is_file():
        raise TacoError(f"{folder} holds no taco model (taco_model.json is missing)")
    info = json.loads(info_path.read_text())
    if info["kind"] == "keras":
        model = keras.saving.load_model(folder / "model.keras", compile=False)
        return LoadedModel(info, lambda x: np.asarray(model.predict(x, verbose=0), np.float64))
    import mlflow.sklearn

    from taco.models.forest import forest_scores

    forest = mlflow.sklearn.load_model(str(folder / "forest"))
    extractor = keras.saving.load_model(folder / "features.keras", compile=False)
    n = len(info["class_names"])
    return LoadedModel(info, lambda x: forest_scores(forest, extractor.predict(x, verbose=0), n))


def load_run_model(run_id: str, tracking_uri: str | None = None) -> LoadedModel:
    import mlflow

    try:
        folder = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model", tracking_uri=tracking_uri
        )
    except Exception as exc:
        raise TacoError(f"cannot fetch the model of run {run_id}: {exc}") from None
    return load_model(folder)


def predict_folder(model: LoadedModel, folder: Path) -> tuple[list[Path], np.ndarray]:
    from taco.data.images import decode_image

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise TacoError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    size, resize = int(model.info["image_size"]), model.info.get("resize", "squash")
    images, bad = [], []
    for p in paths:
        try:
            images.append(decode_image(p, size, resize))
        except (OSError, ValueError) as exc:
            bad.append(f"{p}: {exc}")
    if bad:
        raise TacoError("cannot read these images:\n  - " + "\n  - ".join(bad))
    return paths, model.predict(np.stack(images).astype(np.float32))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taco-predict", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="MLflow run whose model/ artifact to use")
    source.add_argument("--model-dir", help="a downloaded model/ folder")
    parser.add_argument("images", help="folder of images to label")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or ./mlflow.db"
    )
    parser.add_argument("--output", default=None, help="CSV with every class score")
    args = parser.parse_args(argv)
    try:
        if args.run_id:
            from taco.config import project_root

            uri = args.tracking_uri or _default_uri(project_root())
            model = load_run_model(args.run_id, uri)
        else:
            model = load_model(args.model_dir)
        paths, scores = predict_folder(model, Path(args.images))
    except TacoError as exc:
        print(f"taco-predict: error: {exc}", file=sys.stderr)
        return 1
    predicted = scores >= model.thresholds
    for path, row in zip(paths, predicted, strict=True):
        labels = [n for n, on in zip(model.class_names, row, strict=True) if on]
        print(f"{path}\t{'; '.join(labels) or '-'}")
    if args.output:
        with open(args.output, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", *model.class_names])
            for path, row in zip(paths, scores, strict=True):
                writer.writerow([str(path), *(f"{v:.6f}" for v in row)])
    return 0


def _default_uri(root: Path) -> str:
    import os

    return os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")


if __name__ == "__main__":
    sys.exit(main())
