"""`taco-predict`: label a folder of images with a model logged by a training run."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taco.config import default_tracking_uri
from taco.errors import TacoError, cli_errors
from taco.models.registry import LoadedModel, load_model, load_run_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def predict_folder(model: LoadedModel, folder: Path) -> tuple[list[Path], np.ndarray]:
    from taco.data.images import decode_image

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise TacoError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    size, resize = model.image_size, model.resize
    images, bad = [], []
    for p in paths:
        try:
            images.append(decode_image(p, size, resize))
        except (OSError, ValueError) as exc:
            bad.append(f"{p}: {exc}")
    if bad:
        raise TacoError("cannot read these images:\n  - " + "\n  - ".join(bad))
    return paths, model.predict(np.stack(images).astype(np.uint8))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taco-predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="MLflow run whose model/ artifact to use")
    source.add_argument("--model-dir", help="a downloaded model/ folder")
    parser.add_argument("images", help="folder of images to label")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or <repo>/mlflow.db"
    )
    parser.add_argument("--output", default=None, help="CSV with every class score")
    args = parser.parse_args(argv)
    with cli_errors("taco-predict"):
        if args.run_id:
            model = load_run_model(args.run_id, args.tracking_uri or default_tracking_uri())
        else:
            model = load_model(args.model_dir)
        paths, scores = predict_folder(model, Path(args.images))
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


if __name__ == "__main__":
    sys.exit(main())
