"""Fetch TACO's annotations and images, safely, resumably, in parallel (`taco-download`).

Each image comes from its `flickr_url` (falling back to `flickr_640_url`) with a timeout and
retries with backoff; the body is checked against Content-Length, decoded, and its EXIF-corrected
size compared with the JSON. RGBA/P/LA content is converted to RGB before JPEG encoding, EXIF
kept. A `file_name` that would land outside the data root is refused. Files are written
atomically, so a verified file on disk is skipped by the next run: re-running resumes.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from taco.data.images import size_matches, to_rgb
from taco.errors import DataError
from taco.progress import Progress

log = logging.getLogger(__name__)

TACO_RAW = "https://raw.githubusercontent.com/pedropro/TACO/master/data"
OFFICIAL_URL = f"{TACO_RAW}/annotations.json"
UNOFFICIAL_URL = f"{TACO_RAW}/annotations_unofficial.json"
USER_AGENT = "taco-download/0.1 (+https://github.com/pedropro/TACO)"
FAILURES_NAME = "download_failures.tsv"


class FetchError(Exception):
    """One attempt at one URL failed; `retry` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass
class Outcome:
    file_name: str
    status: str  # downloaded | present | failed | refused
    reason: str = ""
    url: str = ""


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "refused")]

    def line(self) -> str:
        return (
            f"{len(self.outcomes)} images: {self.count('downloaded')} downloaded, "
            f"{self.count('present')} already present, {self.count('failed')} failed, "
            f"{self.count('refused')} refused (unsafe file_name)"
        )


def safe_target(root: Path, file_name: str) -> Path:
    """The path for `file_name` under `root`; raises ValueError if it would leave `root`."""
    name = str(file_name).replace("\\", "/")
    if not name or name.startswith("/") or Path(name).is_absolute() or ":" in name.split("/")[0]:
        raise ValueError("absolute path")
    if ".." in Path(name).parts:
        raise ValueError("'..' in path")
    target = root / name
    real_root = root.resolve()
    if not target.resolve().is_relative_to(real_root):  # a symlinked folder pointing elsewhere
        raise ValueError("path leaves the data root through a symlink")
    return target


def fetch(url: str, timeout: float) -> bytes:
    """One GET; a short body (fewer bytes than Content-Length) is an error."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            body = response.read()
    except http.client.IncompleteRead as exc:
        got, missing = len(exc.partial), exc.expected or 0
        raise FetchError(f"truncated body: {got} of {got + missing} bytes") from None
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}", retry=exc.code >= 500 or exc.code == 429) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"network error: {reason}") from None
    except http.client.HTTPException as exc:  # bad status line, remote closed, ...
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    if expected is not None and len(body) < int(expected):
        raise FetchError(f"truncated body: {len(body)} of {expected} bytes")
    if not body:
        raise FetchError("empty body")
    return body


def fetch_with_retries(
    url: str, timeout: float, retries: int, backoff: float, sleep=time.sleep
) -> bytes:
    for attempt in range(retries + 1):
        try:
            return fetch(url, timeout)
        except FetchError as exc:
            if not exc.retry or attempt == retries:
                raise
            sleep(backoff * 2**attempt * (1 + random.random() / 4))
    raise AssertionError("unreachable")


def verify_bytes(data: bytes, expected: Sequence[int]) -> tuple[Image.Image, bool]:
    """Decode fully; check the EXIF-corrected size. Returns the image and whether it is smaller."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FetchError(f"does not decode: {exc}") from None
    shown = ImageOps.exif_transpose(image).size
    exact = tuple(shown) == tuple(int(v) for v in expected)
    if not exact and not size_matches(shown, expected):
        raise FetchError(
            f"size {shown[0]}x{shown[1]} does not match the annotation's "
            f"{expected[0]}x{expected[1]}",
            retry=False,
        )
    return image, not exact


def verify_file(path: Path, expected: Sequence[int]) -> bool:
    try:
        verify_bytes(path.read_bytes(), expected)
        return True
    except (OSError, FetchError):
        return False


def encode_for_disk(data: bytes, image: Image.Image) -> bytes:
    """Bytes as downloaded, or RGB JPEG (EXIF kept) for content JPEG cannot hold."""
    if image.format == "JPEG" and image.mode in ("RGB", "L", "CMYK"):
        return data
    if image.format != "JPEG" and image.mode not in ("RGBA", "P", "LA", "PA", "I;16", "I"):
        return data  # e.g. a plain RGB PNG: kept as is, the loader reads it by content
    exif = image.info.get("exif") or image.getexif().tobytes()
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def download_image(
    root: Path, record: dict, timeout: float, retries: int, backoff: float
) -> Outcome:
    name = record["file_name"]
    try:
        target = safe_target(root, name)
    except ValueError as exc:
        return Outcome(name, "refused", str(exc))
    expected = (record["width"], record["height"])
    if target.is_file() and verify_file(target, expected):
        return Outcome(name, "present")
    urls = [u for u in (record.get("flickr_url"), record.get("flickr_640_url")) if u]
    if not urls:
        return Outcome(name, "failed", "no URL in the annotation file")
    reasons = []
    for url in urls:
        try:
            data = fetch_with_retries(url, timeout, retries, backoff)
            image, smaller = verify_bytes(data, expected)
            write_atomic(target, encode_for_disk(data, image))
            return Outcome(name, "downloaded", "smaller copy" if smaller else "", url)
        except FetchError as exc:
            reasons.append(f"{url}: {exc}")
    return Outcome(name, "failed", "; ".join(reasons), urls[0])


def download_annotations(url: str, path: Path, timeout: float, retries: int) -> Path:
    data = fetch_with_retries(url, timeout, retries, backoff=1.0)
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise DataError(f"{url} did not return valid JSON ({exc}); try again later") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(f"{url} is not a COCO annotation file (no 'images' list)")
    write_atomic(path, data)
    return path


def download(
    root: str | Path,
    annotations_url: str = OFFICIAL_URL,
    workers: int = 8,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    limit: int | None = None,
    refresh_annotations: bool = False,
    progress: bool = True,
) -> Summary:
    """Fetch the annotation file (unless present) and every image; returns what happened."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ann_path = root / "annotations.json"
    if refresh_annotations or not ann_path.is_file():
        log.info("fetching %s", annotations_url)
        try:
            download_annotations(annotations_url, ann_path, timeout, retries)
        except FetchError as exc:
            raise DataError(f"could not download {annotations_url}: {exc}") from None
    try:
        doc = json.loads(ann_path.read_bytes())
        images = list(doc["images"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{ann_path} is not a usable annotation file ({exc}); delete it and run again"
        ) from None
    images = images[:limit] if limit else images
    summary = Summary()
    bar = Progress(len(images), "downloading", enabled=None if progress else False, unit="img")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(download_image, root, im, timeout, retries, backoff) for im in images
        ]
        for future in as_completed(futures):
            outcome = future.result()
            summary.outcomes.append(outcome)
            bar.update(len(summary.outcomes), f"failed {len(summary.failed)}")
    bar.close()
    summary.outcomes.sort(key=lambda o: o.file_name)
    failures = root / FAILURES_NAME
    if summary.failed:
        rows = ["file_name\tstatus\turl\treason"]
        rows += [f"{o.file_name}\t{o.status}\t{o.url}\t{o.reason}" for o in summary.failed]
        failures.write_text("\n".join(rows) + "\n")
    elif failures.exists():
        failures.unlink()
    return summary
