"""Where a model looks: occlusion maps, which need nothing but the model's `predict`, so they
work for every family (the forest included) on every backend.

Each map is the drop of a class's score when a grey square hides the pixels around a point,
averaged over the squares that cover it: high where hiding the image hurts the class most."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # (n, size, size, 3) uint8 -> (n, classes) scores


class Occlusion:
    """Grey `patch`-pixel squares every `stride` pixels over size x size images (the last row
    and column flush with the edge). The drops per square are what is kept (small); `render`
    turns them into per-pixel maps."""

    def __init__(self, size: int, patch: int = 16, stride: int = 8, fill: int = 128) -> None:
        self.size, self.patch, self.fill = size, min(patch, size), fill
        starts = list(range(0, size - self.patch + 1, stride))
        if starts[-1] != size - self.patch:
            starts.append(size - self.patch)
        self.squares = [(top, left) for top in starts for left in starts]
        self.coverage = self.render(np.ones((len(self.squares), 1), np.float32), normalise=False)[0]

    def drops(
        self, predict: Predict, images: np.ndarray, images_per_call: int = 8
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(index, scores, drops) per image: its scores and the (squares, classes) drop of each
        class's score under each square. One `predict` call per `images_per_call` images."""
        images, p, n = np.asarray(images), self.patch, len(self.squares)
        for start in range(0, len(images), images_per_call):
            chunk = images[start : start + images_per_call]
            copies = np.repeat(chunk, n + 1, axis=0)  # each image, then its occluded copies
            for i in range(len(chunk)):
                for g, (top, left) in enumerate(self.squares):
                    copies[i * (n + 1) + g + 1, top : top + p, left : left + p] = self.fill
            scores = np.asarray(predict(copies), dtype=np.float32)
            for i in range(len(chunk)):
                rows = scores[i * (n + 1) : (i + 1) * (n + 1)]
                yield start + i, rows[0], rows[0][None, :] - rows[1:]

    def render(self, drops: np.ndarray, normalise: bool = True) -> np.ndarray:
        """(squares, classes) drops -> (classes, size, size) maps, averaged where squares
        overlap."""
        p = self.patch
        maps = np.zeros((drops.shape[1], self.size, self.size), np.float32)
        for g, (top, left) in enumerate(self.squares):
            maps[:, top : top + p, left : left + p] += drops[g][:, None, None]
        return maps / self.coverage if normalise else maps


def peak(saliency: np.ndarray) -> tuple[float, float]:
    """(x, y) of the map's maximum at the pixel's centre, where a figure marks it; where
    several pixels share it (a square's plateau), the one nearest their centroid (the pointing
    game scores all of them: `taco.analysis.pointing.hit_share`)."""
    rows, cols = np.nonzero(saliency >= np.max(saliency))
    nearest = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return float(cols[nearest]) + 0.5, float(rows[nearest]) + 0.5
