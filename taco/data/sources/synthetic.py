"""The embedded default data set: TACO-format (COCO JSON + image files), drawn from a seed.

Each supercategory is a visual family (shape x texture x hue); its categories are variants of the
family's colour. Objects get a random pose, scale and position, overlap one another and sit on
cluttered, noisy backgrounds. Class frequencies follow TACO's own image counts (tempered), and a
share of the files carry the quirks of real TACO photos: EXIF orientation, grayscale, PNG content
behind a `.jpg` name, `.JPG` extensions, `batch_N/` folders. The same seed writes the same bytes.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image, ImageDraw

from taco.data.taxonomy import TACO_CATEGORIES, supercategories
from taco.errors import DataError
from taco.files import file_lock
from taco.schema import PositiveInt, Probability, Range, Seed

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
STAMP_NAME = ".synthetic.json"
ANNOTATION_NAME = "annotations.json"

SHAPES = ("ellipse", "rectangle", "triangle", "star", "ring", "cross", "bar")
TEXTURES = ("solid", "stripes", "dots", "checker")
# (top colour, bottom colour) of each background scene, RGB.
SCENES = (
    ((196, 176, 140), (170, 150, 112)),  # sand
    ((92, 128, 70), (60, 96, 48)),  # grass
    ((128, 128, 124), (100, 100, 98)),  # pavement
    ((70, 104, 130), (48, 80, 104)),  # water
    ((214, 204, 188), (180, 170, 156)),  # indoor floor
)
OBJECTS_PER_IMAGE_P = (0.46, 0.31, 0.15, 0.08)  # 1..4 objects, close to TACO's distribution
# Inverse of PIL's exif_transpose for each EXIF orientation: stored = inverse(display).
_INVERSE_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class Family:
    """How one supercategory looks."""

    shape: str
    texture: str
    hue: float


@functools.cache
def families() -> dict[str, Family]:
    """Supercategory -> visual family; neighbouring classes get far-apart hues (golden ratio)."""
    out = {}
    for k, name in enumerate(supercategories()):
        out[name] = Family(SHAPES[k % len(SHAPES)], TEXTURES[k // len(SHAPES)], (k * 0.618034) % 1)
    return out


def _shape_polygon(shape: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Outline (and hole, for rings) of a shape in unit coordinates centred on 0."""
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "ellipse":
        return circle * [1.0, 0.62], None
    if shape == "rectangle":
        return np.array([[-1, -0.68], [1, -0.68], [1, 0.68], [-1, 0.68]], float), None
    if shape == "triangle":
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1), None
    if shape == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1), None
    if shape == "ring":
        return circle, circle * 0.55
    if shape == "cross":
        w = 0.33
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1)]
        pts += [(-w, w), (-1, w), (-1, -w), (-w, -w)]
        return np.array(pts, float), None
    if shape == "bar":
        return np.array([[-1, -0.2], [1, -0.2], [1, 0.2], [-1, 0.2]], float), None
    raise ValueError(f"unknown shape {shape!r}")


def _texture(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 where the texture shows the dark tone; u, v are object-local coordinates in [-1, 1]."""
    if kind == "solid":
        return np.zeros_like(u, dtype=bool)
    if kind == "stripes":
        return np.sin(u * 2.6 * np.pi) > 0
    if kind == "dots":
        return (np.mod(u * 1.6, 1) - 0.5) ** 2 + (np.mod(v * 1.6, 1) - 0.5) ** 2 < 0.09
    if kind == "checker":
        return (np.floor(u * 1.4) + np.floor(v * 1.4)) % 2 == 0
    raise ValueError(f"unknown texture {kind!r}")


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1, sat, val)) * 255


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    top, bottom = (np.array(c, float) for c in SCENES[rng.integers(len(SCENES))])
    ramp = np.linspace(0, 1, h)[:, None, None]
    img = top * (1 - ramp) + bottom * ramp + np.zeros((h, w, 3))
    coarse = rng.normal(0, 14, (h // 16 + 2, w // 16 + 2, 1))
    img += np.kron(coarse, np.ones((16, 16, 1)))[:h, :w]
    img += rng.normal(0, 7, (h, w, 3))
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(6, 26)):  # pebbles, leaves, stains
        r = rng.uniform(0.01, 0.05) * min(w, h)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        tone = rng.uniform(50, 200)
        tint = rng.uniform(-25, 25, 3)
        colour = tuple(int(np.clip(tone + c, 0, 255)) for c in tint)
        draw.ellipse([cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r], fill=colour)
    return np.asarray(canvas, dtype=float)


@dataclass
class _Object:
    category_id: int
    polygon: np.ndarray  # (k, 2) display-frame x, y
    mask: np.ndarray  # (h, w) bool, pixels the object covers before later objects


@dataclass
class SyntheticTaco:
    """Writes a TACO-format data set; `write(root)` is skipped when `root` already holds it."""

    num_images: PositiveInt = 800
    seed: Seed = 0
    # landscape width, height; portrait images swap them
    image_size: list[Annotated[int, Range(8)]] = (320, 240)
    # exponent on TACO's image counts: 1 = TACO's imbalance, 0 = uniform
    imbalance: Annotated[float, Probability] = 0.6
    p_portrait: float = 0.3
    p_exif: float = 0.12
    p_grayscale: float = 0.05
    p_png: float = 0.04
    p_upper_ext: float = 0.45
    images_per_batch: int = 100
    min_visible: float = 0.3  # an object less visible than this (occluded) is not annotated
    _probs: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        counts = np.array([c[3] for c in TACO_CATEGORIES], float)
        weights = np.where(counts > 0, counts, 0.0) ** self.imbalance
        weights[counts == 0] = 0.0
        self._probs = weights / weights.sum()

    def spec(self) -> dict:
        spec = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        spec["image_size"] = [int(s) for s in self.image_size]
        spec["generator_version"] = GENERATOR_VERSION
        return spec

    # ----------------------------------------------------------------------------- on disk
    def is_current(self, root: Path) -> bool:
        """True when `root` holds exactly what this spec writes (stamp, annotation hash, files)."""
        stamp, ann = root / STAMP_NAME, root / ANNOTATION_NAME
        if not stamp.is_file() or not ann.is_file():
            return False
        try:
            recorded = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return False
        if recorded.get("spec") != self.spec() or recorded.get("sha256") != _sha256(ann):
            return False
        return all((root / name).is_file() for name in recorded.get("files", []))

    def write(self, root: str | Path) -> Path:
        """Generate into a temporary folder and move it into place, so a crash leaves nothing."""
        root = Path(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(root.parent / f".{root.name}.lock"):
            if self.is_current(root):
                log.info("synthetic data set at %s is up to date", root)
                return root / ANNOTATION_NAME
            if root.exists() and any(root.iterdir()) and not (root / STAMP_NAME).exists():
                raise DataError(
                    f"{root} exists and is not a synthetic data set written by taco; "
                    "move it away or set dataset.root to another folder"
                )
            tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("writing %d synthetic TACO images to %s", self.num_images, root)
            try:
                self._write_into(tmp)
                shutil.rmtree(root, ignore_errors=True)
                os.replace(tmp, root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return root / ANNOTATION_NAME

    def _write_into(self, folder: Path) -> None:
        images, annotations, files = [], [], []
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            rendered = list(pool.map(self.render, range(self.num_images)))
        for record, anns, data in rendered:
            path = folder / record["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            for ann in anns:
                ann["id"] = len(annotations) + 1
                annotations.append(ann)
            images.append(record)
            files.append(record["file_name"])
        categories = [{"supercategory": s, "id": i, "name": n} for i, n, s, _ in TACO_CATEGORIES]
        doc = {
            "info": {
                "description": "TACO-format synthetic data set (taco.data.synthetic)",
                "version": str(GENERATOR_VERSION),
                "year": 2026,
            },
            "images": images,
            "annotations": annotations,
            "scene_annotations": [],
            "licenses": [],
            "categories": categories,
            "scene_categories": [],
        }
        ann_path = folder / ANNOTATION_NAME
        ann_path.write_text(json.dumps(doc))
        stamp = {"spec": self.spec(), "sha256": _sha256(ann_path), "files": files}
        (folder / STAMP_NAME).write_text(json.dumps(stamp))

    # ----------------------------------------------------------------------------- drawing
    def render(self, index: int) -> tuple[dict, list[dict], bytes]:
        """One image: its COCO image record, its annotations and the encoded file bytes."""
        rng = np.random.default_rng([self.seed, index])
        w, h = (int(s) for s in self.image_size)
        if rng.random() < self.p_portrait:
            w, h = h, w
        pixels = _background(rng, w, h)
        n_objects = 1 + rng.choice(len(OBJECTS_PER_IMAGE_P), p=OBJECTS_PER_IMAGE_P)
        cats = rng.choice(len(TACO_CATEGORIES), size=n_objects, p=self._probs)
        owner = np.full((h, w), -1, int)
        objects = []
        for k, cat_index in enumerate(cats):
            obj = self._draw_object(rng, pixels, int(cat_index), w, h)
            owner[obj.mask] = k
            objects.append(obj)
        pixels *= rng.uniform(0.8, 1.15)  # exposure
        display = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

        annotations = []
        for k, obj in enumerate(objects):
            visible = (owner == k).sum() / max(obj.mask.sum(), 1)
            if visible < self.min_visible and k != len(objects) - 1:
                continue
            annotations.append(_annotation(index, obj, w, h))

        upper = rng.random() < self.p_upper_ext
        batch = 1 + index // self.images_per_batch
        name = f"batch_{batch}/{index:06d}.{'JPG' if upper else 'jpg'}"
        record = {
            "id": index,
            "width": w,
            "height": h,
            "file_name": name,
            "license": None,
            "flickr_url": None,
            "coco_url": None,
            "date_captured": None,
            "flickr_640_url": None,
        }
        return record, annotations, self._encode(rng, display)

    def _draw_object(
        self, rng: np.random.Generator, pixels: np.ndarray, cat_index: int, w: int, h: int
    ) -> _Object:
        cat_id, _, supercategory, _ = TACO_CATEGORIES[cat_index]
        family = families()[supercategory]
        variants = [c[0] for c in TACO_CATEGORIES if c[2] == supercategory]
        variant = variants.index(cat_id) - (len(variants) - 1) / 2
        outline, hole = _shape_polygon(family.shape)
        size = rng.uniform(0.2, 0.42) * min(w, h)
        stretch = np.array([rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)])
        angle = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = np.array([rng.uniform(0.12, 0.88) * w, rng.uniform(0.12, 0.88) * h])

        def to_image(points: np.ndarray) -> np.ndarray:
            return (points * stretch * size) @ rot.T + centre

        polygon = to_image(outline)
        mask_img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask_img)
        draw.polygon([tuple(p) for p in polygon], fill=1)
        if hole is not None:
            draw.polygon([tuple(p) for p in to_image(hole)], fill=0)
        mask = np.asarray(mask_img, bool)

        ys, xs = np.nonzero(mask)
        local = (np.stack([xs, ys], 1) - centre) @ rot / (stretch * size)
        dark = _texture(family.texture, local[:, 0], local[:, 1])
        hue = family.hue + 0.035 * variant + rng.normal(0, 0.012)
        base = _rgb(hue, rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95))
        colour = np.where(dark[:, None], base * 0.35, base)
        shade = 1 + 0.25 * local[:, 1:2] * rng.uniform(-1, 1)  # simple directional lighting
        pixels[ys, xs] = colour * shade + rng.normal(0, 5, (len(ys), 3))
        return _Object(cat_id, polygon, mask)

    def _encode(self, rng: np.random.Generator, display: Image.Image) -> bytes:
        image = display.convert("L") if rng.random() < self.p_grayscale else display
        buffer = io.BytesIO()
        if rng.random() < self.p_png:  # PNG content behind a .jpg name, as in real TACO
            image.save(buffer, "PNG")
            return buffer.getvalue()
        exif = Image.Exif()
        if rng.random() < self.p_exif:
            orientation = int(rng.integers(2, 9))
            image = image.transpose(_INVERSE_ORIENTATION[orientation])
            exif[274] = orientation
        image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
        return buffer.getvalue()


def _annotation(image_id: int, obj: _Object, w: int, h: int) -> dict:
    poly = np.clip(obj.polygon, 0, [w - 1, h - 1]).round(1)
    x0, y0 = poly.min(0)
    x1, y1 = poly.max(0)
    return {
        "image_id": image_id,
        "category_id": obj.category_id,
        "segmentation": [poly.reshape(-1).tolist()],
        "area": float(obj.mask.sum()),
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "iscrowd": 0,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
