"""Decode pipeline benchmark (`make bench`): naive per-epoch decode vs the decode-once cache.

On generated 8 MP JPEGs (3264x2448, with an EXIF orientation tag) at 224 px, measured side by
side in one run:
  naive         PIL open, EXIF transpose, full decode, resize - what every epoch costs without
                a cache
  first pass    building the cache (reduced-scale DCT decode, parallel)
  cached epoch  one epoch of batches from the memory-mapped cache with light augmentation
and the peak RSS of building the cache for 500 and for 2,000 images, each in a fresh process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import taco  # noqa: F401  (offline-friendly environment defaults)

SIZE = 224
W, H = 3264, 2448


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """8 MP JPEGs drawn from the synthetic generator, upscaled, with noise so they compress
    like photos (about 2-3 MB each), half stored rotated with EXIF orientation 6."""
    from taco.data.sources.synthetic import SyntheticTaco

    gen = SyntheticTaco(num_images=count, seed=seed, image_size=(408, 306), p_portrait=0)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        _, _, data = gen.render(i)
        small = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        big = np.asarray(small.resize((W, H), Image.Resampling.BILINEAR), dtype=np.int16)
        big = big + rng.integers(-12, 13, size=(H, W, 1), dtype=np.int16)
        image = Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        if i % 2:
            image = image.transpose(Image.Transpose.ROTATE_90)  # stored frame; tag 6 undoes it
            exif[274] = 6
        path = folder / f"photo_{i:04d}.JPG"
        image.save(path, "JPEG", quality=90, exif=exif.tobytes())
        paths.append(path)
    return paths


def naive_epoch(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    return len(paths) / (time.perf_counter() - start)


def first_pass(paths: list[Path], cache_dir: Path) -> tuple[float, np.ndarray]:
    from taco.data.images import build_cache

    sizes = np.array([(W, H)] * len(paths))
    start = time.perf_counter()
    cache = build_cache(paths, sizes, SIZE, cache_dir, "bench")
    rate = len(paths) / (time.perf_counter() - start)
    assert cache.built and not cache.bad
    return rate, cache.array


def cached_epoch(array: np.ndarray, repeats: int) -> float:
    """Batches of 32 with the `light` augmentation group, over `repeats` copies of the cache."""
    import albumentations as A

    from taco.data.pipeline import CachedBatches

    augment = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        ],
        seed=0,
    )
    rows = np.tile(np.arange(len(array)), repeats)
    labels = np.zeros((len(array), 28), np.float32)
    batches = CachedBatches(array, labels, rows, 32, shuffle=True, augment=augment)
    start = time.perf_counter()
    for i in range(len(batches)):
        batches[i]
    return len(rows) / (time.perf_counter() - start)


def peak_rss_child(paths_file: Path, count: int, cache_dir: Path) -> float:
    """Peak RSS (MiB) of a fresh process that builds the cache for `count` images."""
    code = (
        "import json, sys, resource, numpy as np; from pathlib import Path;"
        "from taco.data.images import build_cache;"
        f"p = json.load(open({str(paths_file)!r})); p = (p * ({count} // len(p) + 1))[:{count}];"
        f"paths = [Path(x) for x in p]; sizes = np.array([({W}, {H})] * {count});"
        f"build_cache(paths, sizes, {SIZE}, Path({str(cache_dir)!r}), 'rss{count}');"
        # VmHWM, not ru_maxrss: on Linux ru_maxrss carries the parent's peak across exec
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
        "print(int(hwm.split()[1]) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32, help="distinct 8 MP photos to generate")
    parser.add_argument("--rss", type=int, nargs=2, default=[500, 2000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="taco-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        paths = make_photos(tmp, args.photos)
        mb = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
        print(
            f"{len(paths)} photos {W}x{H} ({mb:.1f} MB each) generated in "
            f"{time.perf_counter() - t0:.0f} s; {os.cpu_count()} cores; target {SIZE} px"
        )

        naive = naive_epoch(paths)
        first, array = first_pass(paths, tmp / "cache")
        cached = cached_epoch(array, repeats=max(1, 4096 // len(paths)))
        print(f"naive epoch: {naive:.1f} img/s (1.0x naive)")
        print(f"first pass: {first:.1f} img/s ({first / naive:.1f}x naive)")
        print(f"cached epoch: {cached:.0f} img/s ({cached / naive:.0f}x naive)")

        if not args.skip_rss:
            listing = tmp / "paths.json"
            listing.write_text(json.dumps([str(p) for p in paths]))
            small, large = args.rss
            rss_small = peak_rss_child(listing, small, tmp / "rss")
            rss_large = peak_rss_child(listing, large, tmp / "rss")
            print(f"peak RSS building {small} images: {rss_small:.0f} MiB")
            print(
                f"peak RSS building {large} images: {rss_large:.0f} MiB "
                f"({rss_large / rss_small:.2f}x the {small}-image build)"
            )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process peaked at {own:.0f} MiB)")


if __name__ == "__main__":
    main()
