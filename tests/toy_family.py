"""A toy model family written the way the README's "Extending" recipe says: one module (this)
and one config file, nothing changed in `taco/`. Logistic regression per class on pooled pixels.
`BaseClassifier` gives every member it does not need (checks, callbacks, stopping, learning
rate, the in-memory best state); it writes fitting, scoring, its checkpoint state and its saved
model.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from taco.models.base import BaseClassifier
from taco.models.registry import write_info


def pooled(images: np.ndarray, grid: int) -> np.ndarray:
    """Mean colour of each cell of a grid x grid partition of the image."""
    n, size = len(images), images.shape[1]
    cells = np.asarray(images, np.float32)[:, : size - size % grid, : size - size % grid]
    cells = cells.reshape(n, grid, size // grid, grid, size // grid, 3).mean(axis=(2, 4))
    return cells.reshape(n, -1) / 255.0


class PooledLogistic(BaseClassifier):
    kind = "pooled_logistic"
    single_pass = True  # fitted once: the Trainer runs one epoch

    def __init__(self, grid: int = 4, C: float = 1.0) -> None:
        self.grid, self.C = int(grid), float(C)
        self.models: list = []

    def train_epoch(self, batches, epoch: int, hooks) -> float:
        from sklearn.linear_model import LogisticRegression

        x, y = pooled(batches.images(), self.grid), batches.targets()
        self.models = [  # a label constant in training predicts its constant
            LogisticRegression(C=self.C, max_iter=200).fit(x, y[:, c])
            if 0 < y[:, c].sum() < len(y)
            else float(y[0, c])
            for c in range(y.shape[1])
        ]
        return float("nan")

    def predict_scores(self, batches) -> np.ndarray:
        return self._scores(batches.images())

    def _scores(self, images: np.ndarray) -> np.ndarray:
        x = pooled(images, self.grid)
        cols = [
            m.predict_proba(x)[:, 1] if hasattr(m, "predict_proba") else np.full(len(x), m)
            for m in self.models
        ]
        return np.stack(cols, 1)

    def checkpoint_state(self) -> dict:
        return {"models": np.frombuffer(pickle.dumps(self.models), np.uint8)}

    def load_checkpoint_state(self, arrays, source="", weights_only=False) -> None:
        self.models = pickle.loads(arrays["models"].tobytes())

    def save(self, folder: Path, meta) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "models.pkl").write_bytes(pickle.dumps(self.models))
        (folder / "params.json").write_text(json.dumps({"grid": self.grid}))
        return write_info(folder, self, meta)

    @staticmethod
    def load_predictor(folder: Path, info):
        model = PooledLogistic(**json.loads((folder / "params.json").read_text()))
        model.models = pickle.loads((folder / "models.pkl").read_bytes())
        return model._scores
