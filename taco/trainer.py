"""A small Lightning-style Trainer: fit, validate (tune thresholds), test. Model-agnostic.

The Trainer drives any classifier that follows the protocol in `taco.models.keras_classifier`
(Keras models and the random forest alike). After every epoch it scores the validation part and
hands the metrics to its callbacks (`taco.callbacks`): they log the curves, keep and restore the
best epoch, write `last.ckpt`, stop early, schedule the learning rate. `validate` then tunes one
threshold per class on validation and `test` applies those thresholds to the test part.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from taco import checkpoint
from taco.callbacks import Callback, ModelCheckpoint
from taco.errors import ConfigError
from taco.hardware import Hardware
from taco.metrics import Evaluation, evaluate, macro_f1, tune_thresholds
from taco.profiler import ProfiledLogger, make_profiler
from taco.tracking import NullLogger, sanitize

log = logging.getLogger(__name__)

METRICS = ("train/loss", "val/loss", "val/f1_macro", "val/f1_macro_fixed", "epoch_seconds", "lr")


def bce(y_true: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


class _KerasBridge(keras.callbacks.Callback):
    """Turns Keras' fit loop events into the Trainer's epoch logic and its callbacks' hooks."""

    def __init__(self, trainer: Trainer, classifier: Any, train: Any, val: Any) -> None:
        super().__init__()
        self.trainer, self.classifier, self.train, self.val = trainer, classifier, train, val
        self.y_val = val.targets()
        self.batch_started = 0.0
        self.batch_hooks = [
            cb
            for cb in trainer.callbacks
            if type(cb).on_train_batch_end is not Callback.on_train_batch_end
        ]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.train.set_epoch(epoch)  # shuffling and augmentation seeded by epoch: resumable
        self.trainer._epoch_start(self.classifier, epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.batch_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.trainer.profiler.add("train_batches", time.perf_counter() - self.batch_started)
        for cb in self.batch_hooks:
            cb.on_train_batch_end(self.trainer, self.classifier, batch, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        trainer = self.trainer
        metrics = trainer.callback_metrics
        metrics["train/loss"] = float((logs or {}).get("loss", np.nan))
        if trainer.validates(epoch):
            with trainer.profiler.section("validation"):
                scores = self.classifier.predict_scores(self.val)
                metrics["val/loss"] = bce(self.y_val, scores)
                metrics["val/f1_macro"] = macro_f1(
                    self.y_val, scores, tune_thresholds(self.y_val, scores)
                )
                metrics["val/f1_macro_fixed"] = macro_f1(self.y_val, scores, 0.5)
            if logs is not None:  # for plain Keras callbacks listed after this one
                logs.update({k.replace("/", "_"): v for k, v in metrics.items()})
        metrics["epoch_seconds"] = time.perf_counter() - trainer.epoch_started
        trainer._epoch_end(self.classifier, epoch)
        if trainer.should_stop and getattr(self, "model", None) is not None:
            self.model.stop_training = True


class Trainer:
    """Fits any classifier of the protocol; callbacks do the rest (`conf/callbacks/`)."""

    def __init__(
        self,
        max_epochs: int = 20,
        callbacks: Sequence[Any] | None = None,
        threshold: str | float = "tuned",
        deterministic: bool = True,
        limit_train_batches: int | None = None,
        limit_val_batches: int | None = None,
        limit_test_batches: int | None = None,
        fast_dev_run: bool = False,
        overfit_batches: int = 0,
        check_val_every_n_epoch: int = 1,
        accelerator: str = "auto",
        devices: int | str = "auto",
        precision: str = "float32",
        profiler: str | None = None,
    ) -> None:
        if threshold != "tuned" and not isinstance(threshold, int | float):
            raise ConfigError(f"trainer.threshold must be 'tuned' or a number; got {threshold!r}")
        if int(max_epochs) < 1:
            raise ConfigError(f"trainer.max_epochs must be >= 1; got {max_epochs}")
        if int(check_val_every_n_epoch) < 1:
            raise ConfigError(
                f"trainer.check_val_every_n_epoch must be >= 1; got {check_val_every_n_epoch}"
            )
        self.max_epochs = 1 if fast_dev_run else int(max_epochs)
        self.threshold = threshold
        self.deterministic = deterministic
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.limit_test_batches = limit_test_batches
        self.fast_dev_run = bool(fast_dev_run)
        self.overfit_batches = int(overfit_batches or 0)
        self.check_val_every_n_epoch = int(check_val_every_n_epoch)
        self.hardware = Hardware(accelerator, devices, precision)
        self.profiler = make_profiler(profiler)
        all_callbacks = list(callbacks or [])
        self.keras_callbacks = [c for c in all_callbacks if isinstance(c, keras.callbacks.Callback)]
        taco_callbacks = [c for c in all_callbacks if c not in self.keras_callbacks]
        for c in taco_callbacks:
            if not isinstance(c, Callback):
                raise ConfigError(
                    f"callbacks: {type(c).__module__}.{type(c).__qualname__} is neither a "
                    "taco.callbacks.Callback nor a keras.callbacks.Callback"
                )
        # checkpoints are written last, so that they hold every other callback's epoch state
        self.callbacks = [c for c in taco_callbacks if not isinstance(c, ModelCheckpoint)] + [
            c for c in taco_callbacks if isinstance(c, ModelCheckpoint)
        ]
        self.logger: Any = NullLogger()
        self.class_names: list[str] = []
        self.thresholds: np.ndarray | None = None
        self.callback_metrics: dict[str, float] = {}
        self.known_metrics = set(METRICS)
        self.current_epoch = 0
        self.last_epoch = 0  # epochs completed
        self.best_epoch = 0
        self.should_stop = False
        self.num_training_batches = 0
        self.fit_epochs = self.max_epochs  # 1 for a single-pass model (the forest)
        self.epoch_started = 0.0
        self.fit_seconds = 0.0
        self.fingerprint: dict[str, Any] = {}
        self.resumed_from: Path | None = None
        self._classifier: Any = None
        self._configured = False

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

    def validates(self, epoch: int) -> bool:
        """Validation runs every `check_val_every_n_epoch` epochs and after the last one."""
        last = epoch + 1 >= self.fit_epochs
        return (epoch + 1) % self.check_val_every_n_epoch == 0 or last

    def seed_everything(self, seed: int) -> None:
        keras.utils.set_random_seed(int(seed))
        if self.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()

    def configure_hardware(self) -> None:
        """Choose devices once, before TensorFlow first uses one (an impossible choice fails
        here, before any data work when the entry point calls it first)."""
        if not self._configured:
            self.hardware.configure()
            self._configured = True

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Devices, precision policy and distribution strategy for building and training."""
        self.configure_hardware()
        with self.hardware.scope():
            yield

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        classifier: Any,
        datamodule: Any,
        logger: Any = None,
        ckpt_path: str | Path | None = None,
    ) -> None:
        """Train; with `ckpt_path`, continue from that checkpoint at its next epoch."""
        self.logger = self.profiled(logger)
        self._classifier = classifier
        self.class_names = datamodule.class_names
        self.should_stop = False
        self.last_epoch = 0
        with self.profiler.section("model_setup"), self.scope():
            classifier.setup(
                datamodule.num_classes,
                datamodule.image_size,
                train_labels=datamodule.labels("train"),
            )
        train, val = self.batches(datamodule, "train"), self.batches(datamodule, "val")
        train.profiler = self.profiler
        self.num_training_batches = len(train)
        start_epoch = self._restore(classifier, Path(ckpt_path)) if ckpt_path else 0
        epochs = self.fit_epochs = self.epochs_for(classifier)
        bridge = _KerasBridge(self, classifier, train, val)
        extra = self.keras_callbacks if getattr(classifier, "kind", "") == "keras" else []
        if self.keras_callbacks and not extra:
            log.warning("Keras callbacks are ignored by a %s model", classifier.kind)
        for cb in self.callbacks:
            cb.on_fit_start(self, classifier)
        started = time.perf_counter()
        try:
            if start_epoch < epochs:
                with self.profiler.section("fit"), self.scope():
                    classifier.fit(
                        train, epochs=epochs, callbacks=[bridge, *extra], initial_epoch=start_epoch
                    )
            else:
                log.info("the checkpoint has all %d epochs: nothing left to fit", epochs)
        except BaseException as error:
            for cb in self.callbacks:
                cb.on_exception(self, classifier, error)
            raise
        self.fit_seconds = time.perf_counter() - started
        self.best_epoch = self.last_epoch
        for cb in self.callbacks:
            cb.on_fit_end(self, classifier)
        trained = self.last_epoch - start_epoch if not train.limit_batches else 0
        self.logger.log_metrics(
            {
                "best_epoch": self.best_epoch,
                "epochs_trained": self.last_epoch,
                "fit_seconds": self.fit_seconds,
                **(
                    {"train_images_per_second": len(train.rows) * trained / self.fit_seconds}
                    if trained and self.fit_seconds > 0
                    else {}
                ),
            }
        )

    def _epoch_start(self, classifier: Any, epoch: int) -> None:
        self.current_epoch = epoch
        self.callback_metrics = {}
        self.epoch_started = time.perf_counter()
        for cb in self.callbacks:
            cb.on_train_epoch_start(self, classifier, epoch)

    def _epoch_end(self, classifier: Any, epoch: int) -> None:
        self.last_epoch = epoch + 1
        for cb in self.callbacks:
            cb.on_train_epoch_end(self, classifier, epoch)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Path) -> Path:
        """The full training state after `last_epoch` epochs, atomically."""
        classifier = self._classifier
        meta = {
            "epoch": self.last_epoch,
            "max_epochs": self.max_epochs,
            "classifier": classifier.kind,
            "run_id": self.logger.run_id,
            "fingerprint": self.fingerprint,
            "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks()},
        }
        with self.profiler.section("checkpoint"):
            return checkpoint.write(path, classifier.checkpoint_state(), meta)

    def load_weights(self, path: Path) -> None:
        """The weights of a checkpoint (the best epoch), leaving the training state alone."""
        arrays, _ = checkpoint.read(path)
        with self.scope():
            self._classifier.load_checkpoint_state(arrays, source=path, weights_only=True)

    def _restore(self, classifier: Any, path: Path) -> int:
        arrays, meta = checkpoint.read(path)
        if meta.get("classifier") != classifier.kind:
            raise ConfigError(
                f"ckpt_path={path}: a {meta.get('classifier')} checkpoint cannot resume a "
                f"{classifier.kind} model"
            )
        with self.scope():
            classifier.load_checkpoint_state(arrays, source=path)
        states = meta.get("callbacks", {})
        for key, cb in self._keyed_callbacks():
            if key in states:
                cb.load_state_dict(states[key])
        self.last_epoch = int(meta["epoch"])
        self.resumed_from = path
        log.info("resumed from %s after epoch %d", path, self.last_epoch)
        return self.last_epoch

    def _keyed_callbacks(self) -> list[tuple[str, Any]]:
        seen: dict[str, int] = {}
        out = []
        for cb in self.callbacks:
            name = type(cb).__qualname__
            seen[name] = seen.get(name, 0) + 1
            out.append((f"{name}#{seen[name]}", cb))
        return out

    @property
    def last_checkpoint(self) -> Path | None:
        """The `last.ckpt` written for the latest epoch, if a ModelCheckpoint writes one."""
        paths = [cb.last_path for cb in self.callbacks if isinstance(cb, ModelCheckpoint)]
        return next((p for p in paths if p is not None), None)

    def mark_complete(self) -> None:
        """The run finished: neither its checkpoints nor the one it resumed from are `last`."""
        for cb in self.callbacks:
            if isinstance(cb, ModelCheckpoint):
                cb.mark_complete()
        if self.resumed_from is not None:
            (self.resumed_from.parent / checkpoint.COMPLETE).write_text("resumed and finished\n")

    def validate(self, classifier: Any, datamodule: Any, logger: Any = None) -> Evaluation:
        """Score validation, choose the thresholds (tuned per class, or fixed) and log them."""
        logger = self.profiled(logger)
        with self.profiler.section("validate"), self.scope():
            val = self.batches(datamodule, "val")
            y, scores = val.targets(), classifier.predict_scores(val)
        if self.threshold == "tuned":
            self.thresholds = tune_thresholds(y, scores)
        else:
            self.thresholds = np.full(len(datamodule.class_names), float(self.threshold))
        result = evaluate(y, scores, self.thresholds, datamodule.class_names)
        logger.log_metrics(result.summary("val/final"))
        logger.log_dict(
            {name: float(t) for name, t in zip(result.class_names, self.thresholds, strict=True)},
            "thresholds.json",
        )
        return result

    def test(self, classifier: Any, datamodule: Any, logger: Any = None) -> Evaluation:
        """Apply the validation thresholds to the test part and log per-class scores."""
        if self.thresholds is None:
            self.validate(classifier, datamodule, logger)
        logger = self.profiled(logger)
        with self.profiler.section("test"), self.scope():
            test = self.batches(datamodule, "test")
            y, scores = test.targets(), classifier.predict_scores(test)
        result = evaluate(y, scores, self.thresholds, datamodule.class_names)
        logger.log_metrics({**result.summary("test"), **per_class_metrics(result, "test")})
        return result

    def profiled(self, logger: Any) -> Any:
        """The logger, timed as `logging` when the profiler is on (wrapped once)."""
        logger = logger or NullLogger()
        if not self.profiler.enabled or isinstance(logger, ProfiledLogger):
            return logger
        return ProfiledLogger(logger, self.profiler)


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
