"""`PerClassReport`: the per-class test table, its figure and the trivial floors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taco.metrics import Evaluation, floors
from taco.plots import per_class_f1
from taco.training.callbacks.base import Callback, log_figure

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class PerClassReport(Callback):
    """The per-class test table (printed and `per_class_test.md`), the per-class F1 figure and
    the macro F1 of trivial predictors on the same test set (`test/floor/*`)."""

    def __init__(self, title: str = "test F1") -> None:
        self.title = title

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        datamodule, logger = trainer.datamodule, trainer.logger
        floor = floors(
            datamodule.labels("train"),
            datamodule.labels("test"),
            datamodule.class_names,
            datamodule.seed,
        )
        logger.log_metrics({f"test/{k}": v for k, v in floor.items()})
        table = result.table()
        logger.log_text(table, "per_class_test.md")
        images = len(datamodule.labels("test"))
        figure = per_class_f1(result.class_names, result.f1, result.support, self.title, images)
        log_figure(logger, figure, "plots/per_class_f1_test.png")
        print(f"\nTest set, {self.title} (thresholds tuned on validation):")
        print(table)
        print(
            f"floors on the same test set: predict every class macro F1 "
            f"{floor['floor/f1_macro_all']:.3f}, predict at training prevalence "
            f"{floor['floor/f1_macro_prevalence']:.3f}"
        )
