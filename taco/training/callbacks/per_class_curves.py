"""`PerClassCurves`: per class with test positives, precision-recall with the tuned threshold
marked, and test F1 against the threshold (`analysis/per_class_curves.png`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from taco.analysis.write import write_curves
from taco.metrics import Evaluation
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class PerClassCurves(Callback):
    """`analysis/per_class_curves.png`: per class with test positives, precision-recall with the
    tuned threshold marked and test F1 against the threshold."""

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        if not trainer.logger.active or not len(result.y_true):
            return
        with trainer.profiler.section("analysis"), tempfile.TemporaryDirectory() as tmp:
            write_curves(Path(tmp), result)
            trainer.logger.log_artifacts(tmp, "analysis")
