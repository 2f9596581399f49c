"""`LogPredictions`: the test part's scores, labels and thresholds per image."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from taco.metrics import Evaluation
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class LogPredictions(Callback):
    """`predictions/test.npz` and `predictions/val.npz`: each part's image ids, true labels,
    scores and the thresholds that decided them (with the class names, split seed and fold), so
    any metric can be recomputed from the store without re-running the model; `taco-compare`
    pools a cross-validation's folds from the test files, and a threshold rule can be re-fitted
    on the validation files (`benchmarks/thresholds.py`)."""

    def on_validation_end(
        self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation
    ) -> None:
        self._log(trainer, "val", result)

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        self._log(trainer, "test", result)

    @staticmethod
    def _log(trainer: Trainer, part: str, result: Evaluation) -> None:
        if not trainer.logger.active:
            return
        _, split = trainer.datamodule.record()
        with tempfile.TemporaryDirectory() as tmp:
            np.savez_compressed(
                Path(tmp) / f"{part}.npz",
                image_ids=np.asarray(split[part], dtype=np.int64),
                y_true=np.asarray(result.y_true, dtype=np.uint8),
                scores=np.asarray(result.scores),  # as scored: the decisions stay exact
                thresholds=np.asarray(result.thresholds, dtype=np.float64),
                class_names=np.asarray(result.class_names, dtype=str),
                split_seed=split["split_seed"],
                folds=split.get("folds") or 0,
                fold=split.get("fold", 0),
            )
            trainer.logger.log_artifacts(tmp, "predictions")
