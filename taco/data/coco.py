"""COCO/TACO annotations -> LabelSet: image paths and multi-hot labels over named classes.

Labels come from looking each annotation's `category_id` up in `categories` (never from a list
index). The file is checked as a whole first, so every problem is reported at once, by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taco.data import classmaps
from taco.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelSet:
    """Images of one data set with a multi-hot label row each; rows align with `image_ids`."""

    image_ids: np.ndarray  # (n,) int64, COCO image ids
    file_names: list[str]  # as in the annotation file, relative to `image_root`
    image_root: Path
    sizes: np.ndarray  # (n, 2) int, (width, height) in the display (EXIF-corrected) frame
    labels: np.ndarray  # (n, classes) uint8
    class_names: list[str]
    content_hash: str = ""  # sha256 of the annotation file
    meta: dict = field(default_factory=dict)
    # per row, (k, 5) float32: class column, x, y, width, height (COCO `bbox`, the image's frame);
    # an object of a category the class map drops has none
    boxes: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def paths(self) -> list[Path]:
        return [self.image_root / name for name in self.file_names]

    def subset(self, rows: np.ndarray) -> LabelSet:
        """The same data set restricted to `rows` (positions, not image ids)."""
        rows = np.asarray(rows, dtype=int)
        return LabelSet(
            image_ids=self.image_ids[rows],
            file_names=[self.file_names[i] for i in rows],
            image_root=self.image_root,
            sizes=self.sizes[rows],
            labels=self.labels[rows],
            class_names=list(self.class_names),
            content_hash=self.content_hash,
            meta=dict(self.meta),
            boxes=[self.boxes[i] for i in rows] if self.boxes else [],
        )

    def image_counts(self) -> dict[str, int]:
        """Number of images holding each class."""
        return dict(zip(self.class_names, self.labels.sum(0).astype(int).tolist(), strict=True))


def read_annotations(path: str | Path) -> dict:
    """Parse and validate a COCO annotation file; one DataError lists every problem found."""
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[dict, str]:
    """The validated document and the sha256 of the bytes it was parsed from (read once)."""
    if not path.is_file():
        raise DataError(
            f"annotation file not found: {path}. Check dataset.root and dataset.annotation_file "
            "(for real TACO, download it first; see README)"
        )
    try:
        data = path.read_bytes()
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc}); re-download or regenerate it (a partial download "
            "leaves a truncated file)"
        ) from None
    problems = _validate(doc)
    if problems:
        shown = "\n  - ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{path} is not a valid COCO/TACO annotation file:\n  - {shown}{more}")
    return doc, hashlib.sha256(data).hexdigest()


_REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id"),
    "categories": ("id", "name", "supercategory"),
}


def _validate(doc: object) -> list[str]:
    if not isinstance(doc, dict):
        return [f"top level is a {type(doc).__name__}, expected an object"]
    problems = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            problems.append(f"missing list '{key}'")
    if problems:
        return problems
    for key, fields in _REQUIRED.items():
        for i, item in enumerate(doc[key]):
            missing = [f for f in fields if not isinstance(item, dict) or f not in item]
            if missing:
                problems.append(f"{key}[{i}] lacks {', '.join(missing)}")
            else:
                problems.extend(_wrong_types(key, i, item))
    if problems:
        return problems
    for key in ("images", "categories"):  # annotations: see `duplicate_annotation_ids`
        repeated = _repeated(item["id"] for item in doc[key])
        if repeated:
            problems.append(f"duplicate ids in '{key}': {_ids(repeated)}")
    by_file: dict[str, list[int]] = {}
    for im in doc["images"]:  # one photo under two ids could land in train and in test
        by_file.setdefault(os.path.normcase(os.path.normpath(str(im["file_name"]))), []).append(
            im["id"]
        )
    for name, ids in by_file.items():
        if len(ids) > 1:
            problems.append(f"{name} is listed by {len(ids)} images (ids {_ids(ids)})")
    cat_ids = {c["id"] for c in doc["categories"]}
    img_ids = {im["id"] for im in doc["images"]}
    for ann in doc["annotations"]:
        if ann["category_id"] not in cat_ids:
            problems.append(f"annotation {ann['id']}: unknown category_id {ann['category_id']}")
        if ann["image_id"] not in img_ids:
            problems.append(f"annotation {ann['id']}: unknown image_id {ann['image_id']}")
    for im in doc["images"]:
        name = str(im["file_name"])
        inside = os.path.normpath(name.replace("\\", "/"))  # `a/../a/x.jpg` stays inside
        if name.startswith(("/", "\\")) or inside == ".." or inside.startswith("../"):
            problems.append(f"image {im['id']}: file_name {name!r} leaves the data folder")
    return problems


def _repeated(values: Any) -> list:
    seen: set = set()
    return sorted({v for v in values if v in seen or seen.add(v)})


def _ids(ids: list) -> str:
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def duplicate_annotation_ids(annotations: list[dict]) -> list[int]:
    """Annotation ids used more than once. Labels are read per image from every annotation, so
    they change no label; real TACO has two (309 and 4040, each on two images): warned, not
    refused."""
    return _repeated(a["id"] for a in annotations)


def malformed_geometry(annotations: list[dict]) -> list[int]:
    """Ids of annotations whose `bbox` or `segmentation` (when present) is not COCO's shape:
    they do not change a label, so they are counted in one warning, not refused."""
    return [a["id"] for a in annotations if not _geometry_ok(a)]


def _geometry_ok(ann: dict) -> bool:
    def numbers(values: Any) -> bool:
        return isinstance(values, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )

    bbox, segmentation = ann.get("bbox"), ann.get("segmentation")
    if bbox is not None and not (numbers(bbox) and len(bbox) == 4 and min(bbox[2:]) >= 0):
        return False
    if segmentation is None or isinstance(segmentation, dict):  # absent, or RLE
        return True
    return isinstance(segmentation, list) and all(
        numbers(p) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_FIELD_TYPES = {  # field: (check, what it must be)
    "id": (_is_int, "an integer"),
    "image_id": (_is_int, "an integer"),
    "category_id": (_is_int, "an integer"),
    "width": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "height": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "file_name": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "supercategory": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
}
_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}


def _wrong_types(key: str, index: int, item: dict) -> list[str]:
    """Each required field of the wrong type, named with its item's id (or list position)."""
    who = f"{_SINGULAR[key]} {item['id']}" if _is_int(item["id"]) else f"{key}[{index}]"
    problems = []
    for name in _REQUIRED[key]:  # all present: missing ones were reported before
        ok, what = _FIELD_TYPES[name]
        if not ok(item[name]):
            problems.append(f"{who}: {name} is {item[name]!r}, expected {what}")
    return problems


def _per_category(doc: dict) -> tuple[Any, list[dict], np.ndarray, np.ndarray]:
    """pycocotools index, categories by id, image ids, and a multi-hot row per image over the
    categories (each annotation's `category_id` looked up by id, never by list position)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    categories = [coco.cats[i] for i in sorted(coco.cats)]
    column = {c["id"]: i for i, c in enumerate(categories)}
    image_ids = np.array(sorted(coco.imgs), dtype=np.int64)
    per_category = np.zeros((len(image_ids), len(categories)), dtype=np.uint8)
    for row, image_id in enumerate(image_ids):
        for ann in coco.imgToAnns.get(int(image_id), []):
            per_category[row, column[ann["category_id"]]] = 1
    return coco, categories, image_ids, per_category


def load_labelset(
    annotation_file: str | Path,
    image_root: str | Path,
    label_level: str | Path = "supercategory",
    min_images: int = 0,
    rare: str = "merge",
) -> LabelSet:
    """Read an annotation file with pycocotools and build one multi-hot label row per image.

    `label_level` names a class map (supercategory, category, taco10 or a YAML file); classes in
    fewer than `min_images` images are merged into 'Other' or dropped (`rare`).
    """
    annotation_file = Path(annotation_file)
    if not (str(label_level) in classmaps.BUILTIN or Path(label_level).suffix in (".yaml", ".yml")):
        raise ConfigError(
            f"dataset.label_level must be one of {', '.join(classmaps.BUILTIN)} or a YAML "
            f"class-map file; got {label_level!r}"
        )
    doc, content_hash = _read(annotation_file)
    repeated = duplicate_annotation_ids(doc["annotations"])
    if repeated:
        log.warning(
            "%s: annotation ids used more than once: %s (each still labels its own image)",
            annotation_file,
            _ids(repeated),
        )
    malformed = malformed_geometry(doc["annotations"])
    if malformed:
        log.warning(
            "%s: %d annotation(s) with a malformed bbox or segmentation (ids %s); their labels "
            "are used, their geometry is not",
            annotation_file,
            len(malformed),
            _ids(malformed),
        )
    coco, categories, image_ids, per_category = _per_category(doc)
    class_map = classmaps.resolve(label_level, categories)
    labels, class_names, affected = classmaps.limit_rare(
        class_map.apply(per_category), class_map.class_names, min_images, rare
    )
    images = [coco.imgs[int(i)] for i in image_ids]
    columns = _class_columns(class_map.matrix, class_map.class_names, class_names, rare)
    return LabelSet(
        image_ids=image_ids,
        file_names=[im["file_name"] for im in images],
        image_root=Path(image_root),
        sizes=np.array([[im["width"], im["height"]] for im in images], dtype=np.int64),
        labels=labels,
        class_names=class_names,
        content_hash=content_hash,
        meta={
            "annotation_file": str(annotation_file),
            "label_level": str(label_level),
            "class_map": class_map.name,
            f"rare_{rare}d": affected,
            "min_images": min_images,
            "malformed_geometry": len(malformed),
            "unlabeled_ids": image_ids[per_category.sum(1) == 0].tolist(),
        },
        boxes=[_boxes(coco, int(i), categories, columns) for i in image_ids],
    )


def _class_columns(
    matrix: np.ndarray, mapped: list[str], kept: list[str], rare: str
) -> list[list[int]]:
    """For each category (in id order), the final class columns its objects belong to: through
    the class map, then rare classes merged into 'Other' or dropped."""
    final = {name: j for j, name in enumerate(kept)}
    other = final.get("Other") if rare == "merge" else None
    columns = []
    for row in matrix:
        names = [mapped[k] for k in np.flatnonzero(row)]
        found = {final[n] if n in final else other for n in names}
        columns.append(sorted(c for c in found if c is not None))
    return columns


def _boxes(
    coco: Any, image_id: int, categories: list[dict], columns: list[list[int]]
) -> np.ndarray:
    position = {c["id"]: i for i, c in enumerate(categories)}
    rows = [
        [column, *ann["bbox"]]
        for ann in coco.imgToAnns.get(image_id, [])
        if ann.get("bbox") is not None and _geometry_ok(ann)
        for column in columns[position[ann["category_id"]]]
    ]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)
