"""`WhereItLooks`: saliency of the test images and the pointing game against the data's boxes
(`test/pointing/*`, `analysis/pointing_game.md`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from taco.analysis.gradients import GradientSaliency
from taco.analysis.write import saliency, write_pointing
from taco.errors import ConfigError
from taco.metrics import Evaluation
from taco.schema import PositiveInt
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.analysis.write import Saliency
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class WhereItLooks(Callback):
    """Saliency of the test images: `occlusion` (a `patch`-pixel grey square every `stride`
    pixels; through `predict`, so for every family) or `gradient` (the input gradient of the
    class's score, a Keras family on TensorFlow or JAX); the pointing game against the data's
    boxes (`test/pointing/{model,centre,random}` hit rates over `test/pointing/pairs`, the
    per-class table `analysis/pointing_game.md`), and the maps `ErrorGallery` overlays."""

    def __init__(
        self,
        method: Literal["occlusion", "gradient"] = "occlusion",
        patch: PositiveInt = 16,
        stride: PositiveInt = 16,
    ) -> None:
        self.method, self.patch, self.stride = method, patch, stride
        self.looks: Saliency | GradientSaliency | None = None

    def check(self, classifier: BaseClassifier) -> None:
        if self.method == "gradient" and not classifier.has_gradients:
            raise ConfigError(
                f"callbacks.where_it_looks.method=gradient needs a family with gradients (Keras); "
                f"{type(classifier).__name__} has none: use method=occlusion"
            )

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        logger, datamodule = trainer.logger, trainer.datamodule
        if not logger.active or not len(result.y_true):
            return
        with trainer.profiler.section("saliency"):
            names = result.class_names
            images = datamodule.images("test")
            if self.method == "gradient":
                pairs = {int(i): set(np.flatnonzero(row).tolist())
                         for i, row in enumerate(result.y_true)}  # fmt: skip
                self.looks = GradientSaliency(classifier.gradient_model(), images, pairs)
            else:
                predict = scorer(classifier, datamodule.batch_size, len(names))
                self.looks = saliency(predict, images, len(names), self.patch, self.stride)
            boxes = datamodule.boxes("test")
            if not boxes:
                return
            with tempfile.TemporaryDirectory() as tmp:
                pooled = write_pointing(Path(tmp), self.looks, result, boxes)
                logger.log_artifacts(tmp, "analysis")
            logger.log_metrics({f"test/pointing/{k}": v for k, v in pooled.items()})
            print(
                f"\nWhere the model looks ({self.method} peak inside a box of the class, "
                f"{int(pooled['pairs'])} test pairs): model {pooled['model']:.3f}, image centre "
                f"{pooled['centre']:.3f}, random point {pooled['random']:.3f}"
            )


def scorer(classifier: BaseClassifier, batch_size: int, num_classes: int) -> Any:
    """The classifier's scores of in-memory images (any family)."""
    from taco.data.pipeline import ArrayBatches

    return lambda images: classifier.predict_scores(
        ArrayBatches(images, num_classes, max(batch_size, 64))
    )
