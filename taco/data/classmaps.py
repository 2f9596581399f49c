"""Class maps: TACO categories -> the classes a model predicts, and rare-class merge or drop.

A map is `supercategory` (28 classes), `category` (60), `taco10`, or a YAML file:

    by: supercategory          # the lists below name supercategories (or: category)
    classes:
      Bottle: [Bottle]
      Drink: [Can, Cup]
    other: Other               # class for everything not listed; null leaves it unlabelled
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from taco.errors import ConfigError

BUILTIN = ("supercategory", "category", "taco10")
RARE_POLICIES = ("merge", "drop")
Rare = Literal[RARE_POLICIES]  # `dataset.rare`'s rule (the data module's annotation)
MAPS_DIR = Path(__file__).parent / "maps"


@dataclass(frozen=True)
class ClassMap:
    """Class names and a (categories, classes) 0/1 matrix; rows follow `category_ids`."""

    name: str
    class_names: list[str]
    category_ids: list[int]
    matrix: np.ndarray

    def apply(self, category_labels: np.ndarray) -> np.ndarray:
        """(images, categories) multi-hot -> (images, classes) multi-hot."""
        return ((category_labels.astype(np.int64) @ self.matrix) > 0).astype(np.uint8)


def resolve(spec: str | Path | Mapping, categories: Sequence[Mapping]) -> ClassMap:
    """Build the map named by `spec` over `categories` (COCO category dicts, any order)."""
    cats = sorted(categories, key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if isinstance(spec, str) and spec in ("supercategory", "category"):
        key = "name" if spec == "category" else "supercategory"
        names = list(dict.fromkeys(c[key] for c in cats))
        index = {n: i for i, n in enumerate(names)}
        matrix = np.zeros((len(cats), len(names)), np.uint8)
        for row, c in enumerate(cats):
            matrix[row, index[c[key]]] = 1
        return ClassMap(spec, names, ids, matrix)
    name, doc = _load(spec)
    return _from_doc(name, doc, cats)


def _load(spec: str | Path | Mapping) -> tuple[str, Mapping]:
    if isinstance(spec, Mapping):
        return "custom", spec
    path = MAPS_DIR / f"{spec}.yaml" if spec in BUILTIN else Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"dataset.label_level: {spec!r} is neither one of {', '.join(BUILTIN)} nor a YAML "
            "class-map file"
        )
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"class map {path} is not valid YAML: {exc}") from None
    return path.stem, doc


def _from_doc(name: str, doc: Mapping, cats: list[Mapping]) -> ClassMap:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("classes"), Mapping):
        raise ConfigError(f"class map {name!r} needs a 'classes' mapping: class -> [names]")
    by = doc.get("by", "category")
    if by not in ("category", "supercategory"):
        raise ConfigError(f"class map {name!r}: 'by' must be category or supercategory; got {by!r}")
    key = "name" if by == "category" else "supercategory"
    known = {c[key] for c in cats}
    class_names = [str(k) for k in doc["classes"]]
    other = doc.get("other")
    if other is not None and other not in class_names:
        class_names.append(str(other))
    matrix = np.zeros((len(cats), len(class_names)), np.uint8)
    unknown, covered = [], set()
    for j, members in enumerate(doc["classes"].values()):
        for member in members or []:
            if member not in known:
                unknown.append(member)
                continue
            covered.add(member)
            for row, c in enumerate(cats):
                if c[key] == member:
                    matrix[row, j] = 1
    if unknown:
        raise ConfigError(
            f"class map {name!r} names {by} values not in the annotation file: "
            f"{sorted(set(unknown))}. Known: {sorted(known)}"
        )
    if other is not None:
        j = class_names.index(str(other))
        for row, c in enumerate(cats):
            if c[key] not in covered:
                matrix[row, j] = 1
    return ClassMap(name, class_names, [c["id"] for c in cats], matrix)


def limit_rare(
    labels: np.ndarray, class_names: list[str], min_images: int, rare: Rare = "merge"
) -> tuple[np.ndarray, list[str], list[str]]:
    """Classes in fewer than `min_images` images are merged into 'Other' or dropped.

    Returns the new labels, the new class names and the names of the classes affected.
    """
    if not min_images:
        return labels, class_names, []
    counts = labels.sum(0)
    is_rare = [counts[i] < min_images and n != "Other" for i, n in enumerate(class_names)]
    affected = [n for n, r in zip(class_names, is_rare, strict=True) if r]
    if not affected:
        return labels, class_names, []
    keep = [i for i, r in enumerate(is_rare) if not r]
    new_labels, new_names = labels[:, keep], [class_names[i] for i in keep]
    if rare == "merge":
        merged = labels[:, [i for i, r in enumerate(is_rare) if r]].max(1)
        if "Other" in new_names:
            j = new_names.index("Other")
            new_labels[:, j] = np.maximum(new_labels[:, j], merged)
        else:
            new_labels = np.concatenate([new_labels, merged[:, None]], 1)
            new_names = [*new_names, "Other"]
    return np.ascontiguousarray(new_labels), new_names, affected
