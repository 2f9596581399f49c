"""ForestClassifier: pooled backbone features -> scikit-learn RandomForestClassifier.

Features depend only on (backbone, weights, image size, image cache), and for random-init
weights (`weights: null`) on the seed that drew them, so they are computed once for every cached
image, stored on disk under that key by the data (`Batches.derived`), and reused by every forest
of a sweep that shares it (every fold of a cross-validation; not the seeds of a random init).
A `BaseClassifier` fitted in a single pass, so the Trainer
runs one epoch, and it goes through the same thresholds, metrics and MLflow logging as the Keras
models.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from taco.errors import DataError
from taco.models.base import BaseClassifier
from taco.models.forest_graph import ForestGraph
from taco.models.registry import write_info
from taco.protocols import Batches, BatchHooks
from taco.schema import PositiveInt, Range, Seed

log = logging.getLogger(__name__)

# features tried per split: a rule, a share of them, or all (None)
MaxFeatures = Literal["sqrt", "log2"] | Annotated[float, Range(0, 1, open_low=True)] | None


class ForestClassifier(BaseClassifier):
    kind = "forest"
    single_pass = True  # fitted once: the Trainer runs one epoch

    def __init__(
        self,
        backbone: str = "Xception",
        weights: str | None = "imagenet",
        features_dir: str | Path = "data/cache/features",
        n_estimators: PositiveInt = 200,
        max_depth: PositiveInt | None = None,
        min_samples_leaf: PositiveInt = 2,
        max_features: MaxFeatures = "sqrt",
        n_jobs: int = -1,
        random_state: Seed = 0,
        batch_size: PositiveInt = 64,
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
        self.num_classes = 0
        self.forest: Any = None
        self.extractor: Any = None
        self.thresholds: np.ndarray | None = None

    # ------------------------------------------------------------------ protocol
    def check(self, image_size: int) -> None:
        from taco.models.backbones import check_backbone

        check_backbone(self.backbone, image_size, self.weights)

    def setup(self, num_classes: int, image_size: int, train_labels: np.ndarray) -> None:
        self.num_classes, self.image_size = num_classes, image_size
        self.thresholds = None

    def train_epoch(self, batches: Batches, epoch: int, hooks: BatchHooks) -> float:
        """Compute (or reuse) the features and fit the forest once; no loss to report."""
        from sklearn.ensemble import RandomForestClassifier

        features, labels = self.features(batches), batches.targets()
        start = time.perf_counter()
        self.forest = RandomForestClassifier(**self.forest_params)
        self.forest.fit(features, labels.astype(np.int64))
        log.info(
            "random forest (%d trees) fitted on %d images in %.1f s",
            self.forest_params["n_estimators"],
            len(labels),
            time.perf_counter() - start,
        )
        return float("nan")

    def predict_scores(self, batches: Batches) -> np.ndarray:
        return forest_scores(self.forest, self.features(batches), self.num_classes)

    def get_state(self) -> Any:
        return self.forest

    def set_state(self, state: Any) -> None:
        self.forest = state

    def checkpoint_state(self) -> dict[str, np.ndarray]:
        """The fitted forest in skops' format: loading it builds only `TRUSTED` types and runs
        no code, so a checkpoint from elsewhere cannot do harm (a pickle could)."""
        import skops.io

        return {"forest_skops": np.frombuffer(skops.io.dumps(self.forest), dtype=np.uint8)}

    def load_checkpoint_state(
        self, arrays: Mapping[str, np.ndarray], source: Any = "", weights_only: bool = False
    ) -> None:
        self.forest = load_forest(arrays, source)

    def save(self, folder: Path, meta: Mapping[str, Any]) -> Path:
        """The forest in skops' format (`forest/model.skops`, read back with taco's own trusted
        types), the feature extractor as `.keras`: plain files, as every family saves, which
        the run's logged model (MLflow's pyfunc) wraps."""
        import skops.io

        (folder / "forest").mkdir(parents=True, exist_ok=True)
        skops.io.dump(self.forest, folder / "forest" / "model.skops")
        self._extractor().save(folder / "features.keras")
        return write_info(
            folder, self, {"backbone": self.backbone, "weights": self.weights, **meta}
        )

    @staticmethod
    def load_predictor(folder: Path, info: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        forest, extractor = saved_forest(folder)
        n = len(info["class_names"])
        return lambda x: forest_scores(forest, extractor.predict(x, verbose=0), n)

    @staticmethod
    def load_exportable(folder: Path, info: Mapping[str, Any]) -> Any:
        """The feature extractor and the forest as one ONNX graph (`ForestGraph`)."""
        forest, extractor = saved_forest(folder)
        return ForestGraph(extractor, forest, len(info["class_names"]))

    # ------------------------------------------------------------------ features
    def feature_name(self) -> str:
        weights = os.path.basename(str(self.weights))  # "imagenet", "None" or a file name
        # a random init is drawn from the job's seed (random_state is ${seed}): its own features
        init = "" if self.weights else f"-seed{self.forest_params['random_state']}"
        return f"{self.backbone}-{weights}{init}-{self.image_size}px"

    def features(self, batches: Batches) -> np.ndarray:
        """Pooled backbone features of the batches' images, in batch order (cached on disk)."""

        def compute(images: np.ndarray) -> np.ndarray:
            chunk = np.asarray(images, dtype=np.uint8)  # the extractor casts inside itself
            return np.asarray(self._extractor().predict_on_batch(chunk), dtype=np.float32)

        return batches.derived(self.features_dir, self.feature_name(), compute, self.batch_size)

    def _extractor(self) -> Any:
        if self.extractor is None:
            import keras

            from taco.models.backbones import backbone_features

            inputs, outputs = backbone_features(self.backbone, self.image_size, self.weights)
            self.extractor = keras.Model(inputs, outputs, name=f"{self.backbone}_features")
        return self.extractor


def saved_forest(folder: Path) -> tuple[Any, Any]:
    """A saved model folder's forest and feature extractor, the forest read with taco's own
    trusted types (not those the folder's MLmodel file lists)."""
    import keras

    import taco.models.backbones  # noqa: F401  (registers the custom layers)

    path = folder / "forest" / "model.skops"
    if not path.is_file():
        raise DataError(f"{path} is missing: not a taco forest model folder")
    forest = trusted_forest(path.read_bytes(), path)
    return forest, keras.saving.load_model(folder / "features.keras", compile=False)


# what a forest checkpoint may contain beyond skops' own safe defaults (numpy, built-ins)
TRUSTED = ("sklearn.tree._tree.Tree",)


def load_forest(arrays: Mapping[str, np.ndarray], source: Any = "") -> Any:
    """A forest from checkpoint arrays, refusing any type outside `TRUSTED` (never a pickle)."""
    if "forest_skops" not in arrays:
        hint = " (a pickled forest from an earlier taco: not loaded)" if "forest" in arrays else ""
        raise DataError(f"{source}: not a forest checkpoint{hint}; train it again")
    return trusted_forest(arrays["forest_skops"].tobytes(), source)


def trusted_forest(data: bytes, source: Any) -> Any:
    """skops bytes -> the forest, when they hold no type outside `TRUSTED`."""
    import skops.io

    try:
        untrusted = set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED)
    except Exception as exc:
        raise DataError(f"{source}: unreadable forest state ({exc})") from None
    if untrusted:
        raise DataError(
            f"{source}: the forest state holds types taco does not load "
            f"({', '.join(sorted(untrusted))}): it was not written by taco"
        )
    return skops.io.loads(data, trusted=list(TRUSTED))


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
