"""The analysis files of one evaluated split, written to a folder: `per_class_curves.png`,
`pointing_game.md`, `galleries/`, `errors.json` and `missed_instead.png`; what the training
callbacks log under `analysis/` and what `taco-explain` writes, by one code path, each writer
taking the split's `Evaluation` (labels, scores, thresholds, class names) whole. The saliency pass
the galleries and the pointing game read is made here too."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taco.analysis.errors import class_errors, missed_instead
from taco.analysis.figures import error_gallery, missed_instead_heatmap, per_class_curves
from taco.analysis.pointing import overall, pointing_game, pointing_table
from taco.analysis.saliency import Occlusion, Predict
from taco.metrics import Evaluation, sanitize

# zlib's fastest level: a few percent larger files, a third of the encoding time (the analysis
# runs in every training job)
FAST_PNG = {"compress_level": 1}


def save_figure(figure: Any, path: Path) -> Path:
    """A matplotlib figure as a PNG at `path`, then closed (its memory freed)."""
    import matplotlib.pyplot as plt

    figure.savefig(path, pil_kwargs=FAST_PNG)
    plt.close(figure)
    return path


def write_curves(folder: Path, result: Evaluation) -> Path:
    """`per_class_curves.png`."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    figure = per_class_curves(result)
    return save_figure(figure, Path(folder) / "per_class_curves.png")


@dataclass
class Saliency:
    """Occlusion maps of a set of images, kept as drops per square (small). What the writers
    read of it (`size`, `map(row, column)`) a `taco.analysis.gradients.GradientSaliency`
    offers too."""

    occlusion: Occlusion
    drops: np.ndarray  # (images, squares, classes)

    @property
    def size(self) -> int:
        return self.occlusion.size

    def maps(self, row: int) -> np.ndarray:
        """(classes, size, size) maps of one image."""
        return self.occlusion.render(self.drops[row])

    def map(self, row: int, column: int) -> np.ndarray:
        """(size, size) map of one image for one class."""
        return self.occlusion.render(self.drops[row][:, [column]])[0]


def saliency(
    predict: Predict, images: np.ndarray, num_classes: int, patch: int, stride: int
) -> Saliency:
    """Occlusion maps of `images` (squares of `patch` pixels every `stride`: the settings of
    `conf/callbacks/where_it_looks.yaml`)."""
    occlusion = Occlusion(images.shape[1], patch, stride)
    drops = np.zeros((len(images), len(occlusion.squares), num_classes), np.float32)
    per_call = max(1, 2048 // (len(occlusion.squares) + 1))  # about 2048 copies a call
    for i, _, found in occlusion.drops(predict, images, per_call):
        drops[i] = found
    return Saliency(occlusion, drops)


def write_pointing(
    folder: Path, looks: Any, result: Evaluation, boxes: Sequence[np.ndarray]
) -> dict[str, float]:
    """`pointing_game.md` (per class and pooled); returns the pooled figures."""
    scores = pointing_game(looks.map, result.y_true, boxes, result.class_names, looks.size)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "pointing_game.md").write_text(pointing_table(scores))
    pooled = overall(scores)
    model, centre, random = pooled.rates
    return {"pairs": float(pooled.pairs), "model": model, "centre": centre, "random": random}


def write_errors(
    folder: Path,
    images: np.ndarray,
    result: Evaluation,
    image_ids: Sequence[int],
    per_class: int = 6,
    looks: Any = None,
    boxes: Sequence[np.ndarray] | None = None,
) -> list[Path]:
    """`galleries/<class>.png` (with `looks`: saliency overlaid, boxes drawn), `errors.json`
    (the gallery images' ids) and `missed_instead.png`, of `images` scored as `result` says."""
    folder = Path(folder)
    (folder / "galleries").mkdir(parents=True, exist_ok=True)
    errors = class_errors(result, per_class)
    written = []
    for e in errors:
        overlays = None
        if looks is not None:
            rows = {int(r) for r in (*e.false_positives, *e.false_negatives)}
            overlays = {r: looks.map(r, e.column) for r in rows}
        sheet = error_gallery(e, images, result, overlays, boxes)
        written.append(folder / "galleries" / f"{sanitize(e.name)}.png")
        sheet.save(written[-1], **FAST_PNG)
    ids = np.asarray(image_ids)
    listed = {
        e.name: {
            "threshold": e.threshold,
            "false_positives": ids[e.false_positives].tolist(),
            "missed": ids[e.false_negatives].tolist(),
        }
        for e in errors
    }
    (folder / "errors.json").write_text(json.dumps(listed, indent=1))
    figure = missed_instead_heatmap(missed_instead(result), result.class_names)
    save_figure(figure, folder / "missed_instead.png")
    return [*written, folder / "errors.json", folder / "missed_instead.png"]
