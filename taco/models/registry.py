"""Saved models: what `taco_model.json` records, and loading a saved or logged model by it.

A classifier's `save` writes its files and `taco_model.json` (through `write_info`), which names
the class that can load it back (`loader`) beside its `kind`. `load_model` imports that class and
asks it for a predictor, so a new model family is loadable without touching this file.

A model folder is data, and data must not choose what code runs: `loader` is only imported when
it is a registered loader, i.e. one of taco's own or one a user's installed package declares in
the `taco.model_loaders` entry-point group (README, "Extending"). Anything else is refused before
any import.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import TacoError

INFO_NAME = "taco_model.json"
# models saved before `loader` was recorded name only their kind
_BUILT_IN = {
    "keras": "taco.models.keras_classifier.KerasClassifier",
    "forest": "taco.models.forest.ForestClassifier",
}
LOADER_GROUP = "taco.model_loaders"  # entry points: <name> = "your.module:YourClassifier"


def registered_loaders() -> dict[str, str]:
    """Every loader a model folder may name (dotted path -> how it is registered): taco's own,
    then the entry points of `LOADER_GROUP` of the installed packages."""
    loaders = {path: "built in" for path in _BUILT_IN.values()}
    for entry in entry_points(group=LOADER_GROUP):
        loaders[entry.value.replace(":", ".")] = f"entry point {entry.name} ({entry.dist.name})"
    return loaders


# a label whose class's threshold rests on too few validation positives
RARE_MARK = "?"


@dataclass
class LoadedModel:
    info: dict
    predict: Callable[[np.ndarray], np.ndarray]  # (n, size, size, 3) uint8-range -> scores

    @property
    def class_names(self) -> list[str]:
        return self.info["class_names"]

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.info["thresholds"], float)

    @property
    def image_size(self) -> int:
        return int(self.info["image_size"])

    @property
    def resize(self) -> str:
        return self.info.get("resize", "squash")

    @property
    def rare_thresholds(self) -> list[str]:
        """Classes whose threshold was tuned on fewer validation positives than the trainer's
        `threshold_min_positives` (none known for a model saved before this was recorded)."""
        return list(self.info.get("rare_thresholds", []))

    def columns(self, scores: np.ndarray, rare: str = "mark") -> dict[str, list]:
        """`labels` (the decided class names; a class with a rare threshold marked `?`, or
        with `rare="omit"` left out), then `score/<class>` and `decision/<class>`."""
        decided = scores >= self.thresholds
        names, doubtful = self.class_names, set(self.rare_thresholds)

        def label(name: str) -> str:
            return f"{name}{RARE_MARK}" if name in doubtful else name

        keep = [not (rare == "omit" and n in doubtful) for n in names]
        columns: dict[str, list] = {
            "labels": [
                "; ".join(label(n) for n, on, k in zip(names, row, keep, strict=True) if on and k)
                for row in decided
            ]
        }
        columns |= {f"score/{n}": scores[:, i].tolist() for i, n in enumerate(names)}
        columns |= {f"decision/{n}": decided[:, i].tolist() for i, n in enumerate(names)}
        return columns


def write_info(folder: Path, classifier: Any, meta: Mapping[str, Any]) -> Path:
    """`taco_model.json`: the classifier's kind and loader, then `meta` (class names, ...)."""
    cls = type(classifier)
    info = {"kind": classifier.kind, "loader": f"{cls.__module__}.{cls.__qualname__}", **meta}
    (folder / INFO_NAME).write_text(json.dumps(info, indent=1))
    return folder


def load_model(folder: str | Path) -> LoadedModel:
    """A model folder as written by a classifier's `save`, or a run's logged model around it."""
    folder, info, cls = model_class(folder)
    return LoadedModel(info, cls.load_predictor(folder, info))


def model_class(folder: str | Path) -> tuple[Path, dict, Any]:
    """A model folder's own folder (inside a logged model's), its info and its loader class,
    the loader imported only when it is registered."""
    folder = Path(folder)
    inner = sorted(folder.glob(f"artifacts/*/{INFO_NAME}"))  # a logged (MLflow pyfunc) model
    if len(inner) == 1 and not (folder / INFO_NAME).is_file():
        folder = inner[0].parent
    info_path = folder / INFO_NAME
    if not info_path.is_file():
        raise TacoError(f"{folder} holds no taco model ({INFO_NAME} is missing)")
    try:
        info = json.loads(info_path.read_text())
    except ValueError as exc:
        raise TacoError(f"{info_path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("loader", ""), str):
        raise TacoError(f"{info_path}: not a taco model description")
    loader = info.get("loader") or _BUILT_IN.get(info.get("kind", ""))
    if loader is None:
        raise TacoError(f"{info_path}: no loader recorded for a model of kind {info.get('kind')!r}")
    if loader not in registered_loaders():
        raise TacoError(
            f"{info_path}: its loader {loader!r} is not a registered taco model loader, so it "
            f"is not imported; a model family's package declares its class in the "
            f"{LOADER_GROUP!r} entry-point group (README, 'Extending')"
        )
    module, _, name = loader.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise TacoError(f"{info_path}: cannot import its loader {loader} ({exc})") from None
    return folder, info, cls
