"""A small Lightning-style Trainer: fit, validate (tune thresholds), test. Model-agnostic.

The Trainer drives any classifier that follows the protocol in `taco.models.keras_classifier`.
After every epoch it scores the validation part, logs the curves, and keeps the weights of the
best epoch by the monitored metric; `validate` then tunes one threshold per class on validation
and `test` applies those thresholds to the test part.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import numpy as np

from taco.errors import ConfigError
from taco.metrics import Evaluation, evaluate, macro_f1, tune_thresholds
from taco.tracking import NullLogger, sanitize

log = logging.getLogger(__name__)

MONITORS = ("val/f1_macro", "val/loss")


def bce(y_true: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


class _EpochEnd(keras.callbacks.Callback):
    """Scores validation after each epoch, logs the curves, remembers the best weights."""

    def __init__(self, trainer: Trainer, classifier: Any, val: Any, logger: Any) -> None:
        super().__init__()
        self.trainer, self.classifier, self.val, self.logger = trainer, classifier, val, logger
        self.y_val = val.targets()
        self.best: float | None = None
        self.best_state: Any = None
        self.best_epoch = 0
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        step = epoch + 1
        scores = self.classifier.predict_scores(self.val)
        tuned = macro_f1(self.y_val, scores, tune_thresholds(self.y_val, scores))
        fixed = macro_f1(self.y_val, scores, 0.5)
        metrics = {
            "train/loss": float((logs or {}).get("loss", np.nan)),
            "val/loss": bce(self.y_val, scores),
            "val/f1_macro": tuned,
            "val/f1_macro_fixed": fixed,
            "epoch_seconds": time.perf_counter() - self.started,
        }
        self.started = time.perf_counter()
        self.logger.log_metrics({k: v for k, v in metrics.items() if not np.isnan(v)}, step=step)
        value = metrics[self.trainer.monitor]
        better = self.best is None or (
            value > self.best if self.trainer.monitor_mode == "max" else value < self.best
        )
        if better and not np.isnan(value):
            self.best, self.best_epoch = value, step
            self.best_state = self.classifier.get_state()
        patience = self.trainer.early_stopping_patience
        if (
            patience is not None
            and step - self.best_epoch >= patience
            and getattr(self, "model", None)
        ):
            log.info("early stopping: no better %s for %d epochs", self.trainer.monitor, patience)
            self.model.stop_training = True
        log.info(
            "epoch %d/%d  loss %.4f  val_loss %.4f  val_f1_macro %.3f (fixed 0.5: %.3f)%s",
            step,
            self.trainer.epochs_for(self.classifier),
            metrics["train/loss"],
            metrics["val/loss"],
            tuned,
            fixed,
            "  *" if better else "",
        )


class Trainer:
    def __init__(
        self,
        max_epochs: int = 20,
        monitor: str = "val/f1_macro",
        restore_best: bool = True,
        threshold: str | float = "tuned",
        deterministic: bool = True,
        limit_train_batches: int | None = None,
        limit_val_batches: int | None = None,
        limit_test_batches: int | None = None,
        fast_dev_run: bool = False,
        overfit_batches: int = 0,
        early_stopping_patience: int | None = None,
        verbose: int = 0,
    ) -> None:
        if monitor not in MONITORS:
            raise ConfigError(f"trainer.monitor must be one of {MONITORS}; got {monitor!r}")
        if threshold != "tuned" and not isinstance(threshold, int | float):
            raise ConfigError(f"trainer.threshold must be 'tuned' or a number; got {threshold!r}")
        if int(max_epochs) < 1:
            raise ConfigError(f"trainer.max_epochs must be >= 1; got {max_epochs}")
        self.max_epochs = int(max_epochs)
        self.monitor = monitor
        self.monitor_mode = "min" if monitor.endswith("loss") else "max"
        self.restore_best = restore_best
        self.threshold = threshold
        self.deterministic = deterministic
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.limit_test_batches = limit_test_batches
        self.fast_dev_run = bool(fast_dev_run)
        self.overfit_batches = int(overfit_batches or 0)
        self.early_stopping_patience = early_stopping_patience
        if self.fast_dev_run:
            self.max_epochs = 1
        self.verbose = verbose
        self.class_names: list[str] = []
        self.thresholds: np.ndarray | None = None
        self.best_epoch = 0
        self.fit_seconds = 0.0

    def batches(self, datamodule: Any, part: str) -> Any:
        """The batches a stage uses, after fast_dev_run, overfit_batches and limit_*_batches.

        overfit_batches=N trains on the same N un-augmented, unshuffled training batches and
        validates and tests on them too: a model that cannot fit them cannot learn at all.
        """
        if self.overfit_batches:
            return datamodule.batches(
                "train", shuffle=False, limit_batches=self.overfit_batches, augment=False
            )
        if self.fast_dev_run:
            return datamodule.batches(part, limit_batches=1)
        limit = {
            "train": self.limit_train_batches,
            "val": self.limit_val_batches,
            "test": self.limit_test_batches,
        }[part]
        return datamodule.batches(part, limit_batches=limit)

    def epochs_for(self, classifier: Any) -> int:
        return 1 if getattr(classifier, "single_pass", False) else self.max_epochs

    def seed_everything(self, seed: int) -> None:
        keras.utils.set_random_seed(int(seed))
        if self.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()

    def fit(self, classifier: Any, datamodule: Any, logger: Any = None) -> None:
        logger = logger or NullLogger()
        self.class_names = datamodule.class_names
        classifier.setup(
            datamodule.num_classes, datamodule.image_size, train_labels=datamodule.labels("train")
        )
        train, val = self.batches(datamodule, "train"), self.batches(datamodule, "val")
        callback = _EpochEnd(self, classifier, val, logger)
        start = time.perf_counter()
        classifier.fit(train, epochs=self.max_epochs, callbacks=[callback], verbose=self.verbose)
        self.fit_seconds = time.perf_counter() - start
        self.best_epoch = callback.best_epoch
        if self.restore_best and callback.best_state is not None:
            classifier.set_state(callback.best_state)
            log.info("restored the weights of epoch %d (best %s)", self.best_epoch, self.monitor)
        logger.log_metrics(
            {
                "best_epoch": self.best_epoch,
                "fit_seconds": self.fit_seconds,
                "train_images_per_second": len(train.rows)
                * self.epochs_for(classifier)
                / self.fit_seconds,
            }
        )

    def validate(self, classifier: Any, datamodule: Any, logger: Any = None) -> Evaluation:
        """Score validation, choose the thresholds (tuned per class, or fixed) and log them."""
        logger = logger or NullLogger()
        val = self.batches(datamodule, "val")
        y, scores = val.targets(), classifier.predict_scores(val)
        if self.threshold == "tuned":
            self.thresholds = tune_thresholds(y, scores)
        else:
            self.thresholds = np.full(len(self.class_names), float(self.threshold))
        result = evaluate(y, scores, self.thresholds, datamodule.class_names)
        logger.log_metrics(result.summary("val/final"))
        logger.log_dict(
            {name: float(t) for name, t in zip(result.class_names, self.thresholds, strict=True)},
            "thresholds.json",
        )
        return result

    def test(self, classifier: Any, datamodule: Any, logger: Any = None) -> Evaluation:
        """Apply the validation thresholds to the test part and log per-class scores."""
        logger = logger or NullLogger()
        if self.thresholds is None:
            self.validate(classifier, datamodule, logger)
        test = self.batches(datamodule, "test")
        y, scores = test.targets(), classifier.predict_scores(test)
        result = evaluate(y, scores, self.thresholds, datamodule.class_names)
        logger.log_metrics({**result.summary("test"), **per_class_metrics(result, "test")})
        return result


def per_class_metrics(result: Evaluation, prefix: str) -> dict[str, float]:
    """Scalar metrics per class (`test/f1/<class>`); undefined values are not logged."""
    out: dict[str, float] = {}
    for i, name in enumerate(result.class_names):
        key = sanitize(name)
        out[f"{prefix}/support/{key}"] = float(result.support[i])
        for metric in ("f1", "precision", "recall"):
            value = float(getattr(result, metric)[i])
            if not np.isnan(value):
                out[f"{prefix}/{metric}/{key}"] = value
    return out
