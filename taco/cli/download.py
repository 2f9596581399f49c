"""`taco-download`: TACO's annotations and images into data/taco (`make download`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from taco.cli import ArgumentParser
from taco.config import project_root
from taco.data.sources.download import (
    FAILURES_NAME,
    OFFICIAL_URL,
    UNOFFICIAL_URL,
    download,
)
from taco.errors import cli_errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="taco-download",
        description="Download TACO (annotations and images).",
    )
    parser.add_argument("--root", default=None, help="data folder (default: <repo>/data/taco)")
    parser.add_argument("--unofficial", action="store_true", help="the crowd-annotated set")
    parser.add_argument("--annotations-url", default=None, help="another annotation file URL")
    parser.add_argument(
        "--workers", type=int, default=8, help="parallel downloads (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=4,
        help="retries per file after a failed attempt (default: %(default)s)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N images (default: all)"
    )
    parser.add_argument("--refresh-annotations", action="store_true", help="fetch the labels anew")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.root) if args.root else project_root() / "data" / "taco"
    url = args.annotations_url or (UNOFFICIAL_URL if args.unofficial else OFFICIAL_URL)
    with cli_errors("taco-download"):
        summary = download(
            root,
            url,
            workers=args.workers,
            timeout=args.timeout,
            retries=args.retries,
            limit=args.limit,
            refresh_annotations=args.refresh_annotations or bool(args.unofficial),
        )
    print(summary.line())
    if summary.failed:
        print(
            f"{len(summary.failed)} failed; see {root / FAILURES_NAME}. Run the same command "
            "again to retry them (verified files are skipped).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
