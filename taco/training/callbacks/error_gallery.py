"""`ErrorGallery`: each class's worst false positives and misses, and what is predicted instead
of a missed class (`analysis/`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from taco.analysis.write import write_errors
from taco.metrics import Evaluation
from taco.schema import PositiveInt
from taco.training.callbacks.base import Callback
from taco.training.callbacks.where_it_looks import WhereItLooks

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class ErrorGallery(Callback):
    """`analysis/galleries/<class>.png` (the `per_class` most confident false positives and
    misses of each class with test positives), `analysis/errors.json` (their image ids) and
    `analysis/missed_instead.png`. With `WhereItLooks` on, its maps are laid over them."""

    order = 10  # after WhereItLooks, whose maps it shows

    def __init__(self, per_class: PositiveInt = 6) -> None:
        self.per_class = per_class

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        logger, datamodule = trainer.logger, trainer.datamodule
        if not logger.active or not len(result.y_true):
            return
        found = [c for c in trainer.callbacks if isinstance(c, WhereItLooks) and c.looks]
        looks = found[0].looks if found else None
        with trainer.profiler.section("analysis"), tempfile.TemporaryDirectory() as tmp:
            write_errors(
                Path(tmp),
                datamodule.images("test"),
                result,
                datamodule.record()[1]["test"],
                self.per_class,
                looks,
                datamodule.boxes("test") if looks is not None else None,
            )
            logger.log_artifacts(tmp, "analysis")
