"""Callbacks that write a run's reports: each can be switched off in `conf/callbacks/`.

`AugmentationPreview` (a grid of augmented training images), `PerClassReport` (the per-class test
table, its figure and the trivial floors), `LogPredictions` (the test part's scores, labels and
thresholds per image), `LogModel` (the trained model with what predicting needs), `ProfileReport`
(time per stage, with `trainer.profiler=simple`).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taco.metrics import Evaluation, floors
from taco.plots import augmentation_preview, per_class_f1
from taco.training.callbacks import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.tracking.base import BaseLogger
    from taco.training.trainer import Trainer


def log_figure(logger: BaseLogger, figure: Any, name: str) -> None:
    import matplotlib.pyplot as plt

    logger.log_figure(figure, name)
    plt.close(figure)


class AugmentationPreview(Callback):
    """`plots/augmentation_preview.png`: `images` training images, each with augmented copies."""

    def __init__(self, images: int = 6) -> None:
        self.images = int(images)

    def on_fit_start(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        datamodule = trainer.datamodule
        if datamodule.augmentation is None or not trainer.logger.active:
            return
        augment = copy.deepcopy(datamodule.augmentation)  # the training draws stay untouched
        figure = augmentation_preview(datamodule.sample("train", self.images), augment)
        log_figure(trainer.logger, figure, "plots/augmentation_preview.png")


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
        import numpy as np

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


class LogModel(Callback):
    """The trained model as the run's logged model `model`: an MLflow pyfunc with signature and
    input example around the saved folder, which holds what predicting needs (class names,
    thresholds, image size; read back by `taco.models.registry.load_model`)."""

    def __init__(self, model: str = "", dataset: str = "") -> None:
        self.model, self.dataset = model, dataset

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        if not trainer.logger.active:
            return
        datamodule = trainer.datamodule
        meta = {
            "model": self.model,
            "dataset": self.dataset or datamodule.name,
            "class_names": datamodule.class_names,
            "thresholds": [float(t) for t in classifier.thresholds],
            "rare_thresholds": trainer.threshold_support(datamodule.class_names)["below_minimum"],
            "image_size": datamodule.image_size,
            "resize": datamodule.resize,
        }
        with trainer.profiler.section("log_model"), tempfile.TemporaryDirectory() as tmp:
            folder = classifier.save(Path(tmp) / "model", meta)
            trainer.logger.log_model(folder, datamodule.sample("test", 1))


class ProfileReport(Callback):
    """Time per stage (`trainer.profiler=simple`): printed, `profile/*` metrics, `profile.md`."""

    order = 90  # after the other reports, so their time is counted

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        profiler = trainer.profiler
        if not profiler.enabled:
            return
        table = profiler.table()
        trainer.logger.log_metrics(profiler.metrics())
        trainer.logger.log_text(table, "profile.md")
        print(f"\nTime per stage (trainer.profiler=simple):\n{table}")
