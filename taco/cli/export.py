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
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from taco.cli import ArgumentParser
from taco.config import default_tracking_uri, project_root
from taco.errors import cli_errors
from taco.process import native_noise_filtered


def parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="taco-export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        help="models:/NAME/VERSION, models:/MODEL_ID, runs:/RUN_ID/model, a run id or its first "
        "characters",
    )
    source.add_argument("--model-dir", help="a model/ folder (a run's, or downloaded)")
    parser.add_argument("--format", required=True, choices=["onnx", "litert"])
    parser.add_argument("--quantize", default="none", choices=["none", "float16"])
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()
    from taco.tracking.store import store_errors

    with cli_errors("taco-export"), store_errors(uri), native_noise_filtered():
        path, sidecar = export(args, uri)
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)\n{sidecar}")
    return 0


def export(args: argparse.Namespace, uri: str) -> tuple[Path, Path]:
    """The model written in the asked format, its JSON beside it; returns both paths."""
    from taco.export.convert import FORMATS, export_keras
    from taco.export.sidecar import write_sidecar
    from taco.models.registry import model_class
    from taco.tracking.mlflow_logger import git_state

    with source_folder(args, uri) as (given, source):
        folder, info, cls = model_class(given)
        graph = cls.load_exportable(folder, info)
        name = source.get("run_id") or Path(given).resolve().name
        out = args.out or project_root() / "outputs" / "export" / name
        out = out / f"{args.format}-{args.quantize}" if args.out is None else out
        path = export_keras(graph, out / f"model{FORMATS[args.format]}", args.format, args.quantize)
    exported_at = git_state(project_root()).get("git_commit", "unknown")
    source = {**source, "exported_at_commit": exported_at}
    return path, write_sidecar(path, info, args.format, args.quantize, source)


@contextlib.contextmanager
def source_folder(args: argparse.Namespace, uri: str) -> Iterator[tuple[Path, dict]]:
    """The model's folder for the `with` block, and where it came from."""
    if args.model_dir:
        yield Path(args.model_dir), {"model_dir": str(Path(args.model_dir).resolve())}
        return
    from taco.tracking.logged_model import downloaded_model

    with downloaded_model(args.model, uri) as found:
        yield found


if __name__ == "__main__":
    sys.exit(main())
