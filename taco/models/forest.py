"""ForestClassifier: pooled backbone features -> scikit-learn RandomForestClassifier.

Features depend only on (backbone, weights, image size, image cache), so they are extracted once
for every cached image, stored on disk under that key, and reused by every forest of a sweep.
Follows the same classifier protocol as `KerasClassifier`, so it goes through the same Trainer,
thresholds, metrics and MLflow logging.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class ForestClassifier:
    kind = "forest"
    single_pass = True  # fitted once: the Trainer reports one epoch

    def __init__(
        self,
        backbone: str = "Xception",
        weights: str | None = "imagenet",
        features_dir: str | Path = "data/cache/features",
        n_estimators: int = 200,
        max_depth: int | None = None,
        min_samples_leaf: int = 2,
        max_features: str | float | None = "sqrt",
        n_jobs: int = -1,
        random_state: int = 0,
        batch_size: int = 64,
    ) -> None:
        self.backbone = backbone
        self.weights = weights
        self.features_dir = Path(features_dir)
        self.forest_params = {
            "n_estimators": int(n_estimators),
            "max_depth": max_depth,
            "min_samples_leaf": int(min_samples_leaf),
            "max_features": max_features,
            "n_jobs": n_jobs,
            "random_state": random_state,
        }
        self.batch_size = int(batch_size)
        self.image_size = 0
        self.forest: Any = None
        self.extractor: Any = None
        self.feature_seconds = 0.0
        self.features_reused = False
        self._loaded: tuple[Path, np.ndarray] | None = None

    # ------------------------------------------------------------------ protocol
    def check(self, image_size: int) -> None:
        from taco.models.transfer import check_backbone

        check_backbone(self.backbone, image_size, self.weights)
        from sklearn.ensemble import RandomForestClassifier

        try:
            RandomForestClassifier(**self.forest_params)._validate_params()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"model.classifier forest parameters: {exc}") from None

    def setup(
        self, num_classes: int, image_size: int, train_labels: np.ndarray | None = None
    ) -> None:
        self.num_classes, self.image_size = num_classes, image_size

    def fit(
        self,
        batches: Any,
        epochs: int = 1,
        callbacks: Sequence[Any] = (),
        initial_epoch: int = 0,
        verbose: int = 0,
    ) -> None:
        """Extract (or reuse) features, fit the forest once, then report one 'epoch'."""
        from sklearn.ensemble import RandomForestClassifier

        for callback in callbacks:
            callback.on_epoch_begin(0)
        features = self.features(batches)
        rows = batches.ordered_rows()
        start = time.perf_counter()
        self.forest = RandomForestClassifier(**self.forest_params)
        self.forest.fit(features[rows], batches.labels[rows].astype(np.int64))
        log.info(
            "random forest (%d trees) fitted on %d images in %.1f s",
            self.forest_params["n_estimators"],
            len(rows),
            time.perf_counter() - start,
        )
        for callback in callbacks:  # validation scoring and logging, as after a Keras epoch
            callback.on_epoch_end(0, {"loss": float("nan")})

    def predict_scores(self, batches: Any) -> np.ndarray:
        features = self.features(batches)[batches.ordered_rows()]
        return forest_scores(self.forest, features, self.num_classes)

    def get_state(self) -> Any:
        return self.forest

    def set_state(self, state: Any) -> None:
        self.forest = state

    def checkpoint_state(self) -> dict[str, np.ndarray]:
        """The fitted forest, pickled: a local checkpoint this process wrote itself."""
        import pickle

        return {"forest": np.frombuffer(pickle.dumps(self.forest), dtype=np.uint8)}

    def load_checkpoint_state(
        self, arrays: dict[str, np.ndarray], source: Any = "", weights_only: bool = False
    ) -> None:
        import pickle

        if "forest" not in arrays:
            raise DataError(f"{source}: not a forest checkpoint")
        self.forest = pickle.loads(arrays["forest"].tobytes())

    def save(self, folder: Path, meta: dict) -> Path:
        """The forest in MLflow's scikit-learn format, the feature extractor as `.keras`."""
        import mlflow.sklearn

        folder.mkdir(parents=True, exist_ok=True)
        # skops format; the tree node storage is ours, written by this run, so it is trusted
        mlflow.sklearn.save_model(
            self.forest, folder / "forest", skops_trusted_types=["sklearn.tree._tree.Tree"]
        )
        self._extractor().save(folder / "features.keras")
        info = {"kind": self.kind, "backbone": self.backbone, "weights": self.weights, **meta}
        (folder / "taco_model.json").write_text(json.dumps(info, indent=1))
        return folder

    # ------------------------------------------------------------------ features
    def feature_path(self, cache_key: str) -> Path:
        weights = os.path.basename(str(self.weights))  # "imagenet", "None" or a file name
        name = f"{cache_key}-{self.backbone}-{weights}-{self.image_size}px.npy"
        return self.features_dir / name

    def features(self, batches: Any) -> np.ndarray:
        """Pooled backbone features of every image in the cache, from disk when present."""
        path = self.feature_path(batches.cache_key or "nokey")
        if self._loaded is not None and self._loaded[0] == path:
            return self._loaded[1]
        if path.is_file():
            features = np.load(path, mmap_mode="r")
            if len(features) == len(batches.images):
                self.features_reused = True  # extracted by an earlier run or job
                self._loaded = (path, features)
                return features
        start = time.perf_counter()
        extractor = self._extractor()
        parts = []
        for i in range(0, len(batches.images), self.batch_size):
            chunk = np.asarray(batches.images[i : i + self.batch_size], dtype=np.float32)
            parts.append(extractor.predict_on_batch(chunk))
        features = np.concatenate(parts).astype(np.float32)
        self.feature_seconds = time.perf_counter() - start
        log.info(
            "extracted %s features of %d images in %.1f s -> %s",
            self.backbone,
            len(features),
            self.feature_seconds,
            path,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, features)
        os.replace(tmp, path)  # whole or absent, also with parallel jobs of a sweep
        self._loaded = (path, features)
        return features

    def _extractor(self):
        if self.extractor is None:
            import keras

            from taco.models.transfer import BackbonePreprocess, backbone_constructor

            base = backbone_constructor(self.backbone)(
                include_top=False,
                weights=self.weights,
                input_shape=(self.image_size, self.image_size, 3),
                pooling="avg",
            )
            inputs = keras.Input((self.image_size, self.image_size, 3), name="image")
            outputs = base(BackbonePreprocess(self.backbone)(inputs), training=False)
            self.extractor = keras.Model(inputs, outputs, name=f"{self.backbone}_features")
        return self.extractor


def forest_scores(forest: Any, features: np.ndarray, num_classes: int) -> np.ndarray:
    """P(label present) per label from a multi-output forest.

    `predict_proba` gives one array per label, with one column per class seen in training: a
    label that was constant in training has a single column, so the positive column is looked up
    in `classes_` and is absent (score 0) when no training image had the label.
    """
    proba = forest.predict_proba(features)
    if not isinstance(proba, list):
        proba = [proba]
    classes = forest.classes_ if isinstance(forest.classes_, list) else [forest.classes_]
    scores = np.zeros((len(features), num_classes), dtype=np.float64)
    for c, (p, seen) in enumerate(zip(proba, classes, strict=True)):
        seen = list(seen)
        if 1 in seen:
            scores[:, c] = p[:, seen.index(1)]
    return scores
