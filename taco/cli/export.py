"""`taco-export` (`make export`): a trained model as a file a device runs, ONNX or LiteRT, with a
JSON beside it that says how to feed it; the runtimes need NumPy alone (`taco-predict --runtime`).

examples:
  taco-export --model 3f2a9c --format onnx              a run id, or its first characters
  taco-export --model models:/litter/2 --format litert --quantize float16
  taco-export --model-dir downloads/model --format onnx --out exported/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from taco.cli import command_parser, model_source
from taco.config import build, default_tracking_uri, project_root, register_resolvers
from taco.errors import TacoError, cli_errors
from taco.export.check import check_export
from taco.export.convert import FORMATS, export_keras
from taco.export.latency import measure
from taco.export.runtime import ExportedModel
from taco.export.sidecar import write_sidecar
from taco.metrics import evaluate, tune_thresholds
from taco.models.registry import model_class
from taco.process import native_noise_filtered
from taco.tracking.logged_model import downloaded_model, log_export
from taco.tracking.provenance import git_state
from taco.tracking.store import store_errors
from taco.tracking.tags import Tag

DRAWN = 100  # representative images an int8 export calibrates on


def parser() -> argparse.ArgumentParser:
    parser = command_parser("taco-export", __doc__)
    model_source(parser, "a model/ folder (a run's, or downloaded)")
    parser.add_argument("--format", required=True, choices=["onnx", "litert"])
    parser.add_argument(
        "--quantize",
        default="none",
        choices=["none", "float16", "int8"],
        help=f"int8 calibrates on {DRAWN} training images of the source run, drawn seeded",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the file and its JSON (default: <repo>/outputs/export/<source>/"
        "<format>-<quantize>)",
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or <repo>/mlflow.db"
    )
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="do not log the export to its source run (export/<format>-<quantize>/)",
    )
    parser.add_argument(
        "--register",
        metavar="NAME",
        help="also register it as a new version of NAME, the check table as its description",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()

    with cli_errors("taco-export"), store_errors(uri), native_noise_filtered():
        path, sidecar, check = export(args, uri)

        cost = measure(path, int(json.loads(sidecar.read_text())["image_size"]))
        (path.parent / "cost.txt").write_text(cost.line() + "\n")
        print(f"{path}: {cost.line()}\n{sidecar}")
        if check is None:
            print(
                "not checked: a model folder has no source run, so no test split; give "
                "--model <run> to check the export on its run's test split"
            )
            return 0
        print(check.markdown())
        failures = check.failures()
        if failures:
            raise TacoError(f"the export of {path} changed the model: " + "; ".join(failures))
        if not args.no_log:
            run_id, label = check.source_run, f"{args.format}-{args.quantize}"
            version = log_export(uri, run_id, path.parent, label, args.register, check.markdown())
            where = f"; registered as {args.register} version {version.version}" if version else ""
            print(f"logged to run {run_id} under export/{label}/{where}")
    return 0


def export(args: argparse.Namespace, uri: str) -> tuple[Path, Path, Any]:
    """The model written in the asked format, its JSON beside it, and the check of the
    exported file against the model on the source run's test split (None without a run)."""
    with source_folder(args, uri) as (given, source):
        folder, info, cls = model_class(given)
        graph = cls.load_exportable(folder, info)
        refused = getattr(graph, "refused", {}).get(args.format)  # said before any data work
        if refused:
            raise TacoError(refused)
        data = source_data(uri, source.get("run_id"), info)
        drawn = representative(data) if args.quantize == "int8" and data else None
        name = source.get("run_id") or Path(given).resolve().name
        out = args.out or project_root() / "outputs" / "export" / name
        out = out / f"{args.format}-{args.quantize}" if args.out is None else out
        file = out / f"model{FORMATS[args.format]}"
        path = export_keras(graph, file, args.format, args.quantize, drawn)
        exported_at = git_state(project_root()).get(Tag.GIT_COMMIT, "unknown")
        source = {**source, "exported_at_commit": exported_at}
        sidecar = write_sidecar(path, info, args.format, args.quantize, source)
        if data is None:
            return path, sidecar, None
        test = data.batches("test")
        images, y = test.images(), test.targets()
        keras_scores = cls.load_predictor(folder, info)(images)
    runtime = ExportedModel(path)
    names, thresholds = info["class_names"], np.asarray(info["thresholds"], float)
    exported = runtime.predict(images)
    check = check_export(keras_scores, exported, y, thresholds, names, args.quantize)
    check.source_run = source["run_id"]
    if args.quantize == "int8":  # thresholds tuned again, on validation, for the int8 scores
        val = data.batches("val")
        least = data.threshold_min_positives
        retuned = tune_thresholds(val.targets(), runtime.predict(val.images()), min_positives=least)
        check.retuned = evaluate(y, exported, retuned, names)
    (path.parent / "check.md").write_text(check.markdown())
    return path, sidecar, check


def source_data(uri: str, run_id: str | None, info: dict) -> Any:
    """The source run's data module (its data set and seeded split, as the model sees the
    images), rebuilt from its logged config; None without a run."""
    if not run_id:
        return None

    import mlflow

    register_resolvers()
    with tempfile.TemporaryDirectory() as tmp:
        client = mlflow.MlflowClient(uri)
        logged = client.download_artifacts(run_id, "config/config.yaml", tmp)
        cfg = OmegaConf.load(logged)
    size, resize = int(info["image_size"]), info.get("resize", "squash")
    datamodule = build(cfg.dataset, image_size=size, resize=resize, augmentation=None)
    datamodule.prepare_data()
    datamodule.setup()
    # thresholds re-tuned (int8) as the run tuned its own: with its minimum of positives
    datamodule.threshold_min_positives = int(cfg.trainer.get("threshold_min_positives", 1))
    return datamodule


def representative(data: Any, count: int = DRAWN, seed: int = 0) -> np.ndarray:
    """`count` training images, drawn seeded: what int8 calibrates its ranges on."""
    images = data.batches("train").images()
    pick = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[np.sort(pick)]


@contextlib.contextmanager
def source_folder(args: argparse.Namespace, uri: str) -> Iterator[tuple[Path, dict]]:
    """The model's folder for the `with` block, and where it came from."""
    if args.model_dir:
        yield Path(args.model_dir), {"model_dir": str(Path(args.model_dir).resolve())}
        return

    with downloaded_model(args.model, uri) as found:
        yield found


if __name__ == "__main__":
    sys.exit(main())
