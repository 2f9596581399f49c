"""The pointing game: does a saliency map's peak fall on an object of the class? Scored over
(image, true class) pairs that have a box of that class, against two baselines that never look
at the image: its centre, and a point drawn uniformly (the share of the image the class's boxes
cover, computed exactly rather than drawn). Where several pixels share a map's maximum (an
occlusion square's plateau, a forest's discrete scores, a flat map) the pair scores the share of
them inside a box: what breaking the tie at random would score on average, so a flat map scores
as the random point does, never as the centre."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from taco import tables


@dataclass(frozen=True)
class PointingScore:
    name: str
    pairs: int
    hits: float  # ties on the peak count the share of the tied pixels inside a box
    centre_hits: int
    random_hits: float  # expected hits of a uniform random point

    @property
    def rates(self) -> tuple[float, float, float]:
        if not self.pairs:
            return (float("nan"),) * 3
        return self.hits / self.pairs, self.centre_hits / self.pairs, self.random_hits / self.pairs


def inside(x: float, y: float, boxes: np.ndarray) -> bool:
    """Whether (x, y) lies in any (x0, y0, x1, y1) box (edges included)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return bool(
        np.any((boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3]))
    )


def hit_share(saliency: np.ndarray, boxes: np.ndarray) -> float:
    """The share of the map's maximal pixels (their centres) inside any (x0, y0, x1, y1) box."""
    rows, cols = np.nonzero(saliency >= np.max(saliency))
    x, y = cols + 0.5, rows + 0.5
    boxes = np.asarray(boxes).reshape(-1, 4)
    hits = np.zeros(len(x), bool)
    for x0, y0, x1, y1 in boxes:
        hits |= (x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1)
    return float(hits.mean())


def covered_share(boxes: np.ndarray, size: int) -> float:
    """The share of a size x size image's pixel centres inside any of the boxes."""
    centres = np.arange(size) + 0.5
    mask = np.zeros((size, size), bool)
    for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
        cols = (centres >= x0) & (centres <= x1)
        rows = (centres >= y0) & (centres <= y1)
        mask |= rows[:, None] & cols[None, :]
    return float(mask.mean())


def pointing_game(
    saliency: Callable[[int, int], np.ndarray],
    y_true: np.ndarray,
    boxes: Sequence[np.ndarray],
    class_names: Sequence[str],
    size: int,
) -> list[PointingScore]:
    """Per class: of the (image, class) pairs with a true label and a box of the class, how
    many have their saliency peak (`saliency(image, class)`: the map) in one of those boxes,
    how many the image centre would hit, and how many a uniform random point would be expected
    to."""
    centre = size / 2
    scores = []
    for c, name in enumerate(class_names):
        pairs = centre_hits = 0
        hits = random_hits = 0.0
        for i in np.flatnonzero(np.asarray(y_true)[:, c]):
            rows = np.asarray(boxes[i]).reshape(-1, 5)
            own = rows[rows[:, 0] == c, 1:]
            if not len(own):
                continue
            pairs += 1
            hits += hit_share(saliency(int(i), c), own)
            centre_hits += inside(centre, centre, own)
            random_hits += covered_share(own, size)
        scores.append(PointingScore(name, pairs, hits, centre_hits, random_hits))
    return scores


def overall(scores: Sequence[PointingScore]) -> PointingScore:
    """All pairs pooled (each pair counts once, so frequent classes weigh more)."""
    return PointingScore(
        "all",
        sum(s.pairs for s in scores),
        sum(s.hits for s in scores),
        sum(s.centre_hits for s in scores),
        sum(s.random_hits for s in scores),
    )


def pointing_table(scores: Sequence[PointingScore]) -> str:
    """Markdown: per class with pairs, then all pairs pooled."""
    rows = [
        [s.name, s.pairs, *(f"{rate:.3f}" for rate in s.rates)]
        for s in [*sorted((s for s in scores if s.pairs), key=lambda s: -s.pairs), overall(scores)]
    ]
    return tables.markdown(["class", "pairs", "model", "centre", "random"], rows)
