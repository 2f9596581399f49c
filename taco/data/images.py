"""Decode every image once into a uint8 array cache at the training resolution.

Decoding an 8 MP phone photo costs far more than a training step, so each image is decoded a
single time: at reduced DCT scale where the target size allows (PIL `draft`), EXIF-transposed,
converted to RGB and resized. The cache is one `.npy` file, memory-mapped when read, named by a
key over the data set's content, the image size and the resize mode, and moved into place only
when complete, so an interrupted build is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from taco.errors import DataError
from taco.files import (
    damaged,
    disk_full_error,
    open_array,
    read_json,
    remove_dead_temps,
    require_space,
    save_json,
    temp_path,
)
from taco.process import feed_cores, use_feed_cores
from taco.progress import Progress

log = logging.getLogger(__name__)

CACHE_VERSION = 1
RESIZE_MODES = ("squash", "letterbox")
BAD_IMAGE_POLICIES = ("error", "skip")
# the rules of `dataset.resize` and `dataset.on_bad_image`, stated once (the data module's
# constructor annotations; taco-predict's --on-bad-image choices)
Resize = Literal[RESIZE_MODES]
OnBadImage = Literal[BAD_IMAGE_POLICIES]
_TRANSPOSING = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageLimits:
    """What an image file may be: inside `root` once resolved (symlinks included), and at most
    `max_pixels` (read from its header before decoding)."""

    root: Path | None = None
    max_pixels: int | None = None

    def check_path(self, path: Path) -> None:
        if self.root is None:
            return
        resolved, root = Path(path).resolve(), self.root.resolve()
        if not resolved.is_relative_to(root):
            raise ValueError(
                f"resolves to {resolved}, outside the data root {root} (a symlink?): "
                "copy the file into the data folder"
            )


@dataclass(frozen=True)
class BadImage:
    path: str
    reason: str


@dataclass
class ImageCache:
    """A (n, size, size, 3) uint8 array, memory-mapped, and the rows whose image was unusable."""

    array: np.ndarray
    bad: list[tuple[int, BadImage]]
    path: Path
    built: bool  # False when an existing cache was reused

    @property
    def good_rows(self) -> np.ndarray:
        bad = {row for row, _ in self.bad}
        return np.array([i for i in range(len(self.array)) if i not in bad], dtype=int)


def size_matches(actual: Sequence[int], expected: Sequence[int], tolerance: float = 0.02) -> bool:
    """Exactly the annotated size, or a proportionally smaller copy (e.g. Flickr's 640 px one).

    A swapped width and height (an EXIF orientation gone wrong) never matches.
    """
    (w, h), (ew, eh) = (int(v) for v in actual), (int(v) for v in expected)
    if (w, h) == (ew, eh):
        return True
    if w > ew or h > eh or min(w, h, ew, eh) <= 0:
        return False
    return abs((w / h) / (ew / eh) - 1) <= tolerance and (w >= h) == (ew >= eh)


def decode_image(
    path: str | Path,
    size: int,
    resize: str = "squash",
    expected: Sequence[int] | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """One image file -> (size, size, 3) uint8 RGB in the display frame (EXIF applied)."""
    with warnings.catch_warnings():
        if max_pixels:  # checked below, by name: PIL's own warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)
    with im:
        stored = im.size
        if max_pixels and stored[0] * stored[1] > max_pixels:  # from the header, not decoded
            raise ValueError(
                f"{stored[0]}x{stored[1]} = {stored[0] * stored[1]:,} pixels is above "
                f"dataset.max_pixels={max_pixels:,}; raise it if the image is genuine"
            )
        orientation = im.getexif().get(274, 1)
        display = stored[::-1] if orientation in _TRANSPOSING else stored
        if expected is not None and not size_matches(display, expected):
            raise ValueError(
                f"size {display[0]}x{display[1]} after EXIF orientation {orientation} does not "
                f"match the annotation's {expected[0]}x{expected[1]}"
            )
        if im.format == "JPEG":
            # Reduced-scale DCT decode: the result is still >= the requested size on both axes.
            scale = min(stored) / size
            if scale >= 2:
                im.draft("RGB", (int(stored[0] / scale) + 1, int(stored[1] / scale) + 1))
        im = ImageOps.exif_transpose(im)
        im = to_rgb(im)
        return _resize(im, size, resize)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels are put on a mid-grey background."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray((arr / top * 255).round().astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        grey = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(grey, rgba).convert("RGB")
    return im.convert("RGB")


def _resize(im: Image.Image, size: int, mode: str) -> np.ndarray:
    if mode == "squash":
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(
        im.resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.uint8
    )
    return canvas


def boxes_in_frame(boxes: np.ndarray, width: int, height: int, size: int, mode: str) -> np.ndarray:
    """COCO boxes (class, x, y, w, h) of a width x height image -> (class, x0, y0, x1, y1) in
    the size x size picture a model sees, resized as `_resize` does (`squash` or `letterbox`)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if mode == "squash":
        sx, sy, left, top = size / width, size / height, 0, 0
    else:
        scale = size / max(width, height)
        nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
        sx, sy, left, top = nw / width, nh / height, (size - nw) // 2, (size - nh) // 2
    x0, y0 = boxes[:, 1] * sx + left, boxes[:, 2] * sy + top
    x1, y1 = x0 + boxes[:, 3] * sx, y0 + boxes[:, 4] * sy
    return np.stack([boxes[:, 0], x0, y0, x1, y1], axis=1)


def cache_key(paths: Sequence[Path], content_hash: str, size: int, resize: str) -> str:
    """Changes when the annotation file, any image file (size, mtime), the size or mode change."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, content_hash, size, resize]).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:20]


def cache_bytes(count: int, size: int) -> int:
    """The size of a decoded cache of `count` images at `size` px (uint8 RGB)."""
    return int(count) * int(size) * int(size) * 3


def check_cache_space(
    paths: Sequence[Path], content_hash: str, size: int, resize: str, cache_dir: str | Path
) -> None:
    """Before a run opens: a cache that is not built yet must fit on its disk."""
    cache_dir = Path(cache_dir)
    if not (cache_dir / f"{cache_key(paths, content_hash, size, resize)}.npy").is_file():
        needed = cache_bytes(len(paths), size)
        require_space(cache_dir, needed, "the image cache", "paths.cache_dir")


def build_cache(
    paths: Sequence[Path],
    sizes: np.ndarray,
    size: int,
    cache_dir: str | Path,
    content_hash: str,
    resize: str = "squash",
    on_bad_image: str = "error",
    workers: int | None = None,
    limits: ImageLimits | None = None,
) -> ImageCache:
    """Decode `paths` into a memory-mapped cache, or reuse the cache built for the same inputs
    (checked first: a damaged one is rebuilt)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(paths, content_hash, size, resize)
    final, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    cached = _open_cache(final, meta_path, (len(paths), size, size, 3))
    if cached is not None:
        _check_bad(cached.bad, on_bad_image)
        log.info("image cache hit: %s", final)
        return cached
    remove_dead_temps(cache_dir)  # a build: clear what builds that died left behind
    require_space(cache_dir, cache_bytes(len(paths), size), "the image cache", "paths.cache_dir")
    tmp = temp_path(final)
    start = time.perf_counter()
    try:
        bad = _decode_into(tmp, paths, sizes, size, resize, workers, limits or ImageLimits())
        _check_bad(bad, on_bad_image)
        meta = {"bad": [(row, b.__dict__) for row, b in bad], "size": size, "resize": resize}
        meta["file_bytes"] = tmp.stat().st_size  # checked when opened: a cut file is rebuilt
        save_json(meta_path, meta)
        os.replace(tmp, final)  # the cache exists only once it is whole
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_full_error(final, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "image cache built: %d images in %.1f s -> %s",
        len(paths),
        time.perf_counter() - start,
        final,
    )
    return ImageCache(np.load(final, mmap_mode="r"), bad, final, built=True)


def _open_cache(final: Path, meta_path: Path, shape: tuple[int, ...]) -> ImageCache | None:
    """The cache built for these inputs, or None when absent or damaged (cut short, unreadable,
    a different shape, its metadata missing or cut off)."""
    if not final.is_file():
        return None
    meta = read_json(meta_path)
    if meta is None:
        return damaged(final, f"its metadata {meta_path.name} is missing or unreadable")
    size = final.stat().st_size
    if meta.get("file_bytes") not in (None, size):
        return damaged(final, f"{size} bytes, expected {meta['file_bytes']}")
    array = open_array(final, shape)
    if array is None:
        return None
    try:
        bad = [(int(row), BadImage(**b)) for row, b in meta["bad"]]
    except (KeyError, TypeError, ValueError):
        return damaged(meta_path, "no valid list of bad images")
    return ImageCache(array, bad, final, built=False)


def _decode_into(
    tmp: Path,
    paths: Sequence[Path],
    sizes: np.ndarray,
    size: int,
    resize: str,
    workers: int | None,
    limits: ImageLimits,
) -> list[tuple[int, BadImage]]:
    """Every image into the `.npy` file `tmp`, in parallel; returns the unusable ones by row.

    Rows go to the file with positioned writes rather than through a memory map, so the written
    pages sit in the OS page cache, not in this process: memory stays flat with size.
    """
    row_bytes = size * size * 3
    with open(tmp, "wb") as handle:
        header = {"descr": "|u1", "fortran_order": False, "shape": (len(paths), size, size, 3)}
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + row_bytes * len(paths))
    fd = os.open(tmp, os.O_WRONLY)
    bad: list[tuple[int, BadImage]] = []

    def work(row: int) -> None:
        try:
            limits.check_path(paths[row])
            pixels = decode_image(paths[row], size, resize, sizes[row], limits.max_pixels)
            os.pwrite(fd, np.ascontiguousarray(pixels).tobytes(), offset + row * row_bytes)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, FileNotFoundError):
                reason = "file not found"
            bad.append((row, BadImage(str(paths[row]), reason)))

    bar = Progress(len(paths), f"decoding images to {size} px", unit="img")
    try:
        threads = workers or len(feed_cores() or []) or os.cpu_count() or 1
        # on the job's feed cores, not the training's pin (`taco.process.reset_for_job`)
        with ThreadPoolExecutor(max_workers=threads, initializer=use_feed_cores) as pool:
            for _ in pool.map(work, range(len(paths))):
                bar.update()
        bar.close()
        os.fsync(fd)
    finally:
        os.close(fd)
    return sorted(bad, key=lambda item: item[0])


def _check_bad(bad: list[tuple[int, BadImage]], policy: str) -> None:
    if bad and policy == "error":
        lines = "\n  - ".join(f"{b.path}: {b.reason}" for _, b in bad[:50])
        more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
        raise DataError(
            f"{len(bad)} image(s) cannot be used:\n  - {lines}{more}\n"
            "Fix or re-download them, or set dataset.on_bad_image=skip to train without them."
        )
