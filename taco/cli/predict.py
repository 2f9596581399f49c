"""`taco-predict`: label a folder of images with a model logged by a training run.

examples:
  taco-predict --model 3f2a9c images/                 a run id, or its first characters
  taco-predict --runtime onnx --model cnn.onnx images/   an exported file, without Keras
  taco-predict --model models:/litter/2 images/       a registered model's version
  taco-predict --model-dir downloads/model images/ --output labels.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from taco.cli import command_parser, model_source
from taco.config import CONF_DIR, default_tracking_uri
from taco.data.images import BAD_IMAGE_POLICIES, decode_image
from taco.errors import TacoError, cli_errors
from taco.export.convert import FORMATS
from taco.export.runtime import load_exported
from taco.files import write_whole
from taco.models.registry import LoadedModel, load_model
from taco.process import limit_cpu_isa, native_noise_filtered
from taco.schema import CPU_ISAS
from taco.tracking.logged_model import load_logged_model
from taco.tracking.store import store_errors

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def read_folder(
    model: LoadedModel,
    folder: Path,
    on_bad_image: str = "error",
    command: str = "taco-predict",
    skip: str = "--on-bad-image skip",
) -> tuple[list[Path], np.ndarray]:
    """Every image under `folder` as the model sees it (uint8); with `on_bad_image="skip"` an
    unreadable one is left out (named on stderr) instead of refusing the folder. `command` and
    `skip` (how that command says skip) word the messages."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise TacoError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    size, resize = model.image_size, model.resize
    images, good, bad = [], [], []
    for p in paths:
        try:
            images.append(decode_image(p, size, resize))
            good.append(p)
        except (OSError, ValueError) as exc:
            bad.append(f"{p}: {exc}")
    if bad and on_bad_image != "skip":
        raise TacoError(
            "cannot read these images:\n  - "
            + "\n  - ".join(bad)
            + f"\nfix or remove them, or add {skip} to go on with the others"
        )
    if bad:
        print(f"{command}: skipped {len(bad)} unreadable image(s):", file=sys.stderr)
        print("  - " + "\n  - ".join(bad), file=sys.stderr)
    if not good:
        raise TacoError(f"none of the {len(paths)} images in {folder} could be read")
    return good, np.stack(images).astype(np.uint8)


def predict_folder(
    model: LoadedModel, folder: Path, on_bad_image: str = "error"
) -> tuple[list[Path], np.ndarray]:
    """Scores of every image under `folder` (see `read_folder` for unreadable ones)."""
    paths, images = read_folder(model, folder, on_bad_image)
    return paths, model.predict(images)


def parser() -> argparse.ArgumentParser:
    parser = command_parser("taco-predict", __doc__)
    source = model_source(parser, "a downloaded model/ folder")
    source.add_argument("--run-id", help="a training run whose model to use (same as --model)")
    parser.add_argument(
        "--runtime",
        default="keras",
        choices=["keras", "onnx", "litert"],
        help="keras (the logged model, the default), or onnx / litert: --model is a file "
        "taco-export wrote (.onnx, .tflite, its .json beside it), run without Keras",
    )
    parser.add_argument("images", help="folder of images to label")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or <repo>/mlflow.db"
    )
    parser.add_argument(
        "--output", default=None, help="CSV: the labels, then every class's score and decision"
    )
    parser.add_argument(
        "--on-bad-image",
        default="error",
        choices=BAD_IMAGE_POLICIES,
        help="an unreadable image: error (refuse the folder, the default) or skip (label the "
        "others and list it), as dataset.on_bad_image",
    )
    parser.add_argument(
        "--rare-thresholds",
        default="mark",
        choices=["mark", "omit"],
        help="a class whose threshold was tuned on fewer validation positives than training's "
        "trainer.threshold_min_positives: mark its labels with '?' (the default) or leave them "
        "out",
    )
    parser.add_argument(
        "--cpu-isa",
        default=default_cpu_isa(),
        type=str.upper,
        choices=[*CPU_ISAS, "NONE"],
        help="cap TensorFlow's oneDNN kernels at this instruction set, as training did "
        "(trainer.cpu_isa, default %(default)s); 'none' for no cap",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    limit_cpu_isa(None if args.cpu_isa == "NONE" else args.cpu_isa)  # before TensorFlow

    uri = args.tracking_uri or default_tracking_uri()
    with cli_errors("taco-predict"), store_errors(uri), native_noise_filtered():
        if args.runtime != "keras":
            model = load_runtime_model(args.runtime, args.model or args.model_dir)
        elif args.model_dir:
            model = load_model(args.model_dir)
        else:
            reference = args.model or args.run_id
            model = load_logged_model(reference, uri)
        paths, scores = predict_folder(model, Path(args.images), args.on_bad_image)
        columns = model.columns(scores, args.rare_thresholds)
        if args.output:  # first: a full disk is one line before any label is printed
            write_csv(Path(args.output), paths, columns)
    if model.rare_thresholds:
        done = "marked '?'" if args.rare_thresholds == "mark" else "left out"
        print(
            f"taco-predict: the thresholds of {', '.join(model.rare_thresholds)} were tuned on "
            f"fewer validation positives than training's minimum: their labels are {done}",
            file=sys.stderr,
        )
    for path, labels in zip(paths, columns["labels"], strict=True):
        print(f"{path}\t{labels or '-'}")
    return 0


def load_runtime_model(runtime: str, reference: str | None) -> LoadedModel:
    """An exported file run by `runtime` alone (no Keras, no TensorFlow)."""
    suffix = FORMATS[runtime]
    path = Path(str(reference))
    if path.suffix.lower() != suffix:
        raise TacoError(f"--runtime {runtime} runs a {suffix} file; got --model {reference}")
    return load_exported(path)


def default_cpu_isa() -> str:
    """The trainer's default `cpu_isa`: scores computed with the kernels training used."""
    return str(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml").get("cpu_isa") or "NONE")


def write_csv(path: Path, files: list[Path], columns: dict[str, list]) -> None:
    """The labels and scores, whole or not at all (a full disk: one line, no partial CSV)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", *columns])
            for i, file in enumerate(files):
                row = [values[i] for values in columns.values()]
                cells = (f"{v:.6f}" if isinstance(v, float) else v for v in row)
                writer.writerow([str(file), *cells])

    write_whole(path, write)


if __name__ == "__main__":
    sys.exit(main())
